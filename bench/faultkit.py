"""Fault injection on loopback, without touching shared servers: a TCP proxy that can be cut (a database
that goes away and comes back) or slowed (a Redis answering late), a server that accepts connections and
never answers (a frozen Redis) and an address where a connect never completes (a host that drops packets).

Each runs its own asyncio loop in a daemon thread; the fault benchmark and the resilience tests use them.
"""

from __future__ import annotations

import asyncio
import socket
import threading


class _LoopThread:
    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def call(self, coro, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


class TcpProxy(_LoopThread):
    """127.0.0.1:`port` -> `target`. `cut()` refuses new connections and aborts open ones (the server is
    gone); `restore()` listens again. `freeze()` keeps every connection open but forwards nothing (the
    server is SIGSTOPped); `thaw()` lets the held bytes through. `delay` (seconds, 0 by default) holds
    every chunk the server sends that long before passing it on (a server answering slowly, each round
    trip that much longer)."""

    delay = 0.0

    def __init__(self, port: int, target_host: str, target_port: int) -> None:
        super().__init__(f"proxy-{port}")
        self.port, self.target = port, (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._flowing = self.call(self._event())
        self.restore()

    @staticmethod
    async def _event() -> asyncio.Event:
        event = asyncio.Event()
        event.set()
        return event

    def freeze(self) -> None:
        self.loop.call_soon_threadsafe(self._flowing.clear)

    def thaw(self) -> None:
        self.loop.call_soon_threadsafe(self._flowing.set)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answers: bool = False
    ) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                if answers and self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer, answers=True))
        finally:
            self._open.difference_update((writer, up_writer))

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    def restore(self) -> None:
        if self._server is None:
            self.call(self._start())

    def cut(self) -> None:
        self.call(self._cut())

    def close(self) -> None:
        self.cut()
        super().close()


class FrozenServer(_LoopThread):
    """Accepts connections on 127.0.0.1:`port`, reads whatever arrives and never answers (SIGSTOPped)."""

    def __init__(self, port: int) -> None:
        super().__init__(f"frozen-{port}")
        self.port = port
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server = self.call(asyncio.start_server(self._handle, "127.0.0.1", port, reuse_address=True))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        while await reader.read(65536):
            pass

    async def _stop(self) -> None:
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()

    def close(self) -> None:
        self.call(self._stop())
        super().close()


class Blackhole:
    """127.0.0.1:`port`, where a TCP connect hangs until the client's timeout (a host that drops packets):
    a listener that never accepts, its accept queue (`backlog=0`: one connection) already taken, so the
    kernel drops every further SYN."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._listener = socket.create_server(("127.0.0.1", port), backlog=0)
        self._queued = socket.create_connection(("127.0.0.1", port), timeout=1)

    def close(self) -> None:
        self._queued.close()
        self._listener.close()


class ProxyProcess:
    """A `TcpProxy` in a child process (so the proxy never waits for the load generator's GIL), driven
    over its stdin: the same `cut`, `restore`, `freeze`, `thaw` and `close`."""

    def __init__(self, port: int, target_host: str, target_port: int) -> None:
        import subprocess
        import sys

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.faultkit", str(port), target_host, str(target_port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._expect_ok()

    def _expect_ok(self) -> None:
        line = self.proc.stdout.readline().strip()
        if line != "ok":
            raise RuntimeError(f"proxy process answered {line!r}")

    def _send(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        self._expect_ok()

    def cut(self) -> None:
        self._send("cut")

    def restore(self) -> None:
        self._send("restore")

    def freeze(self) -> None:
        self._send("freeze")

    def thaw(self) -> None:
        self._send("thaw")

    def close(self) -> None:
        if self.proc.poll() is None:
            self._send("close")
            self.proc.wait(timeout=10)


def _serve_proxy(port: int, target_host: str, target_port: int) -> None:
    import sys

    proxy = TcpProxy(port, target_host, target_port)
    print("ok", flush=True)
    for line in sys.stdin:
        command = line.strip()
        getattr(proxy, command)()
        print("ok", flush=True)
        if command == "close":
            return


if __name__ == "__main__":
    import sys

    _serve_proxy(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))

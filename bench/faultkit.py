"""Fault injection on loopback, without touching shared servers: a TCP proxy that can be cut (a database
that goes away and comes back) and a server that accepts connections and never answers (a frozen Redis).

Each runs its own asyncio loop in a daemon thread; the fault benchmark and the resilience tests use them.
"""

from __future__ import annotations

import asyncio
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
    gone); `restore()` listens again."""

    def __init__(self, port: int, target_host: str, target_port: int) -> None:
        super().__init__(f"proxy-{port}")
        self.port, self.target = port, (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self.restore()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
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
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
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

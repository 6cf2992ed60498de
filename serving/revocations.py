"""Key revocations pushed to every API replica over Redis pub/sub, so a revoked key is refused everywhere
within milliseconds while each replica still answers most key checks from memory.

The database stays the truth: a replica discards a revoked key's cached answer when the message arrives and
asks the database next time. A subscriber cannot tell a silent channel from a frozen Redis, so it pings
every `heartbeat` seconds and gives up after four unanswered; while it is not provably listening (Redis
down, frozen, or reconnecting) the principal cache falls back to re-checking keys every `poll_seconds`,
and on reconnecting it re-checks every cached key once, since messages sent meanwhile are lost. Nothing
here runs on the request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from redis.exceptions import ResponseError

from serving.security import PrincipalCache

log = logging.getLogger(__name__)

CHANNEL = "crosscart:revoked-keys"


class RevocationFeed:
    def __init__(
        self,
        url: str,
        principals: PrincipalCache,
        timeout: float = 0.25,
        heartbeat: float = 0.5,
        retry_seconds: float = 1.0,
    ) -> None:
        import redis.asyncio  # here, not on the event loop: the first import takes a while

        self._module = redis.asyncio
        self.url, self.principals = url, principals
        self.timeout, self.heartbeat, self.retry_seconds = timeout, heartbeat, retry_seconds
        self.listening = False
        self.received = 0  # revocations received from the channel (this replica's own included)
        principals.pushed = False  # until subscribed
        self._task: asyncio.Task | None = None
        self._publisher = None
        self._unsent: dict[str, float] = {}  # revocations Redis did not take -> when to stop resending
        self._resend: asyncio.Task | None = None

    def start(self) -> None:
        """Subscribe in the background (call inside the serving event loop)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="revocation-feed")

    async def stop(self) -> None:
        for task in (self._task, self._resend):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await self._publisher.aclose()

    async def publish(self, key_hash: str) -> bool:
        """Tell every replica (call after the revocation is committed). If Redis cannot take it, it is
        sent again every `retry_seconds` until it does, for as long as another replica may trust its
        cached answer (the cache's `ttl`). Redis failing this replica only (its path to Redis cut, a
        publish past its timeout while the feeds' heartbeats still pass) leaves the other replicas
        listening, not polling: the revoked key stayed valid there for the cache's 30 s."""
        try:
            await self._publish(key_hash)
            return True
        except Exception as exc:
            log.warning(
                "revocation not broadcast (%s); sent again every %g s until Redis takes it",
                type(exc).__name__,
                self.retry_seconds,
            )
        self._unsent[key_hash] = time.monotonic() + self.principals.ttl
        if self._resend is None or self._resend.done():
            loop = asyncio.get_running_loop()
            self._resend = loop.create_task(self._send_unsent(), name="revocation-resend")
        return False

    async def _publish(self, key_hash: str) -> None:
        if self._publisher is None:
            self._publisher = self._module.Redis.from_url(
                self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
            )
        async with asyncio.timeout(self.timeout):
            await self._publisher.publish(CHANNEL, key_hash)

    async def _send_unsent(self) -> None:
        while self._unsent:
            await asyncio.sleep(self.retry_seconds)
            for key_hash, until in list(self._unsent.items()):
                if time.monotonic() > until:  # every replica's cached answer has expired by now
                    del self._unsent[key_hash]
                    continue
                try:
                    await self._publish(key_hash)
                except Exception:
                    break  # Redis still refuses: the rest wait for the next round
                del self._unsent[key_hash]
                log.info("revocation broadcast late, Redis taking it again")

    async def _run(self) -> None:
        told = False  # a failure to listen was logged: once until the feed listens again, not per attempt
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Only the loss of a feed that had listened was logged: a SUBSCRIBE refused from the start
                # (an ACL user without channels: NOPERM) was retried every second without a word.
                if self.listening or not told:
                    # Redis' refusal says what to fix; a lost connection's type is enough
                    why = (
                        f"{type(exc).__name__}: {exc}"
                        if isinstance(exc, ResponseError)
                        else type(exc).__name__
                    )
                    log.warning(
                        "revocation feed %s (%s): keys are re-checked every %g s until it is back",
                        "lost" if self.listening else "not listening",
                        why,
                        self.principals.poll_seconds,
                    )
                    told = True
            finally:
                self.listening = self.principals.pushed = False
            await asyncio.sleep(self.retry_seconds)

    async def _listen(self) -> None:
        client = self._module.Redis.from_url(self.url, socket_connect_timeout=self.timeout)
        pubsub = client.pubsub()
        try:
            async with asyncio.timeout(self.timeout):
                await pubsub.subscribe(CHANNEL)
                while (await pubsub.get_message(timeout=self.timeout)) is None:
                    pass  # the subscription's confirmation
            self.principals.expire_all()  # revocations sent while not listening were lost
            self.listening = self.principals.pushed = True
            log.info("revocation feed listening on %s", CHANNEL)
            heard = next_ping = time.monotonic()
            while True:
                now = time.monotonic()
                if now >= next_ping:
                    async with asyncio.timeout(self.timeout):
                        await pubsub.ping()
                    next_ping = now + self.heartbeat
                message = await pubsub.get_message(timeout=self.heartbeat)
                if message is not None:
                    heard = time.monotonic()
                    if message["type"] == "message":
                        self.received += 1
                        self.principals.discard(message["data"].decode())
                elif time.monotonic() - heard > 4 * self.heartbeat + self.timeout:  # a busy loop is no outage
                    raise TimeoutError("Redis stopped answering the feed's pings")
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeout):
                    await pubsub.aclose()
                    await client.aclose()

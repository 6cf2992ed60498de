"""Key lookups coalesced: every key waiting to be checked goes into the next single query.

A burst of requests with keys the cache has not seen (200 shoppers checking out at once) would otherwise
cost one query each, queued on the few connections kept for key lookups, and most of the burst would be
refused waiting for them. One lookup runs at a time and takes everything that queued meanwhile.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

import anyio

from serving.resilience import DatabaseBusy, DatabaseGate
from serving.security import Principal

MAX_BATCH = 500  # keys per query


def _retrieve(future: asyncio.Future) -> None:
    """A caller that gave up never reads its future: read the outcome here so asyncio does not warn."""
    if not future.cancelled():
        future.exception()


class KeyLookups:
    """`await lookup(key, deadline)` -> the key's Principal, or None for an unknown or revoked key.

    `query(keys)` runs in a worker thread and returns {key: Principal} for the live ones."""

    def __init__(self, query: Callable[[list[str]], dict[str, Principal]], gate: DatabaseGate):
        self._query, self._gate = query, gate
        self._waiting: dict[str, asyncio.Future] = {}
        self._drainer: asyncio.Task | None = None

    async def lookup(self, key: str, deadline: float) -> Principal | None:
        loop = asyncio.get_running_loop()
        future = self._waiting.get(key)
        if future is None:
            future = self._waiting[key] = loop.create_future()
            future.add_done_callback(_retrieve)
        queued = self._drainer is not None and not self._drainer.done()
        if not queued:
            self._drainer = loop.create_task(self._drain())
        # Uncontended, the query starts at once (bounded by the statement timeout); only a wait behind
        # lookups in flight is bounded by the request's deadline.
        wait = max(0.0, deadline - time.monotonic()) if queued else None
        try:
            async with asyncio.timeout(wait):
                return await asyncio.shield(future)
        except TimeoutError:
            raise DatabaseBusy("key lookups did not keep up") from None

    async def _drain(self) -> None:
        while self._waiting:
            batch = dict(itertools.islice(self._waiting.items(), MAX_BATCH))
            for key in batch:
                del self._waiting[key]
            try:
                async with self._gate.auth_slot():
                    found = await anyio.to_thread.run_sync(
                        self._query, list(batch), limiter=self._gate.auth_threads
                    )
            except Exception as exc:  # an outage or a full gate: every caller in the batch learns it
                for future in batch.values():
                    if not future.done():
                        future.set_exception(exc)
                continue
            for key, future in batch.items():
                if not future.done():
                    future.set_result(found.get(key))

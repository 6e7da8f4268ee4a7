"""Getting written bytes to disk: periodically (ASYNC_FLUSH) or on demand with group commit
(SYNC_FLUSH), with msync in a worker thread so the event loop keeps accepting sends.

Group commit: every sender waiting for a flush registers the offset it needs; one flush round
covers everything written before it started, so concurrent senders share one msync, and what
arrives during a round is covered by the next.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

from rmqnode import log

_log = log.get("rmqnode.storage")


class FlushService:
    def __init__(self, flush: Callable[[], int], interval: float,
                 on_flushed: Callable[[int], None] | None = None) -> None:
        """`flush` msyncs and returns the flushed offset; it runs in a worker thread."""
        self._flush = flush
        self.interval = interval
        self.on_flushed = on_flushed
        self.flushed_offset = 0
        self._waiters: list[tuple[int, int, asyncio.Future[bool]]] = []
        self._seq = itertools.count()
        self._kick = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stopping = False
        self.rounds = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Let the current round finish (never cancel an msync half way), then flush all."""
        self._stopping = True
        self._kick.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush_now()

    async def wait_flushed(self, offset: int, timeout: float) -> bool:
        """True once everything before `offset` is on disk; False after `timeout`."""
        if offset <= self.flushed_offset:
            return True
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        heapq.heappush(self._waiters, (offset, next(self._seq), fut))
        timer = loop.call_later(max(timeout, 0.0), _resolve, fut, False)
        self._kick.set()
        try:
            return await fut
        finally:
            timer.cancel()

    async def flush_now(self) -> int:
        flushed = await asyncio.to_thread(self._flush)
        self._advance(flushed)
        return flushed

    def _advance(self, flushed: int) -> None:
        self.rounds += 1
        if flushed > self.flushed_offset:
            self.flushed_offset = flushed
            if self.on_flushed is not None:
                self.on_flushed(flushed)
        waiters = self._waiters
        while waiters and waiters[0][0] <= flushed:
            _resolve(heapq.heappop(waiters)[2], True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            timer = loop.call_later(self.interval, self._kick.set)
            await self._kick.wait()
            timer.cancel()
            self._kick.clear()
            try:
                await self.flush_now()
            except OSError as exc:
                # Waiters time out and answer FLUSH_DISK_TIMEOUT; the next round retries.
                _log.error("flush.failed", error=exc)
                await asyncio.sleep(min(self.interval, 1.0))


def _resolve(fut: asyncio.Future[bool], value: bool) -> None:
    if not fut.done():
        fut.set_result(value)

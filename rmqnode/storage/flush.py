"""Getting written bytes to disk: periodically (ASYNC_FLUSH) or on demand with group commit
(SYNC_FLUSH), with msync in a worker thread so the event loop keeps accepting sends.

Group commit: every sender waiting for a flush registers the offset it needs; one flush round
covers everything written before it started, so concurrent senders share one msync, and what
arrives during a round is covered by the next. A waiter is a callback, not a future with its
own timer: under SYNC_FLUSH every send waits, and one timer for all of them (at the earliest
deadline) is enough to answer a stuck disk with a timeout.
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
        # (offset needed, arrival, deadline, callback)
        self._waiters: list[tuple[int, int, float, Callable[[bool], None]]] = []
        self._expiry: asyncio.TimerHandle | None = None
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

    def when_flushed(self, offset: int, timeout: float, callback: Callable[[bool], None]) -> None:
        """callback(True) once everything before `offset` is on disk, or callback(False) after
        `timeout` seconds; at once when it is there already."""
        if offset <= self.flushed_offset:
            callback(True)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        heapq.heappush(self._waiters, (offset, next(self._seq), deadline, callback))
        if self._expiry is None:
            self._expiry = loop.call_at(deadline, self._expire)
        self._kick.set()

    def _expire(self) -> None:
        """Answer the waiters past their deadline (a flush that hangs), then wait for the next
        deadline; waiters answered by flushes meanwhile are simply gone."""
        self._expiry = None
        now = asyncio.get_running_loop().time()
        late = [w for w in self._waiters if w[2] <= now]
        if late:
            self._waiters = [w for w in self._waiters if w[2] > now]
            heapq.heapify(self._waiters)
            for waiter in late:
                waiter[3](False)
        if self._waiters:
            self._expiry = asyncio.get_running_loop().call_at(
                min(w[2] for w in self._waiters), self._expire)

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
            heapq.heappop(waiters)[3](True)

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


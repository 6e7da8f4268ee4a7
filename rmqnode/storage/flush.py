"""Getting written bytes to disk: periodically (ASYNC_FLUSH) or on demand with group commit
(SYNC_FLUSH), with fdatasync in a worker thread so a slow disk never stalls the event loop.

Group commit: every sender waiting for a flush registers the offset it needs; one round covers
everything written before it started, so concurrent senders share one fdatasync, and what
arrives during a round is covered by the next. A waiter is a callback, not a future with its
own timer: under SYNC_FLUSH every send waits, and one timer for all of them (at the earliest
deadline) is enough to answer a stuck disk with a timeout.

A round for waiters starts once the reads of the current loop iteration are stored, and the
loop waits up to `INLINE_WAIT` for it with the GIL released. Handing the result back through
the loop instead costs a whole loop iteration (the reads of every other connection) before the
answers go out, and with the GIL contended more for the worker to start and to return. On a
machine where fdatasync takes about 1 ms, that hand-off was longer than the flush itself.
Waiting inline, with the answers written at once (`Connection.reply`), took SYNC_FLUSH sends
over 16 connections from 4,400 to 5,000 a second on a fresh store (medians of six
alternating runs). A flush slower than `INLINE_WAIT` finishes in the background while the
loop serves everyone else, and while flushes stay that slow (a spinning disk) the loop does
not wait for them at all.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable

from rmqnode import log

_log = log.get("rmqnode.storage")

INLINE_WAIT = 0.005  # seconds the loop waits for a round that senders wait for


class FlushService:
    def __init__(self, flush: Callable[[], int], interval: float,
                 on_flushed: Callable[[int], None] | None = None) -> None:
        """`flush` fdatasyncs and returns the flushed offset; it runs in a worker thread."""
        self._flush = flush
        self.interval = interval
        self.on_flushed = on_flushed
        self.flushed_offset = 0
        # (offset needed, arrival, deadline, callback)
        self._waiters: list[tuple[int, int, float, Callable[[bool], None]]] = []
        self._expiry: asyncio.TimerHandle | None = None
        self._seq = itertools.count()
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="flush")
        self._running: concurrent.futures.Future[int] | None = None
        self._queued = False  # a round for waiters is scheduled on the loop
        self._slow = False  # the last fdatasync took longer than INLINE_WAIT
        self._tick: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.rounds = 0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tick = self._loop.call_later(self.interval, self._periodic)

    async def stop(self) -> None:
        """Let the current round finish (never abandon an fdatasync half way), then flush
        everything."""
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        if self._running is not None:
            with contextlib.suppress(OSError):  # reported by _finished; flush_now retries
                await asyncio.wrap_future(self._running)
        await self.flush_now()
        self._worker.shutdown()

    def when_flushed(self, offset: int, timeout: float, callback: Callable[[bool], None]) -> None:
        """callback(True) once everything before `offset` is on disk, or callback(False) if
        that takes more than `timeout` seconds; at once when it is there already."""
        if offset <= self.flushed_offset:
            callback(True)
            return
        loop = self._loop
        assert loop is not None, "FlushService.start() first"
        deadline = loop.time() + max(timeout, 0.0)
        heapq.heappush(self._waiters, (offset, next(self._seq), deadline, callback))
        if self._expiry is None or deadline < self._expiry.when():
            # (timeouts can differ: syncFlushTimeout may change at run time)
            if self._expiry is not None:
                self._expiry.cancel()
            self._expiry = loop.call_at(deadline, self._expire)
        if not self._queued and self._running is None:
            self._queued = True
            loop.call_soon(self._round_for_waiters)

    def _expire(self) -> None:
        """Answer the waiters past their deadline (a flush that hangs), then wait for the next
        deadline; waiters answered by flushes meanwhile are simply gone."""
        self._expiry = None
        now = self._loop.time()  # type: ignore[union-attr]
        late = [w for w in self._waiters if w[2] <= now]
        if late:
            self._waiters = [w for w in self._waiters if w[2] > now]
            heapq.heapify(self._waiters)
            for waiter in late:
                waiter[3](False)
        if self._waiters:
            self._expiry = self._loop.call_at(  # type: ignore[union-attr]
                min(w[2] for w in self._waiters), self._expire)

    async def flush_now(self) -> int:
        flushed = await asyncio.wrap_future(self._worker.submit(self._flush))
        self._advance(flushed)
        return flushed

    def _periodic(self) -> None:
        self._tick = self._loop.call_later(self.interval, self._periodic)  # type: ignore
        if self._running is None:
            self._start(wait=0.0)

    def _round_for_waiters(self) -> None:
        self._queued = False
        if self._running is None and self._waiters:
            self._start(wait=0.0 if self._slow else INLINE_WAIT)

    def _start(self, wait: float) -> None:
        running = self._running = self._worker.submit(self._timed_flush)
        if wait:
            concurrent.futures.wait((running,), timeout=wait)  # the GIL is free meanwhile
        if running.done():
            self._finished(running)
        else:
            loop = self._loop
            running.add_done_callback(
                lambda fut: loop.call_soon_threadsafe(self._finished, fut))  # type: ignore

    def _timed_flush(self) -> int:
        """The flush, timed where it runs: timed from the loop, a busy loop would count its
        own delay in taking the result as a slow disk."""
        began = time.monotonic()
        try:
            return self._flush()
        finally:
            self._slow = time.monotonic() - began > INLINE_WAIT

    def _finished(self, fut: concurrent.futures.Future[int]) -> None:
        self._running = None
        try:
            flushed = fut.result()
        except OSError as exc:
            # Waiters time out and answer FLUSH_DISK_TIMEOUT; the periodic round retries.
            _log.error("flush.failed", error=exc)
            return
        self._advance(flushed)
        if self._waiters and not self._queued:
            self._queued = True
            self._loop.call_soon(self._round_for_waiters)  # type: ignore[union-attr]

    def _advance(self, flushed: int) -> None:
        self.rounds += 1
        if flushed > self.flushed_offset:
            self.flushed_offset = flushed
            if self.on_flushed is not None:
                self.on_flushed(flushed)
        waiters = self._waiters
        if waiters and waiters[0][0] <= flushed:
            # A waiter whose deadline passed before its flush finished is answered with a
            # timeout, as Java's future.get(syncFlushTimeout) would.
            now = asyncio.get_running_loop().time()
            while waiters and waiters[0][0] <= flushed:
                waiter = heapq.heappop(waiters)
                waiter[3](waiter[2] >= now)

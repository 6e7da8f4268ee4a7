"""Getting written bytes to disk: periodically (ASYNC_FLUSH) or on demand with group commit
(SYNC_FLUSH), with fdatasync in a worker thread so a slow disk never stalls the event loop.

Group commit: every sender waiting for a flush registers the offset it needs (OffsetWaiters);
one round covers everything written before it started, so concurrent senders share one
fdatasync, and what arrives during a round is covered by the next.

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

A sender alone (the last round answered one waiter, none other is waiting, nothing runs)
needs no group: its round starts at once, in the call that stored it, and fdatasyncs on the
loop's own thread while the disk is fast, so the answer goes out in the same loop iteration
as the read. The hand-off to the worker and back, and the wait for the next iteration, cost
a single sender 386 -> 318 us p50 against 120 us for the fdatasync itself (one connection,
128 B, three alternating runs). While several senders share rounds, the rounds stay as
above: flushing the first of them alone would cost the others a second fdatasync.

At most one such round per loop iteration: a round on the loop's thread answers one waiter,
so the next send of the same read looked alone too, and under load the node fell into one
fdatasync per send on the loop's thread, and stayed there (16 connections, batches of 32:
runs at half the throughput and three times the p50 of the others). The second send of an
iteration waits for a shared round instead, which answers several and ends the streak.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from collections.abc import Callable

from rmqnode import log
from rmqnode.storage.waiters import OffsetWaiters

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
        self._waiters = OffsetWaiters()
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="flush")
        self._running: concurrent.futures.Future[int] | None = None
        self._queued = False  # a round for waiters is scheduled on the loop
        self._slow = False  # the last fdatasync took longer than INLINE_WAIT
        self._took = 0.0  # seconds the last flush took
        self._tick: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.rounds = 0
        self._last_round = 0  # waiters the last round answered
        self._here = False  # a round ran on the loop's thread in this loop iteration
        # What the waiters' callbacks run inside: the broker gathers their answers
        # (net.connection.answers_together); the store alone needs nothing.
        self.answering: contextlib.AbstractContextManager = contextlib.nullcontext()

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
        assert self._loop is not None, "FlushService.start() first"
        if (not self._waiters and self._last_round == 1 and not self._queued
                and self._running is None and not self._slow and not self._here):
            # Alone: flushed here and answered at once, without a place among the waiters
            # (what runs after the fdatasync is in the sender's latency).
            if self._flush_here() >= offset:
                callback(self._took <= timeout)
                return
            timeout -= self._took  # it failed: wait for a round that works
        self._waiters.add(offset, timeout, callback)
        if not self._queued and self._running is None:
            self._queued = True
            self._loop.call_soon(self._round_for_waiters)

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

    def _flush_here(self) -> int:
        """One round on the loop's thread (a sender alone on a fast disk); the flushed offset
        (as before it, when the flush failed)."""
        self._here = True
        self._loop.call_soon(self._next_iteration)  # type: ignore[union-attr]
        try:
            flushed = self._timed_flush()
        except OSError as exc:  # as in _finished: the waiter times out, the next round retries
            _log.error("flush.failed", error=exc)
            return self.flushed_offset
        self._advance(flushed)
        return self.flushed_offset

    def _next_iteration(self) -> None:
        self._here = False

    def _timed_flush(self) -> int:
        """The flush, timed where it runs: timed from the loop, a busy loop would count its
        own delay in taking the result as a slow disk."""
        began = time.monotonic()
        try:
            return self._flush()
        finally:
            self._took = time.monotonic() - began
            self._slow = self._took > INLINE_WAIT

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
        with self.answering:
            answered = self._waiters.reached(flushed)
        if answered:  # (a periodic round with no waiter says nothing of the senders)
            self._last_round = answered

"""Getting written bytes to disk: periodically (ASYNC_FLUSH) or on demand with group commit
(SYNC_FLUSH), with fdatasync on the loop's thread while the disk is fast and in a worker
thread once it is not, so a slow disk stalls the event loop for one round, not for each.

Group commit: every sender waiting for a flush registers the offset it needs (OffsetWaiters);
one round covers everything written before it started, so concurrent senders share one
fdatasync, and what arrives during a round is covered by the next.

A round for waiters starts once the reads of the current loop iteration are stored, and runs
on the loop's own thread; its answers are written at once (`Connection.reply`). The loop has
nothing better to do meanwhile: handing the result back through the loop costs a whole loop
iteration (the reads of every other connection) before the answers go out, which on a
machine where fdatasync takes about 1 ms was longer than the flush itself. Until 2026-11-30
the round ran in the worker with the loop waiting for it (up to 5 ms, the GIL released),
which costs two thread wake-ups a round, each waiting for a core that the clients hold on a
busy machine. Against that (benchmarks/ab.py, 2 cores, alternating pairs): SYNC_FLUSH single
sends over 16 connections 53.3k -> 61.5k msgs/s and node CPU 13.6 -> 11.6 us per message
(faster in 7 of 8 pairs, lower in 8 of 8); the C++ client's 16 threads 12.1k -> 13.9k msgs/s,
38.3 -> 26.4 us (5 and 6 of 6); batches of 32 faster in 7, 5 and 7 of 8 pairs. A flush
slower than `FAST_FLUSH` marks the disk slow: the rounds after it run in the worker while the
loop serves everyone else, and the first fast one brings them back.

A sender alone (the last round answered one waiter, none other is waiting, nothing runs)
needs no group: its round starts at once, in the call that stored it, so the answer goes out
in the same loop iteration as the read. The hand-off to the worker and back, and the wait for
the next iteration, cost a single sender 386 -> 318 us p50 against 120 us for the fdatasync
itself (one connection, 128 B, three alternating runs). While several senders share rounds,
the rounds wait for the iteration's end: flushing the first of them alone would cost the
others a second fdatasync.

At most one such lone round per loop iteration: a round on the loop's thread answers one
waiter, so the next send of the same read looked alone too, and under load the node fell into
one fdatasync per send, and stayed there (16 connections, batches of 32: runs at half the
throughput and three times the p50 of the others). The second send of an iteration waits for
a shared round instead, which answers several and ends the streak.
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

FAST_FLUSH = 0.005  # seconds: a flush that takes longer sends the next rounds to the worker


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
        self._slow = False  # the last fdatasync took longer than FAST_FLUSH
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
            self._start()

    def _round_for_waiters(self) -> None:
        self._queued = False
        if self._running is None and self._waiters:
            if self._slow:
                self._start()
            else:
                self._flush_here()

    def _start(self) -> None:
        """A round in the worker, finished on the loop (_finished) when it is done."""
        loop = self._loop
        self._running = self._worker.submit(self._timed_flush)
        self._running.add_done_callback(
            lambda fut: loop.call_soon_threadsafe(self._finished, fut))  # type: ignore

    def _flush_here(self) -> int:
        """One round on the loop's thread (the disk is fast); the flushed offset (as before
        it, when the flush failed)."""
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
            self._slow = self._took > FAST_FLUSH

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

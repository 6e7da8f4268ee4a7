"""Getting written bytes to disk: periodically (ASYNC_FLUSH) or on demand with group commit
(SYNC_FLUSH), with fdatasync in another thread so a slow disk never stalls the event loop.

That thread is the accelerator's (csrc/flush.c) where it is built, a Python worker thread where
not (RMQNODE_PURE=1). Both run the same rounds (mapped_file.FlushRound: the descriptors of the
files with unflushed bytes are taken on the loop's thread, fdatasynced in the other, and the
offsets marked flushed on the loop's thread again) and answer the same waiters from them.

The native thread needs no GIL, so the loop need not wait for it: it goes on reading and
storing while the disk works, and hears of the end through an eventfd it watches, with the
next round's sends already stored. That is how it serves a round for a few waiters. C++
client, 16 threads, single sends under SYNC_FLUSH: new/old 1.16x msgs/s (median of 16
alternating pairs against the worker, 13 faster, spread 0.88-1.56x), p50 lower in 14 of
them, node CPU per message 74 -> 70 us; again 1.22x (4 of 4) with the crowd rule below.
A round for more than `GROUP_WAIT` waiters is waited for inline as with the worker (a loop
that many senders keep busy likely serves more per read when the reads of all connections
gather while it waits): not waiting cost batches of 32 over 16 connections 8-16% more CPU per
message (3.5 -> 4.05 us, 8 pairs) and gained nothing (new/old 0.94x). With the rule,
batches are as with the worker (1.04x over 14 pairs, spread 0.51-1.98x on a busy machine;
same CPU per message): waiting for the native thread measured no better than waiting for
the worker, whose hand-off is cheap while the loop is blocked and the GIL free.

Group commit: every sender waiting for a flush registers the offset it needs (OffsetWaiters);
one round covers everything written before it started, so concurrent senders share one
fdatasync, and what arrives during a round is covered by the next.

A round for waiters starts once the reads of the current loop iteration are stored. With the
Python worker, the loop waits up to `INLINE_WAIT` for it with the GIL released: handing the
result back through the loop instead costs a whole loop iteration (the reads of every other
connection) before the answers go out, and with the GIL contended more for the worker to
start and to return. On a machine where fdatasync takes about 1 ms, that hand-off was
longer than the flush itself. Waiting inline, with the answers written at once
(`Connection.reply`), took SYNC_FLUSH sends over 16 connections from 4,400 to 5,000 a second
on a fresh store (medians of six alternating runs). A flush slower than `INLINE_WAIT`
finishes in the background while the loop serves everyone else, and while flushes stay that
slow (a spinning disk) the loop does not wait for them at all.

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
from typing import TYPE_CHECKING

from rmqnode import log, speedups
from rmqnode.storage.mapped_file import FlushRound, finish, flush_here
from rmqnode.storage.waiters import OffsetWaiters

if TYPE_CHECKING:
    from rmqnode._speedups import Flusher

_log = log.get("rmqnode.storage")

INLINE_WAIT = 0.005  # seconds the loop waits for a round that senders wait for
GROUP_WAIT = 16  # waiters beyond which the loop waits for the native thread's round too


class FlushService:
    def __init__(self, flush: Callable[[], FlushRound], interval: float,
                 on_flushed: Callable[[int], None] | None = None,
                 native: bool = speedups.ENABLED) -> None:
        """`flush` starts a round (mapped_file.FlushRound): it yields the descriptors to
        fdatasync, and returns the flushed offset once they are. `native`: fdatasync them in
        the accelerator's thread, which needs no GIL (rmqnode/csrc/flush.c), rather than in a
        Python worker thread."""
        self._flush = flush
        self.interval = interval
        self.on_flushed = on_flushed
        self.flushed_offset = 0
        self._waiters = OffsetWaiters()
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="flush")
        self._use_native = native
        self._native: Flusher | None = None  # its thread, from start() on
        # the round under way: its future in the worker, or the round the native thread syncs
        self._running: concurrent.futures.Future[int] | FlushRound | None = None
        self._queued = False  # a round for waiters is scheduled on the loop
        self._slow = False  # the last fdatasync took longer than INLINE_WAIT
        self._tick: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.rounds = 0
        self._last_round = 0  # waiters the last round answered
        self._here = False  # a round ran on the loop's thread in this loop iteration

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tick = self._loop.call_later(self.interval, self._periodic)
        if self._use_native:
            self._native = speedups.native.Flusher()  # type: ignore[union-attr]
            self._loop.add_reader(self._native.fileno(), self._native_done)

    async def stop(self) -> None:
        """Let the current round finish (never abandon an fdatasync half way), then flush
        everything."""
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        await self._idle()
        await self.flush_now()
        self._worker.shutdown()
        if self._native is not None:
            self._loop.remove_reader(self._native.fileno())  # type: ignore[union-attr]
            self._native.close()
            self._native = None

    async def _idle(self) -> None:
        """Until no round is under way (rounds for waiters that arrive meanwhile included)."""
        while isinstance(self._running, concurrent.futures.Future):
            with contextlib.suppress(OSError):  # reported by _finished; flush_now retries
                await asyncio.wrap_future(self._running)
        while self._running is not None:
            await asyncio.to_thread(self._native.wait, 1.0)  # type: ignore[union-attr]
            self._native_done()

    def when_flushed(self, offset: int, timeout: float, callback: Callable[[bool], None]) -> None:
        """callback(True) once everything before `offset` is on disk, or callback(False) if
        that takes more than `timeout` seconds; at once when it is there already."""
        if offset <= self.flushed_offset:
            callback(True)
            return
        assert self._loop is not None, "FlushService.start() first"
        alone = not self._waiters and self._last_round == 1
        self._waiters.add(offset, timeout, callback)
        if self._queued or self._running is not None:
            return
        if alone and not self._slow and not self._here:
            self._flush_here()
        else:
            self._queued = True
            self._loop.call_soon(self._round_for_waiters)

    async def flush_now(self) -> int:
        flushed = await asyncio.wrap_future(self._worker.submit(self._round))
        self._advance(flushed)
        return flushed

    def _round(self) -> int:
        return flush_here(self._flush())

    def _periodic(self) -> None:
        self._tick = self._loop.call_later(self.interval, self._periodic)  # type: ignore
        if self._running is None:
            self._start(wait=0.0)

    def _round_for_waiters(self) -> None:
        self._queued = False
        if self._running is None and self._waiters:
            self._start(wait=0.0 if self._slow else INLINE_WAIT)

    def _start(self, wait: float) -> None:
        if self._native is not None:
            self._start_native(wait if len(self._waiters) > GROUP_WAIT else 0.0)
            return
        running = self._running = self._worker.submit(self._timed_flush)
        if wait:
            concurrent.futures.wait((running,), timeout=wait)  # the GIL is free meanwhile
        if running.done():
            self._finished(running)
        else:
            loop = self._loop
            running.add_done_callback(
                lambda fut: loop.call_soon_threadsafe(self._finished, fut))  # type: ignore

    def _start_native(self, wait: float) -> None:
        """The round's descriptors to the native thread; the loop waits up to `wait` for it
        with the GIL released, else goes on serving and hears of the end through the
        thread's eventfd (_native_done)."""
        round_ = self._flush()
        try:
            self._native.submit(next(round_))  # type: ignore[union-attr]
        except OSError as exc:  # as in _finished
            _log.error("flush.failed", error=exc)
            return
        self._running = round_
        if wait and self._native.wait(wait):  # type: ignore[union-attr]
            self._native_done()

    def _native_done(self) -> None:
        try:
            seconds = self._native.result()  # type: ignore[union-attr]
        except OSError as exc:  # as in _finished
            self._running.close()  # type: ignore[union-attr]
            self._running = None
            _log.error("flush.failed", error=exc)
            return
        if seconds is None:  # not done, or already taken
            return
        self._slow = seconds > INLINE_WAIT
        round_, self._running = self._running, None
        self._advance(finish(round_))  # type: ignore[arg-type]
        self._again()

    def _flush_here(self) -> None:
        """One round on the loop's thread (a sender alone on a fast disk)."""
        self._here = True
        self._loop.call_soon(self._next_iteration)  # type: ignore[union-attr]
        try:
            flushed = self._timed_flush()
        except OSError as exc:  # as in _finished: the waiter times out, the next round retries
            _log.error("flush.failed", error=exc)
            return
        self._advance(flushed)

    def _next_iteration(self) -> None:
        self._here = False

    def _timed_flush(self) -> int:
        """The flush, timed where it runs: timed from the loop, a busy loop would count its
        own delay in taking the result as a slow disk."""
        began = time.monotonic()
        try:
            return self._round()
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
        self._again()

    def _again(self) -> None:
        """A round for the waiters that came while the last one ran."""
        if self._waiters and not self._queued:
            self._queued = True
            self._loop.call_soon(self._round_for_waiters)  # type: ignore[union-attr]

    def _advance(self, flushed: int) -> None:
        self.rounds += 1
        if flushed > self.flushed_offset:
            self.flushed_offset = flushed
            if self.on_flushed is not None:
                self.on_flushed(flushed)
        answered = self._waiters.reached(flushed)
        if answered:  # (a periodic round with no waiter says nothing of the senders)
            self._last_round = answered

"""Callbacks waiting for an offset to be reached, each with a deadline: what a SYNC_FLUSH send
waits for (the flushed offset) and what a SYNC_MASTER send waits for (a slave's acked offset).

A waiter is a callback, not a future with its own timer: under SYNC_FLUSH or SYNC_MASTER every
send waits, and one timer for all of them (at the earliest deadline) is enough to answer a
stuck disk or a silent slave with a timeout.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable


class OffsetWaiters:
    def __init__(self) -> None:
        # (offset needed, arrival, deadline, callback)
        self._heap: list[tuple[int, int, float, Callable[[bool], None]]] = []
        self._expiry: asyncio.TimerHandle | None = None
        self._seq = itertools.count()
        # The loop of the waiters in the heap, taken when the first arrives:
        # asyncio.get_running_loop() costs a getpid() system call, and under SYNC_FLUSH every
        # send waits (7% of a loaded node's loop thread).
        self._loop: asyncio.AbstractEventLoop | None = None

    def __bool__(self) -> bool:
        return bool(self._heap)

    def add(self, offset: int, timeout: float, callback: Callable[[bool], None]) -> None:
        """callback(True) once `reached(n)` is told an n >= offset, callback(False) after
        `timeout` seconds if not."""
        loop = self._loop
        if loop is None or not self._heap:
            loop = self._loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        heapq.heappush(self._heap, (offset, next(self._seq), deadline, callback))
        if self._expiry is None or deadline < self._expiry.when():
            # (timeouts can differ: they may change at run time)
            if self._expiry is not None:
                self._expiry.cancel()
            self._expiry = loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        """Answer the waiters past their deadline, then wait for the next deadline; waiters
        answered meanwhile are simply gone."""
        self._expiry = None
        loop = self._loop
        assert loop is not None  # set by the add() that scheduled this
        now = loop.time()
        late = [w for w in self._heap if w[2] <= now]
        if late:
            self._heap = [w for w in self._heap if w[2] > now]
            heapq.heapify(self._heap)
            for waiter in late:
                waiter[3](False)
        if self._heap:
            self._expiry = loop.call_at(min(w[2] for w in self._heap), self._expire)

    def reached(self, offset: int) -> int:
        """Everything before `offset` is done: answer the waiters it covers, and say how many
        there were. A waiter whose deadline passed before is answered with a timeout, as
        Java's future.get(timeout) would be."""
        heap = self._heap
        answered = 0
        if heap and heap[0][0] <= offset:
            now = self._loop.time()  # type: ignore[union-attr]  # (set: the heap holds some)
            while heap and heap[0][0] <= offset:
                waiter = heapq.heappop(heap)
                waiter[3](waiter[2] >= now)
                answered += 1
        return answered

    def fail_all(self) -> None:
        """Answer every waiter with a timeout now (the service stops)."""
        heap, self._heap = self._heap, []
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        for waiter in heap:
            waiter[3](False)

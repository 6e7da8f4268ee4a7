"""Running bench loads in several OS processes and merging what they measure.

One Python process tops out near 5k sends/s, well below what a node can take, so the load
is spread over worker processes (forked: nothing is pickled on the way in). Each worker sets
up its connections, says it is ready, waits for the common start signal, then sends its
Meter delta to the parent five times a second and once more when it ends. The parent merges
the deltas per role ("produce", "consume"), prints progress and decides when an open-ended role
(the consumers of e2e) should stop.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import queue as queue_mod
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Protocol

from rmqnode.cli import event_loop_runner
from rmqctl.client.bench import Meter

TICK = 1.0          # the parent's progress line
REPORT_EVERY = 0.2  # workers' deltas: several per line, so each line sees its own second
READY_TIMEOUT = 60.0


class Load(Protocol):
    """What a worker runs (ProduceLoad, ConsumeLoad): set up before the clock starts, run until
    done or stopping(), close either way."""

    async def setup(self) -> None: ...
    async def run(self, meter: Meter, stopping: Callable[[], bool]) -> None: ...
    async def close(self) -> None: ...


@dataclass
class Job:
    role: str
    make: Callable[[], Load]  # called in the worker, after the fork


@dataclass
class RoleTotals:
    """A role's merged figures: every worker's deltas, and the span from the common start
    to the last worker's end (rates are over that span)."""

    meter: Meter = field(default_factory=Meter)
    workers: int = 0
    finished: int = 0
    ended: float = 0.0

    @property
    def done(self) -> bool:
        return self.finished == self.workers


class BenchFailed(Exception):
    """A worker could not set up or died; the message says which and why."""


def _worker(index: int, job: Job, reports: Queue, go: Event, stop: Event) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us through `stop`
    try:
        # The node's event loop (uvloop when installed): a cheaper loop is more load per core.
        event_loop_runner()(_work(index, job, reports, go, stop))
    except BaseException as exc:  # noqa: BLE001 - whatever it was, the parent must hear it
        reports.put(("failed", index, (str(exc) or type(exc).__name__).splitlines()[0]))
        raise SystemExit(1) from None


async def _work(index: int, job: Job, reports: Queue, go: Event, stop: Event) -> None:
    load = job.make()
    meter = Meter()
    try:
        await load.setup()
        reports.put(("ready", index))
        if not await asyncio.to_thread(go.wait, READY_TIMEOUT) or stop.is_set():
            return
        stopped = False

        def stopping() -> bool:
            return stopped

        async def report() -> None:
            nonlocal stopped
            while True:
                await asyncio.sleep(REPORT_EVERY)
                stopped = stop.is_set()
                reports.put(("tick", index, meter.take()))

        reporter = asyncio.create_task(report())
        try:
            await load.run(meter, stopping)
        finally:
            reporter.cancel()
        reports.put(("done", index, meter.take(), time.time()))
    finally:
        await load.close()


class Pool:
    """Start the jobs, release them together, merge their reports until all are done."""

    def __init__(self, jobs: list[Job]) -> None:
        ctx = mp.get_context("fork")
        self.jobs = jobs
        self.reports: Queue = ctx.Queue()
        self.go = ctx.Event()
        self.stops = {job.role: ctx.Event() for job in jobs}
        self.totals = {job.role: RoleTotals() for job in jobs}
        for job in jobs:
            self.totals[job.role].workers += 1
        self.procs = [ctx.Process(target=_worker, daemon=True,
                                  args=(i, job, self.reports, self.go, self.stops[job.role]))
                      for i, job in enumerate(jobs)]
        self.started = 0.0
        self.interrupted = False  # Ctrl-C: every role was stopped early, figures still count

    def stop(self, role: str | None = None) -> None:
        for name, event in self.stops.items():
            if role is None or name == role:
                event.set()

    def run(self, on_tick: Callable[[Pool, float], None]) -> dict[str, RoleTotals]:
        """Run to the end. on_tick(pool, seconds since start) runs about once a second; it may
        print progress and call stop(role). Ctrl-C stops every role and still returns (see
        `interrupted`)."""
        for proc in self.procs:
            proc.start()
        try:
            self._wait_ready()
            self.go.set()
            self.started = time.time()
            self._collect(on_tick)
        finally:
            self.stop()
            self.go.set()
            for proc in self.procs:
                proc.join(5)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
        return self.totals

    def _next(self, timeout: float) -> tuple | None:
        try:
            msg = self.reports.get(timeout=timeout)
        except queue_mod.Empty:
            dead = [p for p in self.procs if p.exitcode not in (None, 0)]
            if dead:
                raise BenchFailed(f"a bench worker exited with code {dead[0].exitcode}") \
                    from None
            return None
        if msg[0] == "failed":
            raise BenchFailed(msg[2])
        return msg

    def _wait_ready(self) -> None:
        ready = 0
        deadline = time.monotonic() + READY_TIMEOUT
        while ready < len(self.procs):
            if time.monotonic() > deadline:
                raise BenchFailed("bench workers did not get ready in time")
            if self._next(0.2) is not None:
                ready += 1

    def _collect(self, on_tick: Callable[[Pool, float], None]) -> None:
        next_tick = time.monotonic() + TICK
        while not all(t.done for t in self.totals.values()):
            try:
                msg = self._next(max(0.0, next_tick - time.monotonic()))
                if msg is not None:
                    totals = self.totals[self.jobs[msg[1]].role]
                    totals.meter.merge(msg[2])
                    if msg[0] == "done":
                        totals.finished += 1
                        totals.ended = max(totals.ended, msg[3])
                if time.monotonic() >= next_tick:
                    next_tick += TICK
                    on_tick(self, time.time() - self.started)
            except KeyboardInterrupt:
                self.interrupted = True
                self.stop()

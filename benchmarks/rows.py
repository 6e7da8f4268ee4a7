"""A row of benchmarks/run.py's report and the small tools every row maker shares (run.py,
matrix.py): formatting, progress lines, `rmqctl -o json` runs, the server's CPU per message,
the page cache settled before each load."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from servers import Server


@dataclass
class Row:
    name: str
    value: float
    unit: str
    latency: str = ""
    baseline_name: str = ""
    baseline: float | None = None
    disk: float | None = None    # produce rows: the disk's rate in the same unit
    java: str = ""
    cpu_us: float | None = None  # the server's CPU time per message during the row
    target: str = ""
    passed: bool | None = None

    def cells(self) -> list[str]:
        def ratio(base: float | None) -> str:
            if not base:
                return ""
            r = self.value / base
            return f"{r:.2f}x" if r >= 0.1 else f"{r:.4f}x"

        base = f"{self.baseline_name} {fmt(self.baseline, self.unit)}" \
            if self.baseline is not None else ""
        cpu = f"{self.cpu_us:.0f} us" if self.cpu_us is not None else ""
        return [self.name, fmt(self.value, self.unit), self.latency, cpu, base,
                ratio(self.baseline),
                fmt(self.disk, self.unit) if self.disk else "", ratio(self.disk), self.java,
                self.target, {True: "pass", False: "FAIL", None: ""}[self.passed]]


HEADERS = ["Benchmark", "Figure", "Latency p50 / p99", "Server CPU / msg", "Baseline (same run)",
           "vs baseline",
           "Disk (same run)", "vs disk", "Java 4.9.8 (issue 21)", "Target", "Result"]


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit in ("msgs/s", "MB/s"):
        return f"{value:,.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}"
    return f"{value:.2f} {unit}"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def rmqctl(namesrv: str, *args: str, timeout: float = 300) -> dict:
    """One `rmqctl -o json ...` run; its JSON answer."""
    argv = [sys.executable, "-m", "rmqctl.cli", "-n", namesrv, "-o", "json", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv[1:])} exited {done.returncode}: "
                           f"{done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)


# The directories loads write under (run.py's and ab.py's work directories): see settle().
LOAD_DIRS: list[Path] = []


def settle() -> None:
    """What earlier loads wrote under LOAD_DIRS, written back and dropped from the page cache,
    so that each load starts with a quiet disk and as much fresh memory as the first had.

    Why: on this kind of machine (a VM) a page-cache page costs five times as much once
    about 8 GB of memory are in use (a 10.5 KB pwrite into new pages: 6 us, then 32; measured
    2026-11-30, the same beyond 14 GB), so a run's later loads paid for how much the
    earlier ones had left cached, and the Python floor's appends, never synced, were written
    back during whichever load came next. Both made "this machine's speed drifts within
    minutes": the same node's 1 KiB batches did 290k msgs/s at 1.7 us of CPU per message, then
    175k at 4.8, in one run. Files still mapped by a server (queue and index files) keep
    their pages; so does everything outside LOAD_DIRS."""
    for root in LOAD_DIRS:
        for where, _, names in os.walk(root):
            for name in names:
                try:
                    fd = os.open(os.path.join(where, name), os.O_RDONLY | os.O_NOFOLLOW)
                except OSError:  # gone meanwhile (a server deleting a file), or not a file
                    continue
                try:
                    if stat.S_ISREG(os.fstat(fd).st_mode):
                        os.fdatasync(fd)
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                except OSError:
                    pass
                finally:
                    os.close(fd)


def on_cpu(server: Server, run: Callable[[], dict], settled: bool = True
           ) -> tuple[dict, float]:
    """A load's figures and the server's CPU time per message it moved (all its threads:
    under SYNC_FLUSH the flush thread's too); settle() first, unless the load reads what was
    just written (a drain: its backlog is in the page cache, as a consumer finds it)."""
    if settled:
        settle()
    before = server.cpu_seconds()
    figures = run()
    return figures, (server.cpu_seconds() - before) * 1e6 / max(figures["messages"], 1)

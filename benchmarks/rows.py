"""A row of benchmarks/run.py's report and the small tools every row maker shares (run.py,
matrix.py): formatting, progress lines, `rmqctl -o json` runs, the server's CPU per message."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

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


def on_cpu(server: Server, run: Callable[[], dict]) -> tuple[dict, float]:
    """A load's figures and the server's CPU time per message it moved (all its threads:
    under SYNC_FLUSH the flush thread's too)."""
    before = server.cpu_seconds()
    figures = run()
    return figures, (server.cpu_seconds() - before) * 1e6 / max(figures["messages"], 1)

"""Run a server as a child process and learn where it listens: tests, benchmarks and anyone
embedding a node in their own test suite start rmqnode this way.

The child prints `<role>.started addr=HOST:PORT` for each role it serves (rmqnode's lifecycle
lines; the benchmark floor prints one too), so port 0 works. A thread reads all its output,
so a chatty child never blocks on a full pipe, and the lines stay available for assertions.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

_STARTED = re.compile(r"(\w+)\.started addr=(\S+)")


def rmqnode_argv(*args: str) -> list[str]:
    """The command line of an rmqnode child run by this interpreter."""
    return [sys.executable, "-m", "rmqnode.cli", *args]


class ServerProcess:
    def __init__(self, argv: list[str], home: Path,
                 env: dict[str, str | None] | None = None) -> None:
        """Start `argv` in `home` (also its RMQNODE_HOME); `env` adds to the environment, and
        removes the variables it maps to None."""
        self.argv = argv
        self.home = home
        self.lines: list[str] = []
        self.addrs: dict[str, str] = {}  # role -> address, from the started lines
        self.spawned = time.perf_counter()
        self.started_at: dict[str, float] = {}  # role -> seconds from spawn to its line
        self._changed = threading.Condition()
        full_env = dict(os.environ, RMQNODE_HOME=str(home), PYTHONUNBUFFERED="1")
        for key, value in (env or {}).items():
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = value
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=full_env,
                                     cwd=str(home))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                match = _STARTED.search(line)
                if match:
                    self.addrs[match.group(1)] = match.group(2)
                    self.started_at[match.group(1)] = time.perf_counter() - self.spawned
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU the process has used so far, from /proc (clock-tick resolution,
        10 ms: fine over a run of seconds). For benchmarks that bill a load to its server."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_started(self, roles: tuple[str, ...], timeout: float = 15.0) -> ServerProcess:
        """Wait for every role's started line; raises RuntimeError with the output if the
        child exits or the time runs out first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not all(r in self.addrs for r in roles):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise RuntimeError(f"{self.argv} did not start {roles}; output:\n"
                                       + "\n".join(self.lines))
                self._changed.wait(min(left, 0.2))
        return self

    def wait_line(self, pattern: str, timeout: float = 10.0) -> str:
        """The first output line matching `pattern`, waiting for it up to `timeout`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if regex.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"no line matching {pattern!r}; output:\n"
                                       + "\n".join(self.lines))
                self._changed.wait(min(left, 0.2))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the child (SIGTERM: it flushes and unregisters, as for an operator) and
        reap it; killed if it outlives `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

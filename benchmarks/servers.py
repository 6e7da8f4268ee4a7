"""Processes that benchmarks/run.py loads: rmqnode on a fresh store, the Python floor and the
native floor, started as the tests start nodes (rmqnode.launch)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from rmqnode.launch import ServerProcess, rmqnode_argv

BENCH_DIR = Path(__file__).resolve().parent
# The C++ client 1.x (PyPI rocketmq==0.4.4) in its own venv, as .ci/peers.sh installs it.
CPP_PYTHON = Path(os.environ.get("RMQ_PEERS_DIR") or Path.home() / ".cache" / "rmqnode-peers") \
    / "cpp" / "bin" / "python"


class Server(ServerProcess):
    """A started server process; `addrs` maps role (namesrv, broker, floor) to address."""

    def __init__(self, argv: list[str], roles: tuple[str, ...], home: Path,
                 timeout: float = 60.0, env: dict[str, str | None] | None = None) -> None:
        home.mkdir(parents=True, exist_ok=True)
        super().__init__(argv, home, env)
        try:
            self.wait_started(roles, timeout)
        except RuntimeError:
            self.stop()
            raise
        # seconds from spawn to the last of `roles` being up
        self.started_after = max(self.started_at[r] for r in roles)

    def rss_mib(self) -> float:
        """VmRSS of the process, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for pid {self.pid}")

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_node(home: Path, *defines: str, env: dict[str, str | None] | None = None) -> Server:
    """rmqnode (name server + broker) with its store under home/store; defines are -D
    KEY=VALUE properties, `env` what to add to (or, None, drop from) its environment."""
    argv = rmqnode_argv("--namesrv-port", "0", "--listen-port", "0", "--grpc-port", "0",
                        "--store", str(home / "store"))
    for define in defines:
        argv += ["-D", define]
    return Server(argv, ("namesrv", "broker"), home, env=env)


def start_floor(home: Path, durable: bool = False, group_commit: bool = False) -> Server:
    return Server([sys.executable, str(BENCH_DIR / "floor.py"), "--dir", str(home)]
                  + ["--durable"] * durable + ["--group-commit"] * group_commit,
                  ("floor",), home)


def start_native_floor(home: Path) -> Server | None:
    """benchmarks/native_floor.c, compiled into home; None when there is no C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    home.mkdir(parents=True, exist_ok=True)
    binary = home / "native_floor"
    subprocess.run([cc, "-O2", "-o", str(binary), str(BENCH_DIR / "native_floor.c")],
                   check=True, capture_output=True)
    return Server([str(binary)], ("floor",), home)

"""Driving real RocketMQ clients written by others (installed by .ci/peers.sh).

Each peer runs as a subprocess under a timeout, with HOME set to a fresh folder (the clients
write logs and offset files under it). A missing peer fails the test with the command that
installs it: an interop test that did not run is not a pass.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

PEERS_DIR = Path(os.environ.get("RMQ_PEERS_DIR", Path.home() / ".cache" / "rmqnode-peers"))


@dataclass
class PeerRun:
    returncode: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    home: Path

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    def explain(self) -> str:
        logs = ""
        for log in sorted(self.home.rglob("*.log"))[-2:]:
            logs += f"\n--- {log} (tail)\n" + "\n".join(log.read_text(errors="replace")
                                                     .splitlines()[-30:])
        return (f"exit {self.returncode}\n--- stdout\n{self.stdout[-4000:]}\n--- stderr\n"
                f"{self.stderr[-4000:]}{logs}")


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.fail(f"{what} is not installed at {path}: run `bash .ci/peers.sh` "
                    f"(RMQ_PEERS_DIR={PEERS_DIR})", pytrace=False)
    return path


def _run(argv: list[str], source: str, suffix: str, timeout: float, env: dict[str, str],
         cwd: Path | None = None) -> PeerRun:
    home = Path(tempfile.mkdtemp(prefix="peer-home-"))
    script = home / f"peer{suffix}"
    script.write_text(source)
    full_env = {k: v for k, v in os.environ.items() if k not in ("NAMESRV_ADDR",)}
    full_env.update(HOME=str(home), PYTHONUNBUFFERED="1", **env)
    try:
        proc = subprocess.run(argv + [str(script)], capture_output=True, text=True,
                              timeout=timeout, env=full_env, cwd=str(cwd or home))
        return PeerRun(proc.returncode, proc.stdout, proc.stderr, home)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else \
            (exc.stdout or "")
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else \
            (exc.stderr or "")
        return PeerRun(None, out, err, home)


def run_cpp(source: str, timeout: float = 60, env: dict[str, str] | None = None) -> PeerRun:
    """Python source run with the C++ client 1.x (`from rocketmq.client import ...`)."""
    python = _need(PEERS_DIR / "cpp" / "bin" / "python", "the C++ client (PyPI rocketmq==0.4.4)")
    return _run([str(python)], source, ".py", timeout, env or {})


def run_cpp21(source: str, timeout: float = 60, env: dict[str, str] | None = None) -> PeerRun:
    """Python source run with the C++ client 2.1 (transactions)."""
    python = _need(PEERS_DIR / "cpp21" / "bin" / "python",
                   "the C++ client 2.x bindings (PyPI rocketmq-client-python==2.0.0)")
    [libdir] = _need(PEERS_DIR / "cvs", "the C++ 2.1 library (PyPI rocketmq-python-cvs)").glob(
        "lib/python3*/site-packages/rocketmq")
    return _run([str(python)], source, ".py", timeout,
                {"LD_LIBRARY_PATH": str(libdir), **(env or {})})


def run_alions(source: str, timeout: float = 60, env: dict[str, str] | None = None) -> PeerRun:
    """JavaScript source run by node with ali-ons resolvable (`require('ali-ons')`)."""
    modules = _need(PEERS_DIR / "alions" / "node_modules" / "ali-ons", "ali-ons (npm)").parent
    return _run(["node"], source, ".js", timeout, {"NODE_PATH": str(modules), **(env or {})})


def run_grpc5(source: str, timeout: float = 60, env: dict[str, str] | None = None) -> PeerRun:
    """Python source run with the official 5.x gRPC client (PyPI rocketmq-python-client)."""
    python = _need(PEERS_DIR / "grpc5" / "bin" / "python",
                   "the 5.x gRPC client (PyPI rocketmq-python-client==5.1.2)")
    return _run([str(python)], source, ".py", timeout, env or {})

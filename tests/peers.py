"""Driving real RocketMQ clients written by others ("peers"), installed by `.ci/peers.sh`.

Each peer runs the source a test gives it as a subprocess of its own interpreter, with HOME set to
a fresh folder (the clients write logs and offset files under it), stdout unbuffered, and a
timeout. A missing peer fails the test and says how to install it: an interop test that did not
run is not a pass.

    run = run_cpp(SCRIPT, timeout=30, args=[node.namesrv])   # blocks until it exits (or is killed)
    assert run.returncode == 0, run.explain()                # explain(): output, exit, log tails
    assert "SENT SEND_OK" in run.stdout, run.explain()

    with start_peer("alions", CONSUMER_JS, args=[ns]) as consumer:   # runs while the test acts
        consumer.wait_line(r"^subscribed")
        ...
        run = consumer.finish(timeout=20)

Peers: "cpp" (C++ client 1.x, Python `rocketmq` 0.4.4), "cpp21" (C++ client 2.1 with
transactions, Python `rocketmq-client-python` 2.0.0), "alions" (ali-ons 3.12.0, JavaScript;
`require('ali-ons')` works), "grpc5" (official 5.x gRPC client, Python `rocketmq-python-client`
5.1.2), "grpcnode" (official 5.x gRPC client for Node.js, npm `rocketmq-client-nodejs` 1.0.8;
`require('rocketmq-client-nodejs')` works). Python scripts get their arguments in sys.argv[1:],
JavaScript in process.argv.slice(2).
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pytest

PEERS_DIR = Path(os.environ.get("RMQ_PEERS_DIR") or Path.home() / ".cache" / "rmqnode-peers")

# Every peer's HOME lives under one folder per test session, removed at exit unless
# RMQ_KEEP_PEER_HOMES is set (explain() already quotes the logs' tails).
_HOMES = Path(tempfile.mkdtemp(prefix="rmq-peer-homes-"))
if not os.environ.get("RMQ_KEEP_PEER_HOMES"):
    atexit.register(shutil.rmtree, _HOMES, True)

# Inherited settings that would change what a peer loads or where it connects.
_DROP_ENV = ("NAMESRV_ADDR", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV",
             "LD_PRELOAD", "NODE_OPTIONS", "ROCKETMQ_HOME", "ROCKETMQ_CLIENT_LOG_DIR")


def _missing(what: str, path: Path) -> None:
    pytest.fail(f"{what} is not installed: {path} is missing. Install the peers with "
                f"`bash .ci/peers.sh` (into RMQ_PEERS_DIR={PEERS_DIR}).", pytrace=False)


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        _missing(what, path)
    return path


def _python(venv: str, what: str) -> Path:
    return _need(PEERS_DIR / venv / "bin" / "python", what)


def _command(peer: str, home: Path) -> tuple[list[str], str, dict[str, str]]:
    """argv prefix, script suffix and extra environment that run `peer`."""
    if peer == "cpp":
        return [str(_python("cpp", "the C++ client 1.x (PyPI rocketmq==0.4.4)"))], ".py", {}
    if peer == "cpp21":
        python = _python("cpp21", "the C++ client 2.1 bindings (PyPI rocketmq-client-python==2.0.0)")
        libs = sorted((PEERS_DIR / "cvs").glob("lib/python3*/site-packages/rocketmq/librocketmq.so"))
        if not libs:
            _missing("the C++ client 2.1 library (PyPI rocketmq-python-cvs==2.1.0.3)",
                     PEERS_DIR / "cvs/lib/python3*/site-packages/rocketmq/librocketmq.so")
        # The 2.1 library writes its log to /logs/rocketmq-client/ unless told (it ignores HOME).
        return [str(python)], ".py", {"LD_LIBRARY_PATH": str(libs[0].parent),
                                      "ROCKETMQ_CLIENT_LOG_DIR": str(home / "logs" / "rocketmq-client")}
    if peer == "alions":
        modules = _need(PEERS_DIR / "alions" / "node_modules" / "ali-ons", "ali-ons 3.12.0 (npm)").parent
        node = shutil.which("node") or _missing("node (Debian: nodejs)", Path("node"))
        return [str(node)], ".js", {"NODE_PATH": str(modules)}
    if peer == "grpc5":
        return [str(_python("grpc5", "the 5.x gRPC client (PyPI rocketmq-python-client==5.1.2)"))], \
            ".py", {}
    if peer == "grpcnode":
        modules = _need(PEERS_DIR / "grpcnode" / "node_modules" / "rocketmq-client-nodejs",
                        "the 5.x gRPC client for Node.js (npm rocketmq-client-nodejs@1.0.8)").parent
        node = shutil.which("node") or _missing("node (Debian: nodejs)", Path("node"))
        return [str(node)], ".js", {"NODE_PATH": str(modules)}
    raise ValueError(f"unknown peer {peer!r}: cpp, cpp21, alions, grpc5 or grpcnode")


@dataclass
class PeerRun:
    """What a finished (or killed) peer process printed."""

    peer: str
    returncode: int | None  # None: still running at the timeout, so killed
    stdout: str
    stderr: str
    home: Path  # its HOME: logs/ holds the client's own log files
    seconds: float
    timed_out: bool = False

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def log_files(self) -> list[Path]:
        return sorted(p for p in self.home.rglob("*") if p.is_file() and "logs" in p.parts)

    def explain(self, log_lines: int = 40) -> str:
        """Exit status, output and the tails of the client's logs, for assertion messages."""
        if self.timed_out:
            status = f"killed at the {self.seconds:.1f}s timeout (still running then)"
        elif self.returncode is None:
            status = f"still running after {self.seconds:.1f}s"
        elif self.returncode is not None and self.returncode < 0:
            status = f"killed by {signal.Signals(-self.returncode).name} after {self.seconds:.1f}s"
        else:
            status = f"exit {self.returncode} after {self.seconds:.1f}s"
        text = (f"peer {self.peer}: {status}\n--- stdout\n{self.stdout[-4000:]}"
                f"\n--- stderr\n{self.stderr[-4000:]}")
        for log in self.log_files()[-3:]:
            tail = log.read_text(errors="replace").splitlines()[-log_lines:]
            text += f"\n--- {log} (last {len(tail)} lines)\n" + "\n".join(tail)
        return text

    def check(self) -> PeerRun:
        """Fail the test unless the peer exited 0; returns self for chaining."""
        if not self.ok:
            pytest.fail(self.explain(), pytrace=False)
        return self


@dataclass
class PeerProcess:
    """A running peer. Use as a context manager: leaving it kills the process if still running."""

    peer: str
    proc: subprocess.Popen
    home: Path
    started: float = field(default_factory=time.monotonic)
    _out: list[str] = field(default_factory=list)
    _err: list[str] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _readers: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        for pipe, sink in ((self.proc.stdout, self._out), (self.proc.stderr, self._err)):
            reader = threading.Thread(target=self._read, args=(pipe, sink), daemon=True)
            reader.start()
            self._readers.append(reader)

    def _read(self, pipe, sink: list[str]) -> None:
        for line in pipe:
            with self._cond:
                sink.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def stdout(self) -> str:
        with self._cond:
            return "".join(self._out)

    def _snapshot(self, timed_out: bool = False) -> PeerRun:
        with self._cond:
            out, err = "".join(self._out), "".join(self._err)
        return PeerRun(self.peer, None if timed_out else self.proc.returncode, out, err, self.home,
                       time.monotonic() - self.started, timed_out)

    def wait_line(self, pattern: str, timeout: float = 15) -> re.Match[str]:
        """The first stdout line matching `pattern` (re.search); fails the test with what the
        peer printed if none comes within `timeout` seconds or the peer exits first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self._out:
                    if match := regex.search(line.rstrip("\n")):
                        return match
                exited = self.proc.poll() is not None and not any(r.is_alive() for r in self._readers)
                left = deadline - time.monotonic()
                if exited or left <= 0:
                    break
                self._cond.wait(min(left, 0.2))
        why = "exited" if exited else f"printed nothing matching in {timeout}s"
        pytest.fail(f"waiting for /{pattern}/: the peer {why}\n{self._snapshot().explain()}",
                    pytrace=False)

    def finish(self, timeout: float) -> PeerRun:
        """Wait up to `timeout` seconds for the peer to exit, killing it then; all it printed."""
        timed_out = False
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            self.kill()
        for reader in self._readers:
            reader.join(timeout=5)
        return self._snapshot(timed_out)

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: children too
            except ProcessLookupError:
                pass
            self.proc.wait()

    def __enter__(self) -> PeerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def start_peer(peer: str, source: str, env: dict[str, str] | None = None,
               args: Sequence[str] = ()) -> PeerProcess:
    """Start `source` (Python, or JavaScript for "alions" and "grpcnode") with the peer's
    runtime."""
    home = Path(tempfile.mkdtemp(prefix=f"{peer}-", dir=_HOMES))
    argv, suffix, peer_env = _command(peer, home)
    script = home / f"peer{suffix}"
    script.write_text(source)
    full_env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
    full_env.update(HOME=str(home), PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1",
                    **peer_env, **(env or {}))
    proc = subprocess.Popen([*argv, str(script), *map(str, args)], cwd=home, env=full_env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace",
                            start_new_session=True)
    return PeerProcess(peer, proc, home)


def run_peer(peer: str, source: str, timeout: float = 60, env: dict[str, str] | None = None,
             args: Sequence[str] = ()) -> PeerRun:
    """Run `source` with the peer's runtime to its end, or kill it after `timeout` seconds."""
    with start_peer(peer, source, env, args) as process:
        return process.finish(timeout)


def run_cpp(source: str, timeout: float = 60, env: dict[str, str] | None = None,
            args: Sequence[str] = ()) -> PeerRun:
    """Python source run with the C++ client 1.x: `from rocketmq.client import Producer, ...`."""
    return run_peer("cpp", source, timeout, env, args)


def run_cpp21(source: str, timeout: float = 60, env: dict[str, str] | None = None,
              args: Sequence[str] = ()) -> PeerRun:
    """Python source run with the C++ client 2.1: `from rocketmq.client import
    TransactionMQProducer, ...`."""
    return run_peer("cpp21", source, timeout, env, args)


def run_alions(source: str, timeout: float = 60, env: dict[str, str] | None = None,
               args: Sequence[str] = ()) -> PeerRun:
    """JavaScript source run by node, where `require('ali-ons')` works."""
    return run_peer("alions", source, timeout, env, args)


def run_grpc5(source: str, timeout: float = 60, env: dict[str, str] | None = None,
              args: Sequence[str] = ()) -> PeerRun:
    """Python source run with the official 5.x gRPC client: `from rocketmq import Producer`."""
    return run_peer("grpc5", source, timeout, env, args)


def run_grpcnode(source: str, timeout: float = 60, env: dict[str, str] | None = None,
                 args: Sequence[str] = ()) -> PeerRun:
    """JavaScript source run by node, where `require('rocketmq-client-nodejs')` works (the
    official 5.x gRPC client; it logs under $HOME/logs/rocketmq/)."""
    return run_peer("grpcnode", source, timeout, env, args)

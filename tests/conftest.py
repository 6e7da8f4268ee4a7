"""Shared fixtures: real rmqnode processes on free loopback ports, and the shared fixtures dir."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("RMQ_SHARED", REPO.parent / "shared"))
WIRE = SHARED / "fixtures" / "wire"
STORE_FIXTURE = SHARED / "fixtures" / "rocketmq-4.9.8"

_STARTED = re.compile(r"(namesrv|broker)\.started addr=(\S+)")


def pytest_configure(config: pytest.Config) -> None:
    if not WIRE.is_dir():
        raise pytest.UsageError(f"shared fixtures not found at {SHARED}: clone next to ../shared "
                                "or set RMQ_SHARED")


class Node:
    """One `rmqnode` process. Its stderr is collected so tests can read its log lines."""

    def __init__(self, args: list[str], home: Path, env: dict[str, str] | None = None) -> None:
        if not any(a.startswith("mappedFileSizeCommitLog=") for a in args):
            # Default 1 GiB CommitLog files are reserved on disk: dozens of test nodes would
            # take tens of GB. Tests that care about file sizes set their own.
            args = [*args, "-D", "mappedFileSizeCommitLog=67108864"]
        self.args = args
        self.home = home
        self.lines: list[str] = []
        self.addrs: dict[str, str] = {}
        self._ready = threading.Condition()
        full_env = dict(os.environ, RMQNODE_HOME=str(home), PYTHONUNBUFFERED="1")
        full_env.pop("NAMESRV_ADDR", None)
        full_env.update(env or {})
        self.proc = subprocess.Popen([sys.executable, "-m", "rmqnode.cli", *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=full_env,
                                     cwd=str(home))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._ready:
                self.lines.append(line.rstrip("\n"))
                m = _STARTED.search(line)
                if m:
                    self.addrs[m.group(1)] = m.group(2)
                self._ready.notify_all()
        with self._ready:
            self._ready.notify_all()

    def wait_started(self, roles: tuple[str, ...], timeout: float = 15.0) -> Node:
        deadline = time.monotonic() + timeout
        with self._ready:
            while not all(r in self.addrs for r in roles):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"rmqnode {self.args} did not start {roles}; "
                                         f"output:\n" + "\n".join(self.lines))
                self._ready.wait(min(left, 0.2))
        return self

    def wait_line(self, pattern: str, timeout: float = 10.0) -> str:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._ready:
            while True:
                for line in self.lines:
                    if regex.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no line matching {pattern!r}; output:\n"
                                         + "\n".join(self.lines))
                self._ready.wait(min(left, 0.2))

    @property
    def namesrv(self) -> str:
        return self.addrs["namesrv"]

    @property
    def broker(self) -> str:
        return self.addrs["broker"]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def start_node(tmp_path_factory: pytest.TempPathFactory):
    """start_node(*args, roles=(...)) -> a started Node; every node is stopped at teardown."""
    nodes: list[Node] = []

    def start(*args: str, roles: tuple[str, ...] = ("namesrv", "broker"),
              env: dict[str, str] | None = None, home: Path | None = None) -> Node:
        node = Node(list(args), home or tmp_path_factory.mktemp("node"), env)
        nodes.append(node)
        return node.wait_started(roles)

    yield start
    for node in nodes:
        node.stop()


@pytest.fixture
def namesrv(start_node) -> Node:
    return start_node("--role", "namesrv", "--listen-port", "0", roles=("namesrv",))


# -- the Java RocketMQ 4.9.8 stores ----------------------------------------------------------

JAVA_SIZES = dict(mappedFileSizeCommitLog=1048576, mappedFileSizeConsumeQueue=6000,
                  maxHashSlotNum=5000, maxIndexNum=20000, brokerIP1="127.0.0.1",
                  listenPort=10911)  # from the fixture's broker.conf


def _unpack(archive: str, dest: Path) -> Path:
    import io
    import tarfile

    import zstandard
    raw = zstandard.ZstdDecompressor().stream_reader((STORE_FIXTURE / archive).open("rb")).read()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "store"


@pytest.fixture(scope="session")
def java_store_pristine(tmp_path_factory) -> Path:
    """The real 4.9.8 store, unpacked once; never write to it (use `java_store`)."""
    return _unpack("store.tar.zst", tmp_path_factory.mktemp("java-store"))


@pytest.fixture(scope="session")
def java_crashed_pristine(tmp_path_factory) -> Path:
    return _unpack("store-crashed.tar.zst", tmp_path_factory.mktemp("java-crashed"))


@pytest.fixture
def java_store(java_store_pristine, tmp_path) -> Path:
    """A private, writable copy of the real 4.9.8 store."""
    import shutil
    return Path(shutil.copytree(java_store_pristine, tmp_path / "store"))


@pytest.fixture
def java_crashed(java_crashed_pristine, tmp_path) -> Path:
    import shutil
    return Path(shutil.copytree(java_crashed_pristine, tmp_path / "crashed"))


@pytest.fixture(scope="session")
def manifest() -> list[dict]:
    import json
    return [json.loads(line) for line in
            (STORE_FIXTURE / "manifest.jsonl").read_text().splitlines()]

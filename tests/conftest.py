"""Shared fixtures: real rmqnode processes on free loopback ports, and the real RocketMQ data
in tests/fixtures."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from rmqnode.launch import ServerProcess, rmqnode_argv

REPO = Path(__file__).resolve().parent.parent
# Real RocketMQ data, copied from the project's shared fixtures (tests/fixtures/README.md):
# the suite needs nothing beside the repository.
FIXTURES = Path(__file__).resolve().parent / "fixtures"
WIRE = FIXTURES / "wire"
STORE_FIXTURE = FIXTURES / "rocketmq-4.9.8"


class Node(ServerProcess):
    """One `rmqnode` process. Its output is collected so tests can read its log lines."""

    def __init__(self, args: list[str], home: Path, env: dict[str, str] | None = None) -> None:
        if not any(a.startswith("mappedFileSizeCommitLog=") for a in args):
            # Default 1 GiB CommitLog files are reserved on disk: dozens of test nodes would
            # take tens of GB. Tests that care about file sizes set their own.
            args = [*args, "-D", "mappedFileSizeCommitLog=67108864"]
        if not any(a.startswith(("grpcServerPort=", "--grpc-port", "--no-grpc")) for a in args):
            # Tests run many nodes at once: a fixed 8081 would collide. The gRPC address is
            # node.addrs["grpc"] (its started line).
            args = [*args, "-D", "grpcServerPort=0"]
        self.args = args
        own_env: dict[str, str | None] = {"NAMESRV_ADDR": None, **(env or {})}
        super().__init__(rmqnode_argv(*args), home, own_env)

    @property
    def namesrv(self) -> str:
        return self.addrs["namesrv"]

    @property
    def broker(self) -> str:
        return self.addrs["broker"]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        return super().stop(sig, timeout)


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

"""The rows of benchmarks/run.py for the paths issue 21 asked into the matrix, each held
against a baseline loaded in turn with it in the same run (rounds alternate, and the round
with the median ratio stands for all of them, as run.py's target rows):

- gRPC: the 5.x Python client sync-sending to rmqnode's gRPC port, against bench_grpc.py's
  floor (a grpcio server that answers SendMessage OK and stores nothing).
- ACL: the C++ client 1.x signing every send (plain ACL) to a node with aclEnable=true,
  against the same client unsigned to a node with ACL off (bench_acl.py's setup).
- SQL92: a drain by PULL_MESSAGE of a topic where half the messages match, filtered by a SQL92
  expression on a property, against the same drain filtered by tag (the same half).
- SYNC_FLUSH at one sender: the p50 of one connection's sync sends (one in flight) to a
  SYNC_FLUSH node, against the p50 of a bare write()+fdatasync() loop of a record of the same
  size, in this process, on the same disk; and against the durable Python floor (the same
  sends answered after a durable write), which pays the same round trip.
- Replication: the C++ client to a SYNC_MASTER with its slave, against an ASYNC_MASTER with
  its slave (bench_ha.py's pairs).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import bench_acl
import bench_fsync
import bench_grpc
import bench_ha
from rows import Row, on_cpu, rmqctl, say, settle
from servers import BENCH_DIR, CPP_PYTHON, Server, start_floor, start_node

from rmqctl.client.consumer import GroupConsumer
from rmqctl.client.namesrv import NameServerClient
from rmqctl.client.producer import Outgoing, Producer
from rmqnode.net.client import RemotingClient

MIB = 1 << 20
THREADS = 16  # C++ client rows, as the reference load
GRPC_THREADS = 8
FILTER_TOPIC = "FilterBench"
SQL = "k = 1"  # matches the messages tagged A, and only them


@dataclass(frozen=True)
class MatrixPlan:
    seconds: float      # per client run (gRPC, ACL, replication)
    rounds: int         # alternating rounds behind each row
    filtered: int       # messages in the SQL92/tag topic (half match)
    sync_sends: int     # sends behind each SYNC_FLUSH latency round


FULL = MatrixPlan(8.0, 3, 100_000, 2000)
QUICK = MatrixPlan(2.0, 1, 10_000, 300)


def paired(rounds: int, mine: Callable[[], dict], base: Callable[[], dict],
           key: Callable[[dict], float]) -> tuple[dict, dict, list[float]]:
    """`rounds` runs of each in turn (the order swapped every round, so neither always runs
    on a machine warmed by the other); the pair whose ratio is the median, and every ratio."""
    pairs = []
    for index in range(rounds):
        if index % 2:
            b = base()
            pairs.append((mine(), b))
        else:
            a = mine()
            pairs.append((a, base()))
    pairs.sort(key=lambda pair: key(pair[0]) / key(pair[1]))
    got, ref = pairs[len(pairs) // 2]
    return got, ref, [key(a) / key(b) for a, b in pairs]


UNITS = {"msgsPerSec": "msgs/s", "p50Ms": "ms"}  # the figures rows are made of


def spread(ratios: list[float]) -> str:
    return "" if len(ratios) < 2 else \
        f" ({min(ratios):.2f}-{max(ratios):.2f}x over {len(ratios)} rounds)"


def client_latency(figures: dict) -> str:
    return f"{figures['p50Ms']:.2f} / {figures['p99Ms']:.2f} ms"


class Matrix:
    def __init__(self, plan: MatrixPlan, work: Path, add: Callable[[Row], None]) -> None:
        self.plan = plan
        self.work = work
        self.add = add
        self.notes: list[str] = []  # each row's rounds, for the report

    def row(self, name: str, ratios: list[float], got: dict, ref: dict, key: str,
            baseline_name: str, cpu_us: float | None = None,
            bound: tuple[str, float, str] | None = None) -> None:
        """The median round's row, its figure `key` beside the baseline's, every round's
        ratio in the notes; `bound` (">=" or "<=", factor, what) is its target."""
        self.notes.append(f"{name}: " + " / ".join(f"{r:.2f}x" for r in ratios))
        row = Row(name + spread(ratios), got[key], UNITS[key],
                  client_latency(got), baseline_name, ref[key], cpu_us=cpu_us)
        if bound is not None:
            op, factor, what = bound
            row.target = f"{op} {factor:g}x {what}"
            limit = factor * ref[key]
            row.passed = got[key] >= limit if op == ">=" else got[key] <= limit
        self.add(row)

    def explain(self) -> str:
        """The report's lines on these rows: what each is held against, and every round."""
        rounds = "\n".join(f"  - {line}" for line in self.notes)
        return f"""- gRPC, ACL, SQL92, SYNC_FLUSH p50 and SYNC_MASTER rows (benchmarks/matrix.py): each
  figure and its baseline are loaded in turn, {self.plan.rounds} round(s), the order swapped
  every round; the row is the round whose ratio is the median, its name gives the spread.
  gRPC: the 5.x Python client (rocketmq-python-client 5.1.2), {GRPC_THREADS} threads sharing
  one producer, {self.plan.seconds:g} s, against benchmarks/bench_grpc.py's floor (grpcio,
  answers SendMessage OK, stores nothing). ACL: the C++ client, {THREADS} threads, signing
  every send to a node with aclEnable=true, against it unsigned to a node with ACL off.
  SQL92: one connection pulls every queue of a {self.plan.filtered:,}-message topic to its end
  (32 per pull, all queues at once) with the subscription SQL92 "{SQL}", against the same
  drain by tag A; both deliver the same half; the figure is messages delivered per second,
  the latency a pull's round trip. SYNC_FLUSH p50: {self.plan.sync_sends:,} sync sends of
  one connection with one in flight (`rmqctl bench produce --mode sync -c 1 --inflight 1`) to
  the SYNC_FLUSH node above, against {self.plan.sync_sends:,} write()+fdatasync() of one record
  of the size the node stored (append to a new file on the same disk, in the benchmark's
  process); lower is better there, so the target is a ceiling. That baseline has no round
  trip, which the node's figure cannot leave out; the next row holds the same sends against
  the durable Python floor (benchmarks/floor.py --durable: the same sends answered after a
  pwrite into a reserved file and its fdatasync), which pays the round trip and the durable
  write and nothing else, so it shows what the node's flush round adds. SYNC_MASTER: the C++ client,
  {THREADS} threads, to a SYNC_MASTER and to an ASYNC_MASTER, each with a slave attached
  (benchmarks/bench_ha.py's pairs). Every round's ratio:
{rounds}
"""

    def grpc(self) -> None:
        python = bench_grpc.peer_python_or_none()
        if python is None:
            say("  the 5.x Python client is not installed: bash .ci/peers.sh; row skipped")
            return
        home = self.work / "grpc"
        with start_node(home / "node", f"mappedFileSizeCommitLog={256 * MIB}") as node, \
                Server([sys.executable, str(BENCH_DIR / "bench_grpc.py"), "--floor"],
                       ("floor",), home / "floor") as floor:
            node.wait_started(("grpc",))
            rmqctl(node.addrs["namesrv"], "topic", "create", bench_grpc.TOPIC)

            def load(server: Server, endpoint: str) -> Callable[[], dict]:
                def run() -> dict:
                    figures, cpu = on_cpu(server, lambda: bench_grpc.run_load(
                        python, endpoint, GRPC_THREADS, self.plan.seconds, 128))
                    return dict(figures, cpu=cpu)
                return run
            got, ref, ratios = paired(self.plan.rounds, load(node, node.addrs["grpc"]),
                                      load(floor, floor.addrs["floor"]),
                                      lambda f: f["msgsPerSec"])
        name = f"gRPC: 5.x Python client, {GRPC_THREADS} threads sync send 128 B"
        self.row(name, ratios, got, ref, "msgsPerSec", "gRPC floor, same round",
                 cpu_us=got["cpu"], bound=(">=", 0.5, "gRPC floor"))

    def acl(self) -> None:
        if not CPP_PYTHON.exists():
            say(f"  C++ client not installed ({CPP_PYTHON}): bash .ci/peers.sh; row skipped")
            return
        home = self.work / "acl"
        bench_acl.write_rules(home / "acl")
        size = f"mappedFileSizeCommitLog={256 * MIB}"
        with start_node(home / "plain", size) as plain, \
                start_node(home / "acl", size, "aclEnable=true") as acl:
            bench_acl.create_topic(plain)
            bench_acl.create_topic(acl)
            got, ref, ratios = paired(
                self.plan.rounds,
                lambda: bench_acl.cpp_load(acl, THREADS, self.plan.seconds, home, True),
                lambda: bench_acl.cpp_load(plain, THREADS, self.plan.seconds, home, False),
                lambda f: f["msgsPerSec"])
        name = f"ACL: C++ client 1.x, {THREADS} threads sync send 128 B, signed"
        self.row(name, ratios, got, ref, "msgsPerSec",
                 f"unsigned to ACL off ({ref['cpuUsPerMsg']:.0f} us/msg), same round",
                 cpu_us=got["cpuUsPerMsg"], bound=(">=", 0.85, "unsigned"))

    def sql92(self) -> None:
        with start_node(self.work / "filter", f"mappedFileSizeCommitLog={256 * MIB}",
                        "enablePropertyFilter=true") as node:
            namesrv = node.addrs["namesrv"]
            rmqctl(namesrv, "topic", "create", FILTER_TOPIC, "-q", "8")
            asyncio.run(fill_filtered(namesrv, self.plan.filtered))
            groups = iter(range(1 << 30))  # a fresh group per drain: nothing committed

            def drain(expression: str, kind: str) -> Callable[[], dict]:
                def run() -> dict:
                    figures, cpu = on_cpu(node, lambda: asyncio.run(filtered_drain(
                        namesrv, f"FILTER_BENCH_{next(groups)}", expression, kind)),
                        settled=False)
                    if figures["messages"] != self.plan.filtered // 2:
                        raise RuntimeError(f"{kind} {expression!r} drained "
                                           f"{figures['messages']} of {self.plan.filtered // 2}")
                    return dict(figures, cpu=cpu)
                return run
            got, ref, ratios = paired(self.plan.rounds, drain(SQL, "SQL92"), drain("A", "TAG"),
                                      lambda f: f["msgsPerSec"])
        name = (f"SQL92: pull drain, {self.plan.filtered:,} x 128 B, half match "
                f"\"{SQL}\"")
        self.row(name, ratios, got, ref, "msgsPerSec", "tag A, same round", cpu_us=got["cpu"])

    def sync_latency(self, node: Server, floor: Server) -> None:
        """On the SYNC_FLUSH node of run.py's rows: its latency p50 against the disk's. The
        Python floor's p50 under the same load is noted: the client's round trip with next
        to no server and no disk, which the node's figure includes and the disk's does not."""
        disk = self.work / "fdatasync-baseline.data"
        record = [0]

        def one_by_one(addr: str) -> dict:
            settle()
            got = rmqctl(addr, "bench", "produce", "-t", "SyncLatency", "-s", "128", "-c", "1",
                         "--mode", "sync", "--inflight", "1", "-n",
                         str(self.plan.sync_sends))["produce"]
            return dict(got, p50Ms=got["latencyMs"]["p50"], p99Ms=got["latencyMs"]["p99"])

        def sends() -> dict:
            before = bench_ha.max_phy(node)
            got = one_by_one(node.addrs["namesrv"])
            record[0] = (bench_ha.max_phy(node) - before) // got["messages"]
            return got

        sends()  # the topic, its route and a first record size before the rounds
        round_trip = one_by_one(floor.addrs["floor"])
        self.notes.append(f"SYNC_FLUSH p50: the same sends to the Python floor (round trip, no "
                          f"disk): p50 {round_trip['p50Ms']:.2f} ms")
        got, ref, ratios = paired(self.plan.rounds, sends,
                                  lambda: write_fdatasync(disk, record[0], self.plan.sync_sends),
                                  lambda f: f["p50Ms"])
        overwrite = bench_fsync.durable_overwrites(self.work, record[0], self.plan.sync_sends)
        self.notes.append(f"SYNC_FLUSH p50: the node's own durable write of such a record (a "
                          f"store into a reserved mapping, then fdatasync; bench_fsync.py) in a "
                          f"tight loop: p50 {overwrite['p50Ms']:.2f} ms. The write+fdatasync "
                          f"baseline appends, and each of its fdatasyncs also commits the file's "
                          f"new size to the journal")
        name = (f"SYNC_FLUSH p50, 1 conn, 1 in flight, 128 B ({record[0]} B records)")
        self.row(name, ratios, got, ref, "p50Ms", "write+fdatasync p50, same round",
                 bound=("<=", 1.15, "write+fdatasync"))
        # The bare write above leaves out the round trip every server pays; the durable floor
        # pays it and a durable write, nothing else: what the flush round adds shows here.
        home = self.work / "durable-floor"
        with start_floor(home, durable=True) as durable:
            one_by_one(durable.addrs["floor"])
            got, ref, ratios = paired(self.plan.rounds, sends,
                                      lambda: one_by_one(durable.addrs["floor"]),
                                      lambda f: f["p50Ms"])
        shutil.rmtree(home)  # its file reserves a CommitLog's 1 GiB
        self.row(name.replace("SYNC_FLUSH p50", "SYNC_FLUSH p50 vs durable floor"), ratios,
                 got, ref, "p50Ms", "durable Python floor p50, same round",
                 bound=("<=", 1.15, "durable floor"))

    def replication(self) -> None:
        if not CPP_PYTHON.exists():
            say(f"  C++ client not installed ({CPP_PYTHON}): bash .ci/peers.sh; row skipped")
            return
        home = self.work / "ha"
        with ExitStack() as stack:
            sync_master = bench_ha.pair(stack, home, "SYNC_MASTER")
            async_master = bench_ha.pair(stack, home, "ASYNC_MASTER")
            got, ref, ratios = paired(
                self.plan.rounds,
                lambda: bench_acl.cpp_load(sync_master, THREADS, self.plan.seconds, home, False,
                                           bench_ha.TOPIC),
                lambda: bench_acl.cpp_load(async_master, THREADS, self.plan.seconds, home,
                                           False, bench_ha.TOPIC),
                lambda f: f["msgsPerSec"])
        name = f"SYNC_MASTER: C++ client 1.x, {THREADS} threads sync send 128 B"
        self.row(name, ratios, got, ref, "msgsPerSec", "ASYNC_MASTER, same round",
                 cpu_us=got["cpuUsPerMsg"], bound=(">=", 0.6, "ASYNC_MASTER"))


def write_fdatasync(path: Path, size: int, count: int) -> dict:
    """p50/p99 of `count` appends of one `size`-byte record, each followed by fdatasync: what
    one SYNC_FLUSH send cannot go below on this disk."""
    record = b"x" * size
    settle()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    took = []
    try:
        for _ in range(count):
            began = time.perf_counter()
            os.write(fd, record)
            os.fdatasync(fd)
            took.append(time.perf_counter() - began)
    finally:
        os.close(fd)
        path.unlink()
    took.sort()
    return {"p50Ms": took[len(took) // 2] * 1e3, "p99Ms": took[len(took) * 99 // 100] * 1e3}


async def fill_filtered(namesrv: str, count: int) -> None:
    """`count` 128 B messages, alternately tagged A with k=1 and B with k=0, in batches."""
    remoting = RemotingClient()
    try:
        producer = Producer(remoting, NameServerClient(remoting, namesrv, 10.0))
        batch = [Outgoing(b"x" * 128, tags="A", props={"k": "1"}) if i % 2 == 0 else
                 Outgoing(b"x" * 128, tags="B", props={"k": "0"}) for i in range(32)]
        pending = count

        async def sender() -> None:
            nonlocal pending
            while pending > 0:
                take = min(pending, len(batch))
                pending -= take
                await producer.send_batch(FILTER_TOPIC, batch[:take])
        await asyncio.gather(*(sender() for _ in range(8)))
    finally:
        await remoting.close()


async def filtered_drain(namesrv: str, group: str, expression: str, kind: str) -> dict:
    """Every queue of the topic read once to its end by PULL_MESSAGE under one subscription,
    all queues at once on one connection; messages delivered per second, pull latency."""
    remoting = RemotingClient()
    try:
        consumer = GroupConsumer(remoting, NameServerClient(remoting, namesrv, 10.0), group,
                                 FILTER_TOPIC, expression, expression_type=kind)
        queues = await consumer.join()
        ends = {mq: (await consumer.bounds(mq))[1] for mq in queues}
        pulls: list[float] = []
        delivered = 0

        async def read(mq) -> None:
            nonlocal delivered
            offset = 0
            while offset < ends[mq]:
                began = time.perf_counter()
                got = await consumer.pull(mq, offset, 32, suspend_ms=0)
                pulls.append(time.perf_counter() - began)
                delivered += len(got.messages)
                if got.next_offset <= offset:
                    raise RuntimeError(f"pull of {mq} at {offset} answered {got.code} and "
                                       f"did not move on")
                offset = got.next_offset
        began = time.perf_counter()
        await asyncio.gather(*(read(mq) for mq in queues))
        seconds = time.perf_counter() - began
        await consumer.leave()
    finally:
        await remoting.close()
    pulls.sort()
    return {"messages": delivered, "msgsPerSec": delivered / seconds,
            "p50Ms": statistics.median(pulls) * 1e3,
            "p99Ms": pulls[len(pulls) * 99 // 100] * 1e3}

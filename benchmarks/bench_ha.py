"""Replication (issue 20) in figures, each held against a baseline measured in the same run.

    python benchmarks/bench_ha.py                 # 1 GiB catch-up, 3 rounds of 8 s sends
    python benchmarks/bench_ha.py --size 128 --seconds 4 --rounds 1    # about a minute

Catch-up: a slave that was down while its master took a backlog of `--size` MiB (written by
`rmqctl bench produce`, 16 KiB messages in batches, into 128 MiB CommitLog files) is started
again; the figure is the backlog's bytes over the time from the slave's HA service starting
(its `ha.started` line) to its CommitLog reaching the master's end. The slave held one
message before it went down, so it asks from its own offset (an empty slave would start at
the master's last file, as in Java).
Baseline: the same bytes, read from the master's CommitLog files and sent over a loopback TCP
socket by `socket.sendfile` to a receiver thread that writes them to a file on the same disk,
as the slave does (no fsync on either side). Target: catch-up >= 0.5x the raw copy.

Sends: the C++ client 1.x (PyPI rocketmq==0.4.4, benchmarks/cpp_load.py) sync-sending 128 B
from 16 threads to a SYNC_MASTER with its slave, and to an ASYNC_MASTER with its slave, in
turn, `--rounds` times; the figure is the median ratio of the rounds (a send counts only when
it answers SEND_OK). Target: SYNC_MASTER >= 0.6x ASYNC_MASTER.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from bench_acl import cpp_load
from servers import CPP_PYTHON, Server, start_node

from rmqnode.launch import rmqnode_argv
from rmqnode.net import fastjson
from rmqnode.net.client import RemotingClient
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode
from rmqnode.storage.reader import commitlog_files

MIB = 1 << 20
FILE_SIZE = 128 * MIB
TOPIC = "HaBench"


def call(addr: str, code: int, fields: dict[str, object] | None = None) -> RemotingCommand:
    async def once() -> RemotingCommand:
        client = RemotingClient()
        try:
            return await client.invoke(addr, RemotingCommand.request(code, fields, b"x"), 10.0)
        finally:
            await client.close()
    return asyncio.run(once())


def max_phy(node: Server) -> int:
    resp = call(node.addrs["broker"], RequestCode.GET_BROKER_RUNTIME_INFO)
    return int(fastjson.loads(resp.body)["table"]["commitLogMaxOffset"])


def start_slave(home: Path, namesrv: str, *defines: str) -> Server:
    """A SLAVE of the master registered at `namesrv` (it learns the master's HA address from
    the register answer)."""
    argv = rmqnode_argv("--role", "broker", "--listen-port", "0", "--grpc-port", "-1",
                        "-n", namesrv, "--store", str(home / "store"), "-D", "brokerRole=SLAVE",
                        "-D", "brokerId=1")
    for define in defines:
        argv += ["-D", define]
    return Server(argv, ("broker",), home)


def fill(namesrv: str, size: int) -> None:
    count = max(1, size // (16 * 1024))
    done = subprocess.run([sys.executable, "-m", "rmqctl.cli", "-n", namesrv, "bench",
                           "produce", "-t", TOPIC, "-n", str(count), "-s", "16384", "--batch",
                           "16", "-c", "4", "--procs", "2"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"backlog: {done.stdout}{done.stderr}")


def wait_for(what: str, ready, seconds: float = 600.0, poll: float = 0.05) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {seconds:.0f}s")
        time.sleep(poll)


def raw_copy(store: Path, start: int, end: int, dest: Path) -> float:
    """Seconds to move CommitLog bytes [start, end) of `store` over a loopback socket into a
    file under `dest`."""
    files = commitlog_files(store / "commitlog")
    listener = socket.create_server(("127.0.0.1", 0))
    total = end - start
    received = [0]

    def receive() -> None:
        conn, _ = listener.accept()
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        with conn, open(dest / "copy", "wb") as out:
            while received[0] < total:
                n = conn.recv_into(view)
                if not n:
                    break
                out.write(view[:n])
                received[0] += n

    began = time.perf_counter()
    receiver = threading.Thread(target=receive)
    receiver.start()
    with socket.create_connection(listener.getsockname()) as sock:
        for path in files:
            first = int(path.name)
            lo, hi = max(start, first), min(end, first + path.stat().st_size)
            if lo < hi:
                with path.open("rb") as f:
                    sock.sendfile(f, lo - first, hi - lo)
    receiver.join()
    seconds = time.perf_counter() - began
    listener.close()
    if received[0] != total:
        raise RuntimeError(f"raw copy moved {received[0]} of {total} bytes")
    return seconds


def catch_up(work: Path, size: int) -> tuple[float, float, int]:
    """(catch-up MiB/s, raw copy MiB/s, bytes)."""
    sizing = f"mappedFileSizeCommitLog={FILE_SIZE}"
    with start_node(work / "master", sizing, "brokerRole=ASYNC_MASTER") as master:
        namesrv = master.addrs["namesrv"]
        fill(namesrv, 16 * 1024)  # one small batch: the slave will hold something
        with start_slave(work / "slave", namesrv, sizing) as slave:
            wait_for("the slave's first copy", lambda: max_phy(slave) == max_phy(master))
        start = max_phy(master)
        fill(namesrv, size)
        end = max_phy(master)
        raw = raw_copy(work / "master" / "store", start, end, work)
        (work / "copy").unlink()
        slave = start_slave(work / "slave", namesrv, sizing)
        with slave:
            wait_for("the slave's catch-up", lambda: max_phy(slave) == end)
            # from the slave's HA service starting (its `ha.started` line), not its spawn:
            # the interpreter's start is no part of replication
            took = time.perf_counter() - slave.spawned - slave.started_at["ha"]
    moved = end - start
    return moved / MIB / took, moved / MIB / raw, moved


def pair(stack: ExitStack, work: Path, role: str) -> Server:
    """A master of `role` with the topic, and its slave attached; the master."""
    sizing = f"mappedFileSizeCommitLog={256 * MIB}"
    master = stack.enter_context(start_node(work / role / "master", sizing, f"brokerRole={role}"))
    slave = stack.enter_context(start_slave(work / role / "slave", master.addrs["namesrv"],
                                            sizing))
    broker = master.addrs["broker"]
    call(broker, RequestCode.UPDATE_AND_CREATE_TOPIC, {
        "topic": TOPIC, "defaultTopic": "TBW102", "readQueueNums": 8, "writeQueueNums": 8,
        "perm": 6, "topicFilterType": "SINGLE_TAG", "order": False})
    # Attached once a message reaches the slave (a SYNC_MASTER answers SLAVE_NOT_AVAILABLE
    # before: the answer does not matter here).
    call(broker, RequestCode.SEND_MESSAGE_V2, {"a": "PG", "b": TOPIC, "c": "TBW102", "d": 8,
                                               "e": 0, "f": 0, "g": 0, "h": 0, "i": ""})
    wait_for("the slave attached", lambda: max_phy(slave) == max_phy(master), seconds=30)
    return master


def sends(work: Path, seconds: float, rounds: int, threads: int) -> list[tuple[dict, dict]]:
    with ExitStack() as stack:
        sync_master = pair(stack, work, "SYNC_MASTER")
        async_master = pair(stack, work, "ASYNC_MASTER")
        results = []
        for index in range(rounds):
            sync = cpp_load(sync_master, threads, seconds, work, False, TOPIC)
            asyn = cpp_load(async_master, threads, seconds, work, False, TOPIC)
            results.append((sync, asyn))
            print(f"round {index + 1}: SYNC_MASTER {sync['msgsPerSec']:,.0f} msgs/s "
                  f"(p50 {sync['p50Ms']} ms, {sync['errors']} errors {sync['lastError']!r}), "
                  f"ASYNC_MASTER {asyn['msgsPerSec']:,.0f} msgs/s (p50 {asyn['p50Ms']} ms, "
                  f"{asyn['errors']} errors): "
                  f"{sync['msgsPerSec'] / asyn['msgsPerSec']:.2f}x", flush=True)
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="backlog MiB (default 1024)")
    parser.add_argument("--seconds", type=float, default=8.0, help="per send run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    if not CPP_PYTHON.exists():
        sys.exit(f"the C++ client is not installed ({CPP_PYTHON}): bash .ci/peers.sh")
    with tempfile.TemporaryDirectory(prefix="bench-ha-") as tmp:
        work = Path(tmp)
        ha, raw, moved = catch_up(work / "catch-up", args.size * MIB)
        print(f"catch-up of {moved / MIB:,.0f} MiB: {ha:,.1f} MiB/s, raw loopback copy "
              f"{raw:,.1f} MiB/s: {ha / raw:.2f}x; target >= 0.5x: "
              f"{'PASS' if ha / raw >= 0.5 else 'FAIL'}", flush=True)
        rounds = sends(work, args.seconds, args.rounds, args.threads)
    ratio = statistics.median(s["msgsPerSec"] / a["msgsPerSec"] for s, a in rounds)
    print(f"median: SYNC_MASTER/ASYNC_MASTER {ratio:.2f}x at {args.threads} threads; "
          f"target >= 0.6x: {'PASS' if ratio >= 0.6 else 'FAIL'}")


if __name__ == "__main__":
    os.environ.pop("NAMESRV_ADDR", None)
    main()

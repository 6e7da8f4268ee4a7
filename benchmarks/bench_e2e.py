"""End-to-end produce and consume against a running rmqnode, next to a floor measured in the
same run.

    python benchmarks/bench_e2e.py [--seconds 5] [--connections 16] [--inflight 4] [--size 128]

The floor is a minimal asyncio server speaking the same framing that answers every send at
once without storing anything: what Python on this machine can do for the protocol alone.
A separate rmqnode process (namesrv + broker, temporary store, ASYNC_FLUSH unless --sync)
is then loaded the same way with SEND_MESSAGE_V2, and the topic is drained with PULL_MESSAGE.
Figures: msgs/s, MB/s, latency p50/p90/p99/p99.9/max, and the ratio to the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time

from rmqnode.net.client import RemotingClient
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode
from rmqnode.net.connection import Dispatcher
from rmqnode.net.server import RemotingServer


def send_request(topic: str, body: bytes) -> RemotingCommand:
    return RemotingCommand.request(RequestCode.SEND_MESSAGE_V2, {
        "a": "BenchPG", "b": topic, "c": "TBW102", "d": 8, "e": -1, "f": 0,
        "g": int(time.time() * 1000), "h": 0, "i": "WAIT\x01true"}, body)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def produce(addr: str, topic: str, size: int, seconds: float, connections: int,
                  inflight: int) -> tuple[int, list[float], float]:
    clients = [RemotingClient() for _ in range(connections)]
    body = b"x" * size
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    errors = 0

    async def worker(client: RemotingClient) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            resp = await client.invoke(addr, send_request(topic, body), timeout=10)
            if resp.code != 0:
                errors += 1
                continue
            latencies.append(time.perf_counter() - start)

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in clients for _ in range(inflight)))
    elapsed = time.perf_counter() - started
    for c in clients:
        await c.close()
    if errors:
        print(f"  ({errors} sends failed)", file=sys.stderr)
    return len(latencies), sorted(latencies), elapsed


async def drain(addr: str, topic: str, queues: int) -> tuple[int, float]:
    client = RemotingClient()
    total = 0
    started = time.perf_counter()

    async def one(queue_id: int) -> int:
        offset, count = 0, 0
        while True:
            resp = await client.invoke(addr, RemotingCommand.request(RequestCode.PULL_MESSAGE, {
                "consumerGroup": "BenchCG", "topic": topic, "queueId": queue_id,
                "queueOffset": offset, "maxMsgNums": 32, "sysFlag": 4, "commitOffset": 0,
                "suspendTimeoutMillis": 0, "subscription": "*", "subVersion": 0}), timeout=10)
            if resp.code != 0:
                return count
            offset = int(resp.field("nextBeginOffset"))
            count += _count_records(resp.body)

    for n in await asyncio.gather(*(one(q) for q in range(queues))):
        total += n
    elapsed = time.perf_counter() - started
    await client.close()
    return total, elapsed


def _count_records(body: bytes) -> int:
    pos, n = 0, 0
    while pos + 4 <= len(body):
        pos += int.from_bytes(body[pos:pos + 4], "big")
        n += 1
    return n


async def floor(args) -> tuple[int, list[float], float]:
    dispatcher = Dispatcher()
    dispatcher.register(RequestCode.SEND_MESSAGE_V2, lambda cmd, conn: cmd.response(
        fields={"msgId": "0" * 32, "queueId": 0, "queueOffset": 0}))
    server = RemotingServer(dispatcher, "127.0.0.1", 0)
    await server.start()
    try:
        return await produce(f"127.0.0.1:{server.port}", "Floor", args.size, args.seconds,
                             args.connections, args.inflight)
    finally:
        await server.stop()


def start_node(store: str, sync: bool) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "rmqnode.cli", "--namesrv-port", "0", "--listen-port", "0",
           "--store", store, "-D", f"flushDiskType={'SYNC_FLUSH' if sync else 'ASYNC_FLUSH'}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, RMQNODE_HOME=store))
    assert proc.stdout is not None
    for line in proc.stdout:
        m = re.search(r"broker\.started addr=(\S+)", line)
        if m:
            return proc, m.group(1)
    raise RuntimeError("rmqnode did not start")


def report(name: str, count: int, latencies: list[float], elapsed: float, size: int,
           base: float | None) -> float:
    rate = count / elapsed if elapsed else 0.0
    ms = [v * 1000 for v in latencies]
    ratio = f"{rate / base:.2f}x" if base else "1.00x"
    print(f"{name:26} {rate:10,.0f} {rate * size / 1e6:7.1f} "
          f"{percentile(ms, .5):7.2f} {percentile(ms, .9):7.2f} {percentile(ms, .99):7.2f} "
          f"{percentile(ms, .999):7.2f} {(ms[-1] if ms else 0):7.2f} {ratio:>8}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--inflight", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--sync", action="store_true", help="SYNC_FLUSH on the node")
    args = parser.parse_args()
    print(f"{args.connections} connections x {args.inflight} in flight, {args.size} B bodies, "
          f"{args.seconds:g} s, {'SYNC' if args.sync else 'ASYNC'}_FLUSH")
    print(f"{'case':26} {'msgs/s':>10} {'MB/s':>7} {'p50 ms':>7} {'p90':>7} {'p99':>7} "
          f"{'p99.9':>7} {'max':>7} {'vs floor':>8}")
    count, lat, elapsed = asyncio.run(floor(args))
    base = report("floor (ack only, no store)", count, lat, elapsed, args.size, None)
    with tempfile.TemporaryDirectory(prefix="rmq-e2e-") as store:
        proc, addr = start_node(store, args.sync)
        try:
            count, lat, elapsed = asyncio.run(produce(addr, "BenchE2E", args.size, args.seconds,
                                                      args.connections, args.inflight))
            produced = report("rmqnode produce", count, lat, elapsed, args.size, base)
            drained, elapsed = asyncio.run(drain(addr, "BenchE2E", 8))
            rate = drained / elapsed if elapsed else 0.0
            print(f"{'rmqnode consume (drain)':26} {rate:10,.0f} {rate * args.size / 1e6:7.1f}"
                  f"{'':40} {rate / produced if produced else 0:.2f}x produce "
                  f"({drained} of {count} messages)")
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()

"""The broker's hot paths in CPU time per message, next to the protocol floor, in one process.

    python benchmarks/bench_broker.py [--messages 50000] [--size 128]

A real BrokerController with a real store in a temporary directory is fed pre-encoded
frames through its connection code exactly as bytes arrive from a socket, 32 pipelined
requests per read; answers go to a transport that only counts them. No sockets and no load
generator compete for the CPU, so the figure is the broker's own cost, stable from run to run
on a shared 2-core machine (end-to-end rates there are bound by the load generator).

The floor is the same harness with a handler that answers every send at once without
storing it: decoding the request and encoding the answer, the least any Python broker pays.
Rows: single sends (async and sync flush), batches of 32, and pulls of 32 messages: of
everything (`*`), by tag (the consume queue's tag codes) and by a SQL92 expression (each
message's properties read and evaluated); both filters select every message, so the rows
differ by the cost of filtering alone.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import tempfile
import time

from rmqnode.broker.controller import BrokerController
from rmqnode.config import BrokerConfig
from rmqnode.message import BatchEntry, UniqueIdGenerator, encode_batch, encode_properties
from rmqnode.net.codec import RemotingCommand, encode
from rmqnode.net.codes import RequestCode
from rmqnode.net.connection import Connection, Dispatcher

PIPELINE = 32
_LEN = struct.Struct(">i")


class CountingTransport:
    """Stands in for the socket: counts the frames written to it, and wakes whoever waits for
    a count (a waiter that polled instead would bill its spinning to the broker)."""

    def __init__(self) -> None:
        self.frames = 0
        self._wanted = 0
        self._reached: asyncio.Event | None = None

    def write(self, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            pos += 4 + _LEN.unpack_from(data, pos)[0]
            self.frames += 1
        if self._reached is not None and self.frames >= self._wanted:
            self._reached.set()

    async def reach(self, frames: int) -> None:
        if self.frames >= frames:
            return
        self._wanted, self._reached = frames, asyncio.Event()
        await self._reached.wait()
        self._reached = None

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default=None):
        return ("127.0.0.1", 50000) if name == "peername" else default

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None: ...


_IDS = UniqueIdGenerator()


def properties() -> dict[str, str]:
    """What a Java producer sends: a tag, the unique id (indexed as a key), WAIT."""
    return {"TAGS": "TagA", "UNIQ_KEY": _IDS.next(), "WAIT": "true"}


def send_frame(topic: str, body: bytes, batch: int = 1) -> bytes:
    text = encode_properties(properties())
    fields = {"a": "BenchPG", "b": topic, "c": "TBW102", "d": 8, "e": -1, "f": 0,
              "g": int(time.time() * 1000), "h": 0, "i": text}
    if batch > 1:
        fields["m"] = "true"
        body = encode_batch([BatchEntry(body, properties(), 0) for _ in range(batch)])
        code = RequestCode.SEND_BATCH_MESSAGE
    else:
        code = RequestCode.SEND_MESSAGE_V2
    return encode(RemotingCommand.request(code, fields, body))


PULLS = {"pull": ("*", "TAG"), "pull_tag": ("TagA || TagB", "TAG"),
         "pull_sql": ("TAGS = 'TagA' AND UNIQ_KEY IS NOT NULL", "SQL92")}


def pull_frame(topic: str, queue_id: int, offset: int, expression: str, kind: str) -> bytes:
    return encode(RemotingCommand.request(RequestCode.PULL_MESSAGE, {
        "consumerGroup": "BenchCG", "topic": topic, "queueId": queue_id, "queueOffset": offset,
        "maxMsgNums": 32, "sysFlag": 4, "commitOffset": 0, "suspendTimeoutMillis": 0,
        "subscription": expression, "subVersion": 0, "expressionType": kind}))


async def drive(conn: Connection, transport: CountingTransport, frames: list[bytes]) -> float:
    """Feed the frames PIPELINE at a time, wait for every answer; CPU seconds spent."""
    start_frames = transport.frames
    began = time.process_time()
    for i in range(0, len(frames), PIPELINE):
        conn.data_received(b"".join(frames[i:i + PIPELINE]))
        await asyncio.sleep(0)
        # at most two bursts in flight, as a busy client keeps
        await transport.reach(start_frames + min(i + PIPELINE, len(frames)) - PIPELINE)
    await transport.reach(start_frames + len(frames))
    return time.process_time() - began


def connect(dispatcher: Dispatcher) -> tuple[Connection, CountingTransport]:
    conn, transport = Connection(dispatcher), CountingTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


async def floor_cost(n: int, size: int) -> float:
    dispatcher = Dispatcher()
    dispatcher.register(RequestCode.SEND_MESSAGE_V2, lambda cmd, conn: cmd.response(
        fields={"msgId": "0" * 32, "queueId": 0, "queueOffset": 0,
                "MSG_REGION": "DefaultRegion", "TRACE_ON": "true"}))
    conn, transport = connect(dispatcher)
    frames = [send_frame("Floor", b"x" * size) for _ in range(n)]
    return await drive(conn, transport, frames) / n


async def broker_costs(n: int, size: int, flush: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="rmq-bench-broker-") as root:
        # No gRPC port: the rows do not use it, and a busy 8081 would fail the start.
        config = BrokerConfig(storePathRootDir=root, namesrvAddr="", listenPort=0,
                              grpcServerPort=-1, flushDiskType=flush,
                              mappedFileSizeCommitLog=1 << 30, enablePropertyFilter=True)
        broker = BrokerController(config)
        await broker.start()
        try:
            conn, transport = connect(broker.dispatcher)
            body = b"x" * size
            sends = [send_frame("BenchT", body) for _ in range(n)]
            out = {"send": await drive(conn, transport, sends) / n}
            batches = [send_frame("BenchB", body, 32) for _ in range(max(n // 32, 1))]
            out["batch32"] = await drive(conn, transport, batches) / (len(batches) * 32)
            if flush == "ASYNC_FLUSH":
                await asyncio.sleep(0.2)  # let the reput step dispatch everything
                queues = broker.topics.table["BenchT"].readQueueNums
                pulled = sum(broker.store.max_offset("BenchT", q) for q in range(queues))
                for row, (expression, kind) in PULLS.items():
                    frames = [pull_frame("BenchT", q, off, expression, kind)
                              for q in range(queues)
                              for off in range(0, broker.store.max_offset("BenchT", q), 32)]
                    out[row] = await drive(conn, transport, frames) / pulled
            return out
        finally:
            await broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    n, size = args.messages, args.size
    floor = asyncio.run(floor_cost(n, size))
    costs = asyncio.run(broker_costs(n, size, "ASYNC_FLUSH"))
    sync = asyncio.run(broker_costs(n, size, "SYNC_FLUSH"))
    print(f"{n} messages of {size} B, {PIPELINE} requests per read; CPU per message")
    print(f"{'case':34} {'us/msg':>8} {'msgs/s/core':>12} {'floor/case':>10}")
    rows = [("floor: decode + ack, no store", floor),
            ("send, ASYNC_FLUSH", costs["send"]),
            ("send, SYNC_FLUSH (group commit)", sync["send"]),
            ("batch of 32, ASYNC_FLUSH", costs["batch32"]),
            ("batch of 32, SYNC_FLUSH", sync["batch32"]),
            ("pull 32 per request", costs["pull"]),
            ("pull 32, tag filter", costs["pull_tag"]),
            ("pull 32, SQL92 filter", costs["pull_sql"])]
    for name, cost in rows:
        print(f"{name:34} {cost * 1e6:8.1f} {1 / cost:12,.0f} {floor / cost:10.2f}")


if __name__ == "__main__":
    main()

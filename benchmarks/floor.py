"""The Python floor: the least a Python server speaking RocketMQ's remoting must do per send.

    python benchmarks/floor.py [--dir DIR] [--port 0]     # prints: floor.started addr=H:P

One asyncio process, on the project's own transport and codec, plays name server and broker
just enough for producers (rmqctl bench, the C++ client) to load it as they load rmqnode:
routes for any topic, topic creation, heartbeats. Each send's message bodies are appended to
one file with a single write() and acknowledged at once: no CommitLog record, no index, no
consume queue, no flush. A node's rate next to the floor's, loaded the same way in the same
run, says how much of the time is the node's own work and how much Python and the protocol.
With --durable the bodies go into a file whose blocks are reserved up front (as the node's
CommitLog files are), each write fdatasync'd before its answer: the least a SYNC_FLUSH
server does for one sender, round trip and durable write together. With --group-commit the
same file takes every send of a loop iteration, and one fdatasync on the loop's thread at
the iteration's end covers them all before their answers go out, one write per connection:
the least a SYNC_FLUSH server with group commit does under many senders (the node's rounds
start at the same point and wait for the disk the same way).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import tempfile
import time

from rmqnode.cli import event_loop_runner
from rmqnode.message import decode_batch
from rmqnode.namesrv.processor import V4_9_4
from rmqnode.namesrv.routes import RouteInfoManager
from rmqnode.net import fastjson
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode, ResponseCode
from rmqnode.net.connection import Connection, Dispatcher, answers_together
from rmqnode.net.server import RemotingServer

QUEUES = 8
BROKER_NAME = "floor"
CLUSTER = "FloorCluster"
NO_MSG_ID = "0" * 32
RESERVED = 1 << 30  # --durable: the size of a CommitLog file


class Floor:
    def __init__(self, data_path: str, durable: bool = False, group_commit: bool = False
                 ) -> None:
        self.reserved = durable or group_commit  # pwrites into a reserved file, fdatasync'd
        self.group_commit = group_commit  # a loop iteration's sends at once, else each
        self.waiting: list[tuple[Connection, RemotingCommand, RemotingCommand]] = []
        self.written = 0
        if self.reserved:
            self.fd = os.open(data_path, os.O_RDWR | os.O_CREAT, 0o644)
            os.posix_fallocate(self.fd, 0, RESERVED)
        else:
            self.fd = os.open(data_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.routes = RouteInfoManager()
        self.addr = ""
        self.version = 0
        self.offsets: dict[tuple[str, int], int] = {}
        self.dispatcher = Dispatcher()
        self.dispatcher.update({
            RequestCode.GET_ROUTEINFO_BY_TOPIC: self.route,
            RequestCode.GET_BROKER_CLUSTER_INFO: lambda cmd, conn: cmd.response(
                body=fastjson.dumpb(self.routes.cluster_info())),
            RequestCode.UPDATE_AND_CREATE_TOPIC: self.create_topic,
            RequestCode.HEART_BEAT: lambda cmd, conn: cmd.response(),
            RequestCode.UNREGISTER_CLIENT: lambda cmd, conn: cmd.response(),
            RequestCode.SEND_MESSAGE: self.send,
            RequestCode.SEND_MESSAGE_V2: self.send,
            RequestCode.SEND_BATCH_MESSAGE: self.send,
        })

    def register(self, topic: str, queues: int) -> None:
        """Into the same RouteInfoManager the name server uses, so routes are written alike
        (unquoted broker ids for old clients such as the C++ 1.x one)."""
        self.version += 1
        self.routes.register_broker(
            CLUSTER, self.addr, BROKER_NAME, 0, "", {"counter": self.version},
            {topic: {"readQueueNums": queues, "writeQueueNums": queues, "perm": 6}},
            None, time.monotonic())

    def route(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        topic = cmd.require("topic")
        if topic not in self.routes.topic_queue_table:
            self.register(topic, QUEUES)  # every topic exists, as with autoCreateTopicEnable
        standard = cmd.version >= V4_9_4 or cmd.bool_field("acceptStandardJsonOnly")
        route = self.routes.topic_route(topic, quoted_ids=standard)
        return cmd.response(body=fastjson.dumpb(route))

    def create_topic(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        self.register(cmd.require("topic"), cmd.int_field("writeQueueNums", QUEUES))
        return cmd.response()

    def send(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand | None:
        topic = cmd.field("b") or cmd.require("topic")
        queue_id = int(cmd.field("e") or cmd.field("queueId") or 0)
        batch = cmd.code == RequestCode.SEND_BATCH_MESSAGE or \
            (cmd.field("m") or cmd.field("batch") or "").lower() in ("true", "1")
        bodies = [e.body for e in decode_batch(cmd.body)] if batch else [cmd.body]
        data = b"".join(bodies)
        if self.reserved:
            if self.written + len(data) > RESERVED:
                self.written = 0
            os.pwrite(self.fd, data, self.written)
            self.written += len(data)
            if not self.group_commit:
                os.fdatasync(self.fd)
        else:
            os.write(self.fd, data)
        key = (topic, queue_id)
        offset = self.offsets.get(key, 0)
        self.offsets[key] = offset + len(bodies)
        answer = cmd.response(ResponseCode.SUCCESS, fields={
            "msgId": ",".join([NO_MSG_ID] * len(bodies)), "queueId": queue_id,
            "queueOffset": offset})
        if not self.group_commit:
            return answer
        if not self.waiting:
            asyncio.get_running_loop().call_soon(self.commit)
        self.waiting.append((conn, cmd, answer))
        return None

    def commit(self) -> None:
        """--group-commit: one fdatasync for the sends of this loop iteration, then their
        answers."""
        os.fdatasync(self.fd)
        waiting, self.waiting = self.waiting, []
        with answers_together:
            for conn, cmd, answer in waiting:
                conn.reply(cmd, answer)


async def serve(data_dir: str, port: int, durable: bool, group_commit: bool) -> None:
    floor = Floor(os.path.join(data_dir, "floor.data"), durable, group_commit)
    server = RemotingServer(floor.dispatcher, "127.0.0.1", port)
    await server.start()
    floor.addr = f"127.0.0.1:{server.port}"
    print(f"floor.started addr={floor.addr}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
    os.close(floor.fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="Where the data file goes (default: a temporary dir).")
    parser.add_argument("--port", type=int, default=0)
    durability = parser.add_mutually_exclusive_group()
    durability.add_argument("--durable", action="store_true",
                            help="fdatasync each append before answering it")
    durability.add_argument("--group-commit", action="store_true",
                            help="one fdatasync per loop iteration for all its appends")
    args = parser.parse_args()
    run = event_loop_runner()  # the node's event loop (uvloop when installed): same footing
    if args.dir:
        run(serve(args.dir, args.port, args.durable, args.group_commit))
        return
    with tempfile.TemporaryDirectory(prefix="rmq-floor-") as data_dir:
        run(serve(data_dir, args.port, args.durable, args.group_commit))


if __name__ == "__main__":
    main()

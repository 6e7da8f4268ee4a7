"""Sync sends of the official RocketMQ 5.x Python client (PyPI rocketmq-python-client 5.1.2)
against rmqnode's gRPC port, next to the same client against a floor: a minimal grpcio server
that only answers QueryRoute, the Telemetry settings handshake, Heartbeat and SendMessage (OK,
nothing stored), written with rmqnode's own generated stubs (rmqnode/grpc/v2). Both are loaded
alternately in the same run, from 1 and 8 threads sharing one producer; the ratio to the floor
is the figure (target >= 0.5x).

    python benchmarks/bench_grpc.py [--seconds 8] [--rounds 2] [--size 128]

Three modes in one file (the first two are how the driver runs its children):
    bench_grpc.py --floor                        the floor server; prints `floor.started addr=...`
    <grpc5 python> bench_grpc.py --load EP TOPIC THREADS SECONDS SIZE
                                                 the client load; prints one JSON object. It runs
                                                 under the peer's interpreter (.ci/peers.sh), so
                                                 it imports nothing from the project.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOPIC = "BenchGrpc"


# -- the load (the client's interpreter) -----------------------------------------------------

def load(endpoint: str, topic: str, threads: int, seconds: float, size: int) -> None:
    from client_load import drive  # beside this script, standard library only
    from rocketmq import ClientConfiguration, Credentials, Message, Producer

    producer = Producer(ClientConfiguration(endpoint, Credentials(), request_timeout=5),
                        topics=[topic])
    producer.startup()

    def message() -> Message:
        m = Message()
        m.topic = topic
        m.body = b"x" * size
        return m

    for _ in range(20):  # channel, route and settings before the clock starts
        producer.send(message())
    # A 5.x Message is single use (it gets its id on send): a new one for every send.
    print(json.dumps(drive(lambda _index: lambda: producer.send(message()), threads, seconds)),
          flush=True)
    try:
        producer.shutdown()
    finally:
        os._exit(0)  # the client's scheduler threads would keep the interpreter alive


# -- the floor (the project's interpreter) ---------------------------------------------------

def floor() -> None:
    import asyncio

    import grpc

    from rmqnode.grpc.v2 import definition_pb2 as d
    from rmqnode.grpc.v2 import service_pb2 as s
    from rmqnode.grpc.v2 import service_pb2_grpc as g

    def ok() -> d.Status:
        return d.Status(code=d.OK, message="OK")

    class Floor(g.MessagingServiceServicer):
        offset = 0

        async def QueryRoute(self, request, context):
            broker = d.Broker(name="floor", id=0, endpoints=request.endpoints)
            queues = [d.MessageQueue(topic=request.topic, id=i, permission=d.READ_WRITE,
                                     broker=broker, accept_message_types=[d.NORMAL])
                      for i in range(8)]
            return s.QueryRouteResponse(status=ok(), message_queues=queues)

        async def Telemetry(self, request_iterator, context):
            async for command in request_iterator:
                if command.HasField("settings"):
                    settings = d.Settings()
                    settings.CopyFrom(command.settings)
                    settings.backoff_policy.max_attempts = 3
                    backoff = settings.backoff_policy.exponential_backoff
                    backoff.initial.FromMilliseconds(10)
                    backoff.max.FromMilliseconds(1000)
                    backoff.multiplier = 2
                    if settings.HasField("publishing"):
                        settings.publishing.max_body_size = 4 << 20
                        settings.publishing.validate_message_type = True
                    settings.ClearField("metric")
                    yield s.TelemetryCommand(status=ok(), settings=settings)

        async def Heartbeat(self, request, context):
            return s.HeartbeatResponse(status=ok())

        async def SendMessage(self, request, context):
            entries = []
            for m in request.messages:
                Floor.offset += 1
                entries.append(s.SendResultEntry(status=ok(), offset=Floor.offset,
                                                 message_id=m.system_properties.message_id))
            return s.SendMessageResponse(status=ok(), entries=entries)

        async def NotifyClientTermination(self, request, context):
            return s.NotifyClientTerminationResponse(status=ok())

    async def serve() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0),
                                          ("grpc.max_receive_message_length", 130 << 20)])
        g.add_MessagingServiceServicer_to_server(Floor(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(f"floor.started addr=127.0.0.1:{port}", flush=True)
        await server.wait_for_termination()

    asyncio.run(serve())


# -- the driver ------------------------------------------------------------------------------

def peer_python_or_none() -> Path | None:
    """The 5.x client's interpreter, as .ci/peers.sh installs it; None when it is not there."""
    peers = Path(os.environ.get("RMQ_PEERS_DIR") or Path.home() / ".cache" / "rmqnode-peers")
    python = peers / "grpc5" / "bin" / "python"
    return python if python.exists() else None


def peer_python() -> Path:
    python = peer_python_or_none()
    if python is None:
        sys.exit("bench_grpc: the 5.x Python client is missing: install the peers with "
                 "`bash .ci/peers.sh`")
    return python


def run_load(python: Path, endpoint: str, threads: int, seconds: float, size: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    with tempfile.TemporaryDirectory(prefix="bench-grpc5-") as home:  # the client's logs
        env["HOME"] = home
        out = subprocess.run([str(python), __file__, "--load", endpoint, TOPIC, str(threads),
                              str(seconds), str(size)], capture_output=True, text=True,
                             env=env, timeout=seconds + 90)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"load exited {out.returncode}:\n{out.stdout}\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--threads", default="1,8")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from rmqnode.launch import ServerProcess, rmqnode_argv

    python = peer_python()
    work = Path(tempfile.mkdtemp(prefix="bench-grpc-"))
    (work / "node").mkdir()
    (work / "floor").mkdir()
    node = ServerProcess(rmqnode_argv("--namesrv-port", "0", "--listen-port", "0",
                                      "--grpc-port", "0", "-D",
                                      "mappedFileSizeCommitLog=268435456"),
                         work / "node", {"NAMESRV_ADDR": None})
    node.wait_started(("namesrv", "broker", "grpc"), timeout=30)
    floor_proc = ServerProcess([sys.executable, __file__, "--floor"], work / "floor")
    floor_proc.wait_started(("floor",), timeout=30)
    try:
        made = subprocess.run([sys.executable, "-m", "rmqctl.cli", "-n", node.addrs["namesrv"],
                               "topic", "create", TOPIC], capture_output=True, text=True,
                              timeout=30, cwd=REPO)
        if made.returncode != 0:
            raise RuntimeError(f"rmqctl topic create: {made.stdout}{made.stderr}")
        targets = {"rmqnode": node, "floor": floor_proc}
        results: dict[tuple[str, int], list[dict]] = {}
        for round_no in range(args.rounds):
            for threads in (int(t) for t in args.threads.split(",")):
                for name in (("rmqnode", "floor") if round_no % 2 == 0 else ("floor", "rmqnode")):
                    server = targets[name]
                    cpu = server.cpu_seconds()
                    r = run_load(python, server.addrs["grpc" if name == "rmqnode" else "floor"],
                                 threads, args.seconds, args.size)
                    r["cpuUsPerMsg"] = round((server.cpu_seconds() - cpu) * 1e6
                                             / max(1, r["messages"]), 1)
                    r["round"] = round_no
                    results.setdefault((name, threads), []).append(r)
                    print(f"round {round_no} {name:8} {threads:2} threads: "
                          f"{r['msgsPerSec']:9,.1f} msgs/s  p50 {r['p50Ms']:.2f} ms  "
                          f"p99 {r['p99Ms']:.2f} ms  server CPU {r['cpuUsPerMsg']:.0f} us/msg  "
                          f"errors {r['errors']} {r['lastError']}", flush=True)
        print()
        print(f"| 5.x Python client, sync send {args.size} B | rmqnode | floor | ratio | target |")
        print("|---|---|---|---|---|")
        for threads in (int(t) for t in args.threads.split(",")):
            mine = results[("rmqnode", threads)]
            base = results[("floor", threads)]
            ratios = [a["msgsPerSec"] / b["msgsPerSec"] for a, b in zip(mine, base)
                      if b["msgsPerSec"]]
            ratio = statistics.median(ratios) if ratios else 0.0
            rate = statistics.median(r["msgsPerSec"] for r in mine)
            floor_rate = statistics.median(r["msgsPerSec"] for r in base)
            p50 = statistics.median(r["p50Ms"] for r in mine)
            fp50 = statistics.median(r["p50Ms"] for r in base)
            verdict = "pass" if ratio >= 0.5 else "FAIL"
            print(f"| {threads} thread{'s' if threads > 1 else ''} | {rate:,.0f} msgs/s "
                  f"(p50 {p50:.2f} ms) | {floor_rate:,.0f} msgs/s (p50 {fp50:.2f} ms) | "
                  f"{ratio:.2f}x | >= 0.5x {verdict} |")
    finally:
        node.stop()
        floor_proc.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        ep, topic, threads, seconds, size = sys.argv[2:7]
        load(ep, topic, int(threads), float(seconds), int(size))
    elif len(sys.argv) > 1 and sys.argv[1] == "--floor":
        sys.path.insert(0, str(REPO))
        floor()
    else:
        main()

"""The long fuzz: tests/test_fuzz.py's mutations at a much larger count, connection abuse, and
a kill -9 check, against one real node; prints a summary. Not collected by pytest.

    python benchmarks/fuzz_soak.py --frames 250000 --seed 7 [--duration 600] [--log FILE]

Phases, each bounded in count and time:
1. fuzz: mutated requests of every served code and codec garbage (as the test sends them);
2. abuse: connections opened and dropped at once, half frames left hanging, held pulls and
   POP long polls abandoned by their peer;
3. kill -9: SYNC_FLUSH sends whose acknowledgements are recorded, SIGKILL, a restart on the
   same store, and every acknowledged message pulled back (lost ones are counted).
The node's RSS is read from /proc before and after phases 1-2; every Traceback and
`request.crashed` line of its log is counted, and the distinct crashes listed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from conftest import Node  # noqa: E402 - tests/ is on the path only from here on
from remoting import call  # noqa: E402
from fuzz_load import Findings, Fuzzer, Link, frame, json_header, run_frames  # noqa: E402
from fuzz_requests import TOPIC  # noqa: E402
from test_fuzz import (crash_lines, crash_signatures, handled_codes, sandbox,  # noqa: E402
                       seed_node, still_serves, templates_by_code, tree)

from rmqnode.net.client import RemotingClient  # noqa: E402
from rmqnode.net.codec import SERIALIZE_JSON, RemotingCommand  # noqa: E402
from rmqnode.net.codes import RequestCode as RC  # noqa: E402
from rmqnode.storage.records import decode_record  # noqa: E402

ROLES = ("namesrv", "broker")
DURABLE_TOPIC = "SoakDurable"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def node_args(home: Path, *extra: str) -> list[str]:
    return ["--namesrv-port", "0", "--listen-port", "0", "--store", str(home / "store"),
            *extra]


async def abuse(node: Node, rng: random.Random, rounds: int, deadline: float) -> int:
    """Connections opened and dropped, half frames, held pulls and POPs (on the empty topic
    SoakEmpty) abandoned; returns how many connections were made."""
    made = 0
    hold_pull = frame(SERIALIZE_JSON, json_header(
        {"code": RC.PULL_MESSAGE, "flag": 0, "language": "JAVA", "opaque": 1, "version": 409},
        {"consumerGroup": "SoakGroup", "topic": TOPIC, "queueId": "0", "queueOffset": "999999",
         "maxMsgNums": "32", "sysFlag": "6", "commitOffset": "0",
         "suspendTimeoutMillis": "30000", "subscription": "*", "subVersion": "1"}), b"")
    hold_pop = frame(SERIALIZE_JSON, json_header(
        {"code": RC.POP_MESSAGE, "flag": 0, "language": "JAVA", "opaque": 2, "version": 409},
        {"consumerGroup": "SoakGroup", "topic": "SoakEmpty", "queueId": "-1", "maxMsgNums": "4",
         "invisibleTime": "60000", "pollTime": "20000", "initMode": "0"}), b"")

    async def one(kind: int) -> None:
        addr = rng.choice((node.broker, node.namesrv))
        try:
            link = await Link.open(node.broker if kind >= 2 else addr)
        except OSError:
            return
        if kind == 1:  # half a frame, then gone
            link.writer.write(hold_pull[:rng.randrange(1, len(hold_pull))])
            await asyncio.sleep(0.01)
        elif kind >= 2:  # a held request whose asker leaves
            link.writer.write(hold_pull if kind == 2 else hold_pop)
            await asyncio.sleep(0.05)
        await link.close()

    for _ in range(rounds):
        if time.monotonic() > deadline:
            break
        await asyncio.gather(*(one(rng.randrange(4)) for _ in range(50)))
        made += 50
    return made


async def send_acked(node: Node, count: int) -> list[str]:
    """`count` sync-flushed sends, 8 at a time; the bodies the broker acknowledged."""
    acked: list[str] = []
    client = RemotingClient()
    slots = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        body = f"durable-{i}"
        cmd = RemotingCommand.request(RC.SEND_MESSAGE_V2, {
            "a": "SoakProducer", "b": DURABLE_TOPIC, "c": "TBW102", "d": 4, "e": i % 4,
            "f": 0, "g": 0, "h": 0, "i": "WAIT\x01true\x02"}, body.encode())
        async with slots:
            try:
                resp = await client.invoke(node.broker, cmd, timeout=5)
            except Exception:  # noqa: BLE001 - an unanswered send is simply not acknowledged
                return
        if resp.code == 0:
            acked.append(body)

    try:
        await asyncio.gather(*(one(i) for i in range(count)))
    finally:
        await client.close()
    return acked


def pulled_bodies(node: Node) -> set[str]:
    """Every body on the durable topic, pulled queue by queue from offset 0."""
    bodies: set[str] = set()
    for queue_id in range(4):
        offset = 0
        while True:
            resp = call(node.broker, RC.PULL_MESSAGE, {
                "consumerGroup": "SoakCheck", "topic": DURABLE_TOPIC, "queueId": queue_id,
                "queueOffset": offset, "maxMsgNums": 32, "sysFlag": 4, "commitOffset": 0,
                "suspendTimeoutMillis": 0, "subscription": "*", "subVersion": 0})
            if resp.code != 0:
                break
            pos = 0
            while pos < len(resp.body):  # the response body is the records, back to back
                size = int.from_bytes(resp.body[pos:pos + 4], "big")
                bodies.add(decode_record(memoryview(resp.body)[pos:pos + size], 0).body.decode())
                pos += size
            offset = int((resp.ext_fields or {})["nextBeginOffset"])
    return bodies


def kill_9_check(root: Path, count: int) -> tuple[int, int]:
    """(acknowledged, acknowledged but lost) across a SIGKILL and a restart."""
    home = root / "durable"
    home.mkdir()
    args = node_args(home, "-D", "flushDiskType=SYNC_FLUSH")
    node = Node(args, home).wait_started(ROLES)
    try:
        acked = asyncio.run(send_acked(node, count))
    finally:
        node.stop(signal.SIGKILL)
    node = Node(args, home).wait_started(ROLES)
    try:
        back = pulled_bodies(node)
    finally:
        node.stop()
    return len(acked), len(set(acked) - back)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=250_000, help="fuzz frames to send")
    parser.add_argument("--seed", type=int, default=20250601)
    parser.add_argument("--duration", type=float, default=900.0,
                        help="seconds after which the fuzz and abuse phases stop early")
    parser.add_argument("--abuse-rounds", type=int, default=200,
                        help="rounds of 50 abusive connections")
    parser.add_argument("--durable", type=int, default=2000,
                        help="sync-flushed sends before the kill -9")
    parser.add_argument("--log", type=Path, help="write the fuzzed node's output here")
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rmq-soak-") as tmp:
        root = Path(tmp)
        home, outside = sandbox(root)
        node = Node(node_args(home), home).wait_started(ROLES)
        before = tree(root, home)
        served = handled_codes(node)
        seed_node(node)
        rss_before = rss_kib(node.pid)
        deadline = time.monotonic() + opts.duration
        findings = Findings(opts.seed)
        fuzzer = Fuzzer(opts.seed, outside, templates_by_code(node, outside))
        started = time.monotonic()

        def bounded():
            for item in fuzzer.frames(opts.frames, served):
                if time.monotonic() > deadline:
                    return
                yield item

        asyncio.run(run_frames(bounded(), findings))
        fuzz_seconds = time.monotonic() - started
        call(node.broker, RC.UPDATE_AND_CREATE_TOPIC, {"topic": "SoakEmpty", "readQueueNums": 2,
                                                       "writeQueueNums": 2, "perm": 6})
        connections = asyncio.run(abuse(node, random.Random(opts.seed), opts.abuse_rounds,
                                        deadline))
        time.sleep(1.0)
        rss_after = rss_kib(node.pid)
        alive = node.proc.poll() is None
        broken = still_serves(node, "SoakStillServes", "SoakStillServesGroup") if alive else \
            ["the node died"]
        outside_made = sorted(tree(root, home) - before)
        exit_code = node.stop()
        if opts.log:
            opts.log.write_text("\n".join(node.lines) + "\n")
        signatures = crash_signatures(node.lines)
        lines = crash_lines(node)
        acked, lost = kill_9_check(root, opts.durable)

    print(f"seed                      {opts.seed}")
    print(f"frames tried              {findings.sent + findings.garbage} of {opts.frames} "
          f"in {fuzz_seconds:.1f} s ({findings.garbage} garbage on throwaway connections)")
    print(f"answered / unanswered     {findings.answered} / {findings.unanswered}")
    print(f"not sent, no connection   {findings.unconnected}")
    print(f"abusive connections       {connections}")
    print(f"node alive after abuse    {alive and not broken} {'; '.join(broken)}")
    print(f"SIGTERM exit code         {exit_code}")
    print(f"tracebacks in log         {sum('Traceback' in line for line in lines)}")
    print(f"request.crashed lines     {sum('request.crashed' in line for line in lines)}")
    print(f"crash answers             {len(findings.crashes)}")
    print(f"files outside the home    {len(outside_made)} {outside_made[:5]}")
    print(f"RSS before / after        {rss_before / 1024:.1f} MiB / {rss_after / 1024:.1f} MiB")
    print(f"acknowledged / lost       {acked} / {lost} after kill -9")
    for signature, (count, example) in sorted(signatures.items()):
        print(f"  x{count:<5} {signature}\n          {example}")
    ok = alive and not broken and not lines and not findings.crashes and not outside_made \
        and exit_code == 0 and lost == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

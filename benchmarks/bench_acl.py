"""What the plain ACL check costs: the C++ client 1.x (PyPI rocketmq==0.4.4) sync-sending 128 B
from 16 threads, signed (set_session_credentials) against a node with aclEnable=true, next to
the same client unsigned against a node with ACL off, in the same run. The nodes are loaded in
turn, `--rounds` times, so that this machine's drift hits both alike; the median ratio of the
rounds is the figure (target: signed >= 0.85x unsigned, i.e. the check costs < 15%).

    python benchmarks/bench_acl.py [--seconds 8] [--rounds 3] [--threads 16]

Each run goes through benchmarks/cpp_load.py under the peer's interpreter (.ci/peers.sh); the
node's CPU per message is read from /proc around the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from rows import settle
from servers import BENCH_DIR, CPP_PYTHON, Server, start_node

from rmqnode.acl.signature import sign
from rmqnode.net.client import RemotingClient
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode

TOPIC = "AclBench"
AK, SK = "benchUser01", "benchSecret01"
RULES = f"""\
accounts:
  - accessKey: {AK}
    secretKey: {SK}
    admin: true
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - {TOPIC}=PUB|SUB
"""


def cpp_load(node: Server, threads: int, seconds: float, work: Path, signed: bool,
             topic: str = TOPIC) -> dict:
    home = Path(tempfile.mkdtemp(prefix="cpp-", dir=work))
    argv = [str(CPP_PYTHON), str(BENCH_DIR / "cpp_load.py"), node.addrs["namesrv"], topic,
            str(threads), str(seconds), "128", *((AK, SK) if signed else ())]
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "NAMESRV_ADDR")}
    settle()
    before = node.cpu_seconds()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=home,
                          env=dict(env, HOME=str(home)), timeout=seconds + 60)
    cpu = node.cpu_seconds() - before
    results = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not results:
        raise RuntimeError(f"C++ load exited {done.returncode}: {done.stderr[-2000:]}")
    figures = json.loads(results[-1])
    if not figures["messages"]:
        raise RuntimeError(f"every send failed: {figures['lastError']}")
    figures["cpuUsPerMsg"] = cpu * 1e6 / max(figures["messages"], 1)
    return figures


def write_rules(home: Path) -> None:
    """RULES as the plain_acl.yml of a node started in `home`."""
    (home / "conf").mkdir(parents=True, exist_ok=True)
    (home / "conf" / "plain_acl.yml").write_text(RULES)


def create_topic(node: Server) -> None:
    """The topic, created as mqadmin updateTopic creates it, signed by the admin account."""
    fields = {"topic": TOPIC, "defaultTopic": "TBW102", "readQueueNums": "8",
              "writeQueueNums": "8", "perm": "6", "topicFilterType": "SINGLE_TAG",
              "topicSysFlag": "0", "order": "false"}
    sign(fields, b"", AK, SK)

    async def create() -> RemotingCommand:
        client = RemotingClient()
        try:
            return await client.invoke(node.addrs["broker"], RemotingCommand(
                code=RequestCode.UPDATE_AND_CREATE_TOPIC, ext_fields=fields), 10.0)
        finally:
            await client.close()
    done = asyncio.run(create())
    if done.code != 0:
        raise RuntimeError(f"topic create: {done.code} {done.remark}")


def compare(work: Path, threads: int, seconds: float, count: int
            ) -> list[tuple[dict, dict, float]]:
    """`count` rounds of the unsigned and the signed load, each node on its own store in
    `work`; each round's figures and ratio."""
    write_rules(work / "acl")
    size = f"mappedFileSizeCommitLog={256 << 20}"
    with start_node(work / "plain", size) as plain, \
            start_node(work / "acl", size, "aclEnable=true") as acl:
        create_topic(plain)
        create_topic(acl)
        rounds = []
        for index in range(count):
            unsigned = cpp_load(plain, threads, seconds, work, False)
            signed = cpp_load(acl, threads, seconds, work, True)
            ratio = signed["msgsPerSec"] / unsigned["msgsPerSec"]
            rounds.append((unsigned, signed, ratio))
            print(f"round {index + 1}: unsigned {unsigned['msgsPerSec']:,.0f} msgs/s "
                  f"({unsigned['cpuUsPerMsg']:.0f} us/msg node CPU, {unsigned['errors']} "
                  f"errors), signed {signed['msgsPerSec']:,.0f} msgs/s "
                  f"({signed['cpuUsPerMsg']:.0f} us/msg, {signed['errors']} errors): "
                  f"{ratio:.2f}x", flush=True)
    return rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    if not CPP_PYTHON.exists():
        sys.exit(f"the C++ client is not installed ({CPP_PYTHON}): bash .ci/peers.sh")
    with tempfile.TemporaryDirectory(prefix="bench-acl-") as tmp:  # the stores go with it
        rounds = compare(Path(tmp), args.threads, args.seconds, args.rounds)
    median = statistics.median(r[2] for r in rounds)
    cpu = statistics.median(s["cpuUsPerMsg"] - u["cpuUsPerMsg"] for u, s, _ in rounds)
    print(f"median: signed/unsigned {median:.2f}x (cost {(1 - median) * 100:.0f}%), node CPU "
          f"+{cpu:.0f} us/msg for the check; target >= 0.85x: "
          f"{'PASS' if median >= 0.85 else 'FAIL'}")


if __name__ == "__main__":
    main()

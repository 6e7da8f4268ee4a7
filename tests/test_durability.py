"""Nothing acknowledged is lost: kill -9 a node under SYNC_FLUSH load, again and again."""

from __future__ import annotations

import asyncio
import random
import signal

from conftest import Node
from rmqnode.config import BrokerConfig
from rmqnode.errors import ConnectionLost, RemotingTimeout
from rmqnode.net.client import RemotingClient
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode
from rmqnode.storage.records import decode_record
from rmqnode.storage.store import FOUND, MessageStore

NODE_ARGS = ("--namesrv-port", "0", "--listen-port", "0", "-D", "flushDiskType=SYNC_FLUSH",
             "-D", "mappedFileSizeCommitLog=262144", "-D", "mappedFileSizeConsumeQueue=2000")


async def load_until_killed(node: Node, prefix: str, kill_after: float) -> list[str]:
    """16 concurrent senders; returns the bodies the broker acknowledged before it died."""
    acked: list[str] = []
    client = RemotingClient()
    asyncio.get_running_loop().call_later(kill_after, node.proc.kill)

    async def sender(k: int) -> None:
        i = 0
        while True:
            body = f"{prefix}-{k}-{i}"
            cmd = RemotingCommand.request(RequestCode.SEND_MESSAGE_V2, {
                "a": "PG", "b": "Durable", "c": "TBW102", "d": 4, "e": -1, "f": 0, "g": 0,
                "h": 0, "i": f"KEYS\x01{body}\x02WAIT\x01true\x02"}, body.encode())
            try:
                resp = await client.invoke(node.broker, cmd, timeout=5)
            except (ConnectionLost, RemotingTimeout):
                return
            if resp.code == 0:
                acked.append(body)
            i += 1

    try:
        await asyncio.gather(*(sender(k) for k in range(16)))
    finally:
        await client.close()
    return acked


def stored_bodies(root) -> set[str]:
    store = MessageStore(BrokerConfig(storePathRootDir=str(root),
                                      mappedFileSizeCommitLog=262144,
                                      mappedFileSizeConsumeQueue=2000), readonly=True)
    store.open()
    bodies = set()
    try:
        for queue_id in range(4):
            offset = store.min_offset("Durable", queue_id)
            while (r := store.get_messages("Durable", queue_id, offset, 32)).status == FOUND:
                bodies.update(decode_record(v, 0, check_crc=True).body.decode()
                              for v in r.messages)
                offset = r.next_begin_offset
    finally:
        store.close_readonly()
    return bodies


def test_kill_9_under_sync_flush_loses_no_acknowledged_message(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    acked: list[str] = []
    rng = random.Random(7)
    for round_no in range(6):
        node = Node(list(NODE_ARGS), home).wait_started(("namesrv", "broker"))
        if round_no:
            node.wait_line(r"store\.recovered_after_crash")
        got = asyncio.run(load_until_killed(node, f"r{round_no}", rng.uniform(0.4, 1.2)))
        node.proc.wait(10)
        assert node.proc.returncode == -signal.SIGKILL
        assert got, "the node acknowledged nothing before it was killed"
        acked += got
    # One more start recovers the last crash; a clean stop leaves a normal store behind.
    node = Node(list(NODE_ARGS), home).wait_started(("namesrv", "broker"))
    node.wait_line(r"store\.recovered_after_crash")
    assert node.stop() == 0
    bodies = stored_bodies(home / "store")
    lost = set(acked) - bodies
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged messages lost, e.g. {sorted(lost)[:5]}"
    assert len(acked) > 500
    print(f"acked {len(acked)} over 6 kills; stored {len(bodies)}")

"""The node restarts while messages are between stages (a transaction's half message, a
delayed message, a message waiting for its retry), by SIGTERM and by kill -9: nothing is lost,
and nothing is delivered twice beyond what at-least-once allows (after a clean stop, nothing
at all). The transaction stage uses the real C++ 2.1 transaction producer."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter

import pytest

from peers import run_cpp21
from remoting import call, send
from rmqnode.net.codes import RequestCode
from test_rmqctl_messages import rmqctl

# Level 1 = 1 s, 2 = 2 s, then 4 s: a first retry (level 3) is due 4 s after the send-back.
LEVELS = "1s 2s 4s 4s 4s 4s 4s 4s 4s 4s 4s 4s 4s 4s 4s 4s 4s 4s"


def start(start_node, home, *extra: str):
    return start_node("--namesrv-port", "0", "--listen-port", "0",
                      "-D", f"messageDelayLevel={LEVELS}", *extra, home=home)


def restart(start_node, node, sig: int, *extra: str):
    node.stop(sig)
    return start(start_node, node.home, *extra)


def delivered(node, topic: str, group: str, first: bool = False) -> Counter:
    """What a consume of the group gets: from the first offset, or from where the group's
    committed offset says (what survived the restart)."""
    start = ("--from", "first") if first else ()
    out = rmqctl(node.namesrv, "consume", topic, "-g", group, *start, "-e", "--format", "%b")
    assert out.returncode == 0, out.stderr
    return Counter(out.stdout.split())


def wait_delivered(node, topic: str, group: str, want: set[str], timeout: float) -> Counter:
    """Consume (committing offsets) until every body in `want` came, at most `timeout` s."""
    seen: Counter = Counter()
    deadline = time.monotonic() + timeout
    while not want <= set(seen) and time.monotonic() < deadline:
        seen += delivered(node, topic, group)
        time.sleep(0.5)
    return seen


FIRST_PRODUCER = """
import os, sys, time
from rocketmq.client import TransactionMQProducer, Message, TransactionStatus
def checker(msg):
    print("checked-too-early " + msg.body.decode(), flush=True)
    return TransactionStatus.UNKNOWN
def local(msg, arg):
    return {"commit": TransactionStatus.COMMIT, "rollback": TransactionStatus.ROLLBACK,
            "unknown": TransactionStatus.UNKNOWN}[msg.body.decode().split("-")[0]]
p = TransactionMQProducer("PG_STAGE", checker)
p.set_name_server_address(sys.argv[1])
p.start()
time.sleep(0.5)
for body in ("commit-0", "rollback-0", "unknown-0", "unknown-1", "unknown-2"):
    m = Message("TxStage")
    m.set_body(body.encode())
    print(f"sent {body} {p.send_message_in_transaction(m, local, None).status}", flush=True)
os._exit(0)  # gone before any check-back: the node restarts with these half messages
"""

# The producer application, restarted too, goes on sending; the 2.1 client heartbeats only
# every 30 s, so it is its first transactional send that makes it known to the new broker.
SECOND_PRODUCER = """
import sys, threading, time
from rocketmq.client import TransactionMQProducer, Message, TransactionStatus
lock = threading.Lock()
def checker(msg):
    with lock:
        sys.stdout.write("checked " + msg.body.decode() + "\\n")
        sys.stdout.flush()
    return TransactionStatus.COMMIT
p = TransactionMQProducer("PG_STAGE", checker)
p.set_name_server_address(sys.argv[1])
p.start()
time.sleep(0.5)
m = Message("TxStage")
m.set_body(b"commit-1")
p.send_message_in_transaction(m, lambda msg, arg: TransactionStatus.COMMIT, None)
time.sleep(8)
p.shutdown()
print("done", flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_half_messages_survive_a_restart_and_are_checked_back_after_it(start_node, tmp_path,
                                                                         sig):
    # Checks start 3 s after a half message: the first producer is long gone by then.
    tx = ("-D", "transactionTimeOut=3000", "-D", "transactionCheckInterval=1000")
    node = start(start_node, tmp_path, *tx)
    send(node.broker, "TxStage", b"warm-up")
    first = run_cpp21(FIRST_PRODUCER, timeout=60, args=[node.namesrv])
    assert first.returncode == 0 and len(
        [line for line in first.lines if line.startswith("sent ")]) == 5, first.explain()
    node = restart(start_node, node, sig, *tx)
    second = run_cpp21(SECOND_PRODUCER, timeout=60, args=[node.namesrv])
    assert "done" in second.lines, second.explain()
    checked = Counter(line.split()[1] for line in second.lines if line.startswith("checked "))
    assert set(checked) == {"unknown-0", "unknown-1", "unknown-2"}, second.explain()
    got = delivered(node, "TxStage", "TxStageReader", first=True)
    assert set(got) == {"warm-up", "commit-0", "commit-1", "unknown-0", "unknown-1",
                        "unknown-2"}
    assert all(n == 1 for n in got.values()), f"delivered more than once: {got}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_delayed_messages_survive_a_restart(start_node, tmp_path, sig):
    node = start(start_node, tmp_path)
    bodies = {f"late-{i}" for i in range(10)}
    for body in sorted(bodies):
        send(node.broker, "DelayStage", body.encode(), DELAY="3")  # due in 4 s
    send(node.broker, "DelayStage", b"now")
    assert delivered(node, "DelayStage", "DelayReader", first=True) == Counter({"now": 1})
    node = restart(start_node, node, sig)
    got = wait_delivered(node, "DelayStage", "DelayReader", bodies, timeout=20)
    assert bodies <= set(got), f"lost: {bodies - set(got)}"
    if sig == signal.SIGTERM:
        assert set(got) == bodies and all(n == 1 for n in got.values()), \
            f"delivered twice after a clean stop: {got}"
    else:
        # The group's offset is persisted every 5 s: after kill -9 it may start over ("now"
        # again). Each delayed message is still redelivered once by the schedule.
        assert set(got) - bodies <= {"now"} and all(n <= 2 for n in got.values()), got


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_a_message_waiting_for_its_retry_survives_a_restart(start_node, tmp_path, sig):
    node = start(start_node, tmp_path)
    sent = send(node.broker, "RetryStage", b"try-again", queue_id=0, KEYS="k1")
    pulled = call(node.broker, RequestCode.PULL_MESSAGE, {
        "consumerGroup": "RetryG", "topic": "RetryStage", "queueId": 0, "queueOffset": 0,
        "maxMsgNums": 1, "sysFlag": 4, "commitOffset": 0, "suspendTimeoutMillis": 0,
        "subscription": "*", "subVersion": 0})
    assert pulled.code == 0
    offset = int.from_bytes(pulled.body[28:36], "big")  # the record's commit log offset
    back = call(node.broker, RequestCode.CONSUMER_SEND_MSG_BACK, {
        "offset": offset, "group": "RetryG", "delayLevel": 0, "originMsgId": sent["msgId"],
        "originTopic": "RetryStage", "unitMode": False, "maxReconsumeTimes": 16})
    assert back.code == 0, back.remark
    node = restart(start_node, node, sig)
    # Due 4 s after the send-back, through %RETRY%RetryG, with one reconsume time.
    assert delivered(node, "%RETRY%RetryG", "RetryG", first=True) == Counter()
    got = wait_delivered(node, "%RETRY%RetryG", "RetryG", {"try-again"}, timeout=20)
    if sig == signal.SIGTERM:
        assert got["try-again"] == 1, got
    assert got["try-again"] >= 1, got
    out = rmqctl(node.namesrv, "-o", "ndjson", "message", "query", "-t", "%RETRY%RetryG",
                 "-k", "k1")
    assert out.returncode == 0, out.stderr
    [retried] = [json.loads(line) for line in out.stdout.splitlines()]
    assert retried["reconsumeTimes"] == 1
    assert retried["properties"]["RETRY_TOPIC"] == "RetryStage"

"""rmqctl's admin commands against a real node, and an offset reset seen by a live consumer."""

from __future__ import annotations

import json
import time

import pytest

from peers import start_peer
from test_rmqctl_messages import rmqctl


@pytest.fixture
def node(start_node):
    return start_node("--namesrv-port", "0", "--listen-port", "0")


def js(out):
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_topic_group_broker_and_message_commands(node):
    ns = node.namesrv
    [created] = js(rmqctl(ns, "-o", "json", "topic", "create", "Adm", "-q", "3"))
    assert created["writeQueueNums"] == created["readQueueNums"] == 3
    assert created["addr"] == node.broker
    status = js(rmqctl(ns, "-o", "json", "topic", "status", "Adm"))
    assert [r["queueId"] for r in status] == [0, 1, 2]
    sent = js(rmqctl(ns, "-o", "json", "send", "Adm", "payload", "--keys", "order-9"))[0]
    by_offset_id = js(rmqctl(ns, "-o", "json", "message", "get", sent["offsetMsgId"]))
    assert by_offset_id["body"] == "payload" and by_offset_id["msgId"] == sent["msgId"]
    by_uniq = js(rmqctl(ns, "-o", "json", "message", "get", sent["msgId"], "-t", "Adm"))
    assert by_uniq["offsetMsgId"] == sent["offsetMsgId"]
    [found] = js(rmqctl(ns, "-o", "json", "message", "query", "-t", "Adm", "-k", "order-9"))
    assert found["body"] == "payload"

    assert rmqctl(ns, "group", "create", "AdmG", "--retry-max-times", "5").returncode == 0
    rmqctl(ns, "consume", "Adm", "-g", "AdmG", "--from", "first", "-e")
    progress = js(rmqctl(ns, "-o", "json", "group", "progress", "AdmG"))
    assert sum(r["brokerOffset"] for r in progress) == 1 and all(r["diff"] == 0
                                                                 for r in progress)
    assert "AdmG" in rmqctl(ns, "-o", "raw", "group", "list").stdout.split()
    offline = rmqctl(ns, "group", "connections", "AdmG")
    assert offline.returncode == 1 and "not online" in offline.stderr

    status = js(rmqctl(ns, "-o", "json", "broker", "status", "broker-a"))
    assert status["brokerVersionDesc"] == "V4_9_8" and int(status["msgPutTotalTodayNow"]) >= 1
    config = js(rmqctl(ns, "-o", "json", "broker", "config", node.broker,
                       "--set", "maxMessageSize=2048"))
    assert config["maxMessageSize"] == "2048"

    assert rmqctl(ns, "topic", "delete", "Adm").returncode == 0
    gone = rmqctl(ns, "topic", "route", "Adm")
    assert gone.returncode == 3 and "TOPIC_NOT_EXIST" in gone.stderr


def test_topic_stats_shows_traffic_as_mqadmin_statsAll(node):
    """Three messages in, two consumed by one group: the backlog at once, the in and out
    counts once the broker's 10-second sampling has seen them. Out counts what pulls
    returned, as in Java: one pull brought all three, though the consumer stopped at two."""
    ns = node.namesrv
    assert rmqctl(ns, "topic", "create", "Quiet").returncode == 0
    assert rmqctl(ns, "send", "Tr", "--sharding-key", "k", input="a\nb\nc\n").returncode == 0
    pull = rmqctl(ns, "-o", "json", "consume", "Tr", "-g", "TrG", "--from", "first", "-c", "2")
    assert pull.returncode == 0, pull.stderr
    quiet = js(rmqctl(ns, "-o", "json", "topic", "stats", "Tr", "Quiet"))
    assert {(r["topic"], r["group"]) for r in quiet} == {("Tr", "TrG"), ("Quiet", "")}
    row = next(r for r in quiet if r["group"] == "TrG")
    assert row["accumulation"] == 1
    assert next(r for r in quiet if r["topic"] == "Quiet")["outMsg24Hour"] is None
    deadline = time.monotonic() + 20
    while row["inMsg24Hour"] == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
        [row] = js(rmqctl(ns, "-o", "json", "topic", "stats", "Tr"))
    assert (row["inMsg24Hour"], row["outMsg24Hour"]) == (3, 3), row
    assert row["inTps"] > 0 and row["outTps"] > 0
    active = js(rmqctl(ns, "-o", "json", "topic", "stats", "--active"))
    assert [(r["topic"], r["group"]) for r in active] == [("Tr", "TrG")]
    table = rmqctl(ns, "topic", "stats", "Tr")
    assert table.returncode == 0 and "TrG" in table.stdout


def test_offset_reset_offline_refuses_a_running_node_and_edits_a_stopped_one(start_node,
                                                                             tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    node = start_node("--namesrv-port", "0", "--listen-port", "0", home=home)
    rmqctl(node.namesrv, "send", "Off", input="a\nb\nc\n")
    rmqctl(node.namesrv, "consume", "Off", "-g", "OffG", "--from", "first", "-e")
    store = str(home / "store")
    busy = rmqctl(node.namesrv, "offset", "reset", "-g", "OffG", "-t", "Off", "--to-offset", "0",
                  "--offline", store)
    assert busy.returncode == 1 and "in use by a running node" in busy.stderr
    node.stop()
    done = js(rmqctl("127.0.0.1:1", "-o", "json", "offset", "reset", "-g", "OffG", "-t", "Off",
                     "--to-offset", "0", "--offline", store, "--yes"))
    assert done and all(r["after"] == 0 for r in done)
    node = start_node("--namesrv-port", "0", "--listen-port", "0", home=home)
    again = rmqctl(node.namesrv, "consume", "Off", "-g", "OffG", "-e", "--format", "%b")
    assert sorted(again.stdout.split()) == ["a", "b", "c"]


CONSUMER = """
import sys, threading, time
from rocketmq.client import PushConsumer
lock = threading.Lock()
def say(line):  # callbacks run on several client threads: one whole line per write
    with lock:
        sys.stdout.write(line + "\\n")
        sys.stdout.flush()
c = PushConsumer("LiveG")
c.set_namesrv_addr(sys.argv[1])
c.subscribe("Live", lambda m: say("got " + m.body.decode()))
c.start()
say("started")
time.sleep(float(sys.argv[2]))
c.shutdown()
"""


def test_offset_reset_to_a_timestamp_makes_a_live_consumer_reread(node):
    ns = node.namesrv
    rmqctl(ns, "send", "Live", input="".join(f"old-{i}\n" for i in range(8)))
    time.sleep(1.2)
    boundary = int(time.time() * 1000)
    time.sleep(0.2)
    rmqctl(ns, "send", "Live", input="".join(f"new-{i}\n" for i in range(8)))
    def got(consumer) -> list[str]:
        return [line.split()[1] for line in consumer.stdout.splitlines()
                if line.startswith("got ")]

    def wait_for(predicate, what) -> None:
        deadline = time.time() + 20
        while not predicate():
            assert time.time() < deadline, what
            time.sleep(0.2)

    with start_peer("cpp", CONSUMER, args=[ns, "40"]) as consumer:
        consumer.wait_line(r"^started")
        wait_for(lambda: len(got(consumer)) >= 16, "the consumer read the 16 messages")
        first = len(got(consumer))
        reset = js(rmqctl(ns, "-o", "json", "offset", "reset", "-g", "LiveG", "-t", "Live",
                          "--to-timestamp", str(boundary), "--yes"))
        assert sum(r["after"] for r in reset) == 8  # the old ones stay consumed
        wait_for(lambda: len(got(consumer)) >= first + 8, "the consumer re-read after the reset")
        assert sorted(got(consumer)[first:]) == sorted(f"new-{i}" for i in range(8))
        consumer.kill()

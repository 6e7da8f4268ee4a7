"""The C++ RocketMQ client 1.x (PyPI rocketmq==0.4.4), written by others, against rmqnode:
every send mode, push consumers in clustering, broadcasting and orderly mode, the pull
consumer. Each scenario is one client process printing JSON lines."""

from __future__ import annotations

import json

import pytest

from peers import run_cpp

PRELUDE = """
import json, sys, threading, time
from rocketmq.client import Producer, Message, PushConsumer, PullConsumer
from rocketmq.ffi import MessageModel
NS = {ns!r}
def out(kind, **kw):
    print(json.dumps(dict(kind=kind, **kw)), flush=True)
def message(topic, i, tags=None):
    m = Message(topic)
    m.set_keys(f"key-{{i}} grp-{{i % 3}}")
    if tags: m.set_tags(tags)
    m.set_property("idx", str(i))
    m.set_property("lang", "\u65e5\u672c\u8a9e")
    m.set_body(f"body-{{i}}-\u00e9".encode())
    return m
def producer(group):
    p = Producer(group, timeout=5000)
    p.set_namesrv_addr(NS)
    p.start()
    # The C++ client opens broker connections from its heartbeat thread; a send racing it can
    # fail inside the client ("GetTransport ... get timed_mutex timeout", seen on a loaded
    # machine) before anything reaches the broker. Let its start-up settle first.
    time.sleep(0.5)
    return p
class Collector:
    def __init__(self):
        self.got, self.lock = [], threading.Lock()
    def __call__(self, msg):
        with self.lock:
            self.got.append(dict(body=msg.body.decode(), tags=msg.tags.decode(),
                                 keys=msg.keys.decode(), idx=msg.get_property("idx").decode(),
                                 lang=msg.get_property("lang").decode(), queue=msg.queue_id,
                                 offset=msg.queue_offset, id=msg.id))
def consumer(group, topic, collector, expr="*", **kw):
    name = kw.pop("instance", None)
    c = PushConsumer(group, **kw)
    c.set_namesrv_addr(NS)
    if name: c.set_instance_name(name)
    c.subscribe(topic, collector, expr)
    c.start()
    return c
def wait_for(pred, seconds=30):
    end = time.time() + seconds
    while time.time() < end and not pred():
        time.sleep(0.1)
"""


def run(node, body: str, timeout: float = 90) -> list[dict]:
    result = run_cpp(PRELUDE.format(ns=node.namesrv) + body, timeout=timeout)
    assert result.returncode == 0, result.explain()
    return [json.loads(line) for line in result.lines if line.startswith("{")]


@pytest.fixture
def node(start_node):
    return start_node("--namesrv-port", "0", "--listen-port", "0")


def by_kind(events, kind):
    return [e for e in events if e["kind"] == kind]


def test_every_send_mode_arrives_intact(node):
    events = run(node, """
p = producer("PG_MODES")
ids = []
for i in range(10):
    r = p.send_sync(message("Modes", i, "TagA"))
    ids.append(r.msg_id)
out("sync", status=int(r.status), ids=ids, offset=r.offset)
done = threading.Event(); acked = []
def ok(r):
    acked.append(r.msg_id)
    if len(acked) == 10: done.set()
def bad(e): out("async_error", error=str(e))
for i in range(10, 20):
    p.send_async(message("Modes", i, "TagB"), ok, bad)
done.wait(20)
out("async", acked=len(acked))
for i in range(20, 30):
    p.send_oneway(message("Modes", i, "TagA"))
for i in range(30, 40):
    p.send_orderly(message("Modes", i, "TagB"), i % 2)
r = p.send_batch([message("Modes", i, "TagA") for i in range(40, 50)])
out("batch", status=int(r.status), id=r.msg_id)
time.sleep(0.5)
p.shutdown()
c = Collector()
pc = consumer("CG_MODES", "Modes", c)
wait_for(lambda: len(c.got) >= 50)
time.sleep(1)
pc.shutdown()
for g in c.got: out("got", **g)
""")
    [sync] = by_kind(events, "sync")
    assert sync["status"] == 0 and len(set(sync["ids"])) == 10
    assert by_kind(events, "async") == [{"kind": "async", "acked": 10}]
    assert by_kind(events, "batch")[0]["status"] == 0
    got = by_kind(events, "got")
    bodies = sorted(int(g["body"].split("-")[1]) for g in got)
    assert bodies == list(range(50)), "every message of every send mode arrives exactly once"
    for g in got:
        i = int(g["idx"])
        assert g["body"] == f"body-{i}-\u00e9" and g["lang"] == "\u65e5\u672c\u8a9e"
        assert g["keys"] == f"key-{i} grp-{i % 3}"
        assert g["tags"] == ("TagB" if 10 <= i < 20 or 30 <= i < 40 else "TagA")
    sync_ids = {g["id"] for g in got if int(g["idx"]) < 10}
    assert sync_ids == set(sync["ids"])
    orderly = [g for g in got if 30 <= int(g["idx"]) < 40]
    for arg in (0, 1):  # send_orderly puts every message of one argument on one queue
        assert len({g["queue"] for g in orderly if int(g["idx"]) % 2 == arg}) == 1


def test_clustering_consumers_share_and_tags_filter(node):
    events = run(node, """
p = producer("PG_CL")
p.send_sync(message("Shared", -1, "TagC"))  # create the topic before consumers start
c1, c2 = Collector(), Collector()
a = consumer("CG_SHARED", "Shared", c1, "TagA || TagB", instance="one")
b = consumer("CG_SHARED", "Shared", c2, "TagA || TagB", instance="two")
time.sleep(4)  # both members known, queues rebalanced
for i in range(200):
    p.send_sync(message("Shared", i, ("TagA", "TagB", "TagC")[i % 3]))
wait_for(lambda: len(c1.got) + len(c2.got) >= 134)
time.sleep(2)
a.shutdown(); b.shutdown(); p.shutdown()
out("one", idx=[g["idx"] for g in c1.got], queues=sorted({g["queue"] for g in c1.got}))
out("two", idx=[g["idx"] for g in c2.got], queues=sorted({g["queue"] for g in c2.got}))
""")
    [one] = by_kind(events, "one")
    [two] = by_kind(events, "two")
    wanted = {str(i) for i in range(200) if i % 3 != 2}
    assert one["idx"] and two["idx"], "both members got a share"
    assert not set(one["queues"]) & set(two["queues"]), "queues are split, not shared"
    assert sorted(one["idx"] + two["idx"], key=int) == sorted(wanted, key=int), \
        "together every TagA/TagB message exactly once, no TagC"


def test_broadcasting_consumers_each_get_everything(node):
    events = run(node, """
p = producer("PG_BC")
p.send_sync(message("Broad", -1, "T"))
c1, c2 = Collector(), Collector()
a = consumer("CG_BC", "Broad", c1, instance="b1", message_model=MessageModel.BROADCASTING)
b = consumer("CG_BC", "Broad", c2, instance="b2", message_model=MessageModel.BROADCASTING)
time.sleep(3)
for i in range(40):
    p.send_sync(message("Broad", i, "T"))
wait_for(lambda: len([g for g in c1.got if g["idx"] != "-1"]) >= 40 and
                 len([g for g in c2.got if g["idx"] != "-1"]) >= 40)
a.shutdown(); b.shutdown(); p.shutdown()
out("b1", idx=sorted({g["idx"] for g in c1.got} - {"-1"}, key=int))
out("b2", idx=sorted({g["idx"] for g in c2.got} - {"-1"}, key=int))
""")
    expected = [str(i) for i in range(40)]
    assert by_kind(events, "b1")[0]["idx"] == expected
    assert by_kind(events, "b2")[0]["idx"] == expected


def test_orderly_consumer_keeps_per_queue_order(node):
    events = run(node, """
p = producer("PG_ORD")
p.send_sync(message("Ordered", -1, "T"))
c = Collector()
oc = consumer("CG_ORD", "Ordered", c, orderly=True)
time.sleep(3)
for i in range(120):
    p.send_orderly(message("Ordered", i, "T"), i % 4)
wait_for(lambda: len(c.got) >= 120)
time.sleep(1)
oc.shutdown(); p.shutdown()
for g in c.got: out("got", idx=g["idx"], queue=g["queue"], offset=g["offset"])
""")
    got = [e for e in by_kind(events, "got") if e["idx"] != "-1"]
    assert sorted(int(g["idx"]) for g in got) == list(range(120))
    for key in range(4):
        seq = [int(g["idx"]) for g in got if int(g["idx"]) % 4 == key]
        assert seq == sorted(seq), f"order of key {key} kept"
        assert len({g["queue"] for g in got if int(g["idx"]) % 4 == key}) == 1


def test_pull_consumer_reads_every_queue(node):
    events = run(node, """
p = producer("PG_PULL")
for i in range(60):
    p.send_sync(message("Pulled", i, "TagA" if i % 2 else "TagB"))
p.shutdown()
pc = PullConsumer("CG_PULL")
pc.set_namesrv_addr(NS)
pc.start()
seen = [m.get_property("idx").decode() for m in pc.pull("Pulled")]
tagged = [m.get_property("idx").decode() for m in pc.pull("Pulled")]
pc.shutdown()
out("pull", all=seen, again=tagged)
""")
    # A second pull consumer needs its own process: the C++ client shares one client
    # instance per process, and the first consumer's shutdown stops it.
    events += run(node, """
pc = PullConsumer("CG_PULL2")
pc.set_namesrv_addr(NS)
pc.start()
out("tagged", only_a=[m.get_property("idx").decode() for m in pc.pull("Pulled", "TagA")])
pc.shutdown()
""")
    [pull] = by_kind(events, "pull")
    [tagged] = by_kind(events, "tagged")
    assert sorted(pull["all"], key=int) == [str(i) for i in range(60)]
    assert pull["again"] == []  # the consumer kept its offsets
    assert sorted(tagged["only_a"], key=int) == [str(i) for i in range(1, 60, 2)]

"""The official RocketMQ 5.x Python client (PyPI rocketmq-python-client 5.1.2, written by others)
against rmqnode's gRPC endpoint (spec/grpc-proxy.md §9): producers (normal, FIFO, delay,
transactions and the orphan checker), SimpleConsumer (receive, ack, change invisible duration,
redelivery, DLQ) and PushConsumer (assignment, consumption, retry, FIFO DLQ). A 4 MiB body, a
client killed mid-stream and a node restarted under a consumer are test_grpc_python_survival.py;
messages crossing between the 5.x protocol and the remoting clients, test_grpc_python_crossing.py.
Long polls are kept short (3 s)."""

from __future__ import annotations

import json
import time

from grpc5 import (ID_5X, consumers_of, create_group, create_topics, events_of, grpc_node, kind,
                   one, producers_of, rmqctl, run5, script, stored)
from peers import start_peer


# -- rows 1-3, 19: producer start-up, send, stored properties, registration --------------------

def test_producer_starts_sends_and_the_node_stores_what_it_said(start_node):
    node = grpc_node(start_node)
    create_topics(node, T="NORMAL")
    with start_peer("grpc5", script("""
t = time.time()
p = producer("T")
out("started", seconds=time.time() - t)
r = p.send(message("T", "hello-\u00e9", tag="TagA", keys=("k1", "k2"), props={"idx": "7", "lang": "\u65e5\u672c"}))
out("sent", id=r.message_id, offset=r.offset, txid=r.transaction_id)
wait_file("stop", 40)
finish(p)
"""), args=[node.addrs["grpc"]]) as peer:
        peer.wait_line(r'"kind": "sent"', timeout=30)
        time.sleep(12)  # past the first heartbeats (1 s, then every 10 s)
        registered = producers_of(node, "T")
        (peer.home / "stop").touch()
        run = peer.finish(timeout=30)
    assert run.returncode == 0, run.explain()
    events = events_of(run)
    assert one(events, "started")["seconds"] < 5, "route + settings answered at once"
    sent = one(events, "sent")
    assert ID_5X.match(sent["id"]) and sent["offset"] >= 0
    assert registered, "a live 5.x producer is registered under producer group = topic name"
    assert producers_of(node, "T") == [], "NotifyClientTermination unregisters it"
    [msg] = stored(node, "T")
    props = msg["properties"]
    assert msg["body"] == "hello-\u00e9" and msg["tags"] == "TagA"
    assert sorted(msg["keys"].split()) == ["k1", "k2"]
    assert props["UNIQ_KEY"] == sent["id"] and msg["msgId"] == sent["id"]
    assert props["PGROUP"] == "T"
    assert props["idx"] == "7" and props["lang"] == "\u65e5\u672c"
    assert msg["queueOffset"] == sent["offset"]


def test_rmqctl_shows_a_5x_sent_message(start_node):
    node = grpc_node(start_node)
    create_topics(node, T="NORMAL")
    events = run5(node, """
p = producer("T")
r = p.send(message("T", "for-rmqctl", tag="TagR", keys=("kr",)))
out("sent", id=r.message_id)
finish(p)
""")
    msg_id = one(events, "sent")["id"]
    [msg] = stored(node, "T")
    assert msg["msgId"] == msg_id and msg["body"] == "for-rmqctl"
    r = rmqctl(node, "-o", "json", "message", "get", msg_id, "-t", "T")
    assert r.returncode == 0, f"rmqctl message get {msg_id} (a 5.x id, 34 hex digits): " \
                              f"exit {r.returncode}: {r.stdout}{r.stderr}"
    got = json.loads(r.stdout)
    assert got["body"] == "for-rmqctl" and got["properties"]["UNIQ_KEY"] == msg_id


# -- rows 4, 5, 20: type checks, unknown topic, raw requests ----------------------------------

RAW = """
import grpc
from rocketmq.grpc_protocol import definition_pb2 as d, service_pb2 as s, service_pb2_grpc as g
chan = grpc.insecure_channel(EP, options=[("grpc.max_send_message_length", -1),
                                          ("grpc.max_receive_message_length", -1)])
stub = g.MessagingServiceStub(chan)
META = [("x-mq-client-id", "raw@1@0@test"), ("x-mq-language", "PYTHON"),
        ("x-mq-protocol", "GRPC_V2"), ("x-mq-client-version", "5.1.2")]
def raw_send(topic, body=b"x", group=None, meta=META, msg_id="01000000000000000000000000000000AA"):
    m = d.Message(topic=d.Resource(name=topic), body=body)
    m.system_properties.message_id = msg_id
    m.system_properties.message_type = d.FIFO if group else d.NORMAL
    m.system_properties.born_timestamp.seconds = int(time.time())
    m.system_properties.born_host = "127.0.0.1"
    m.system_properties.body_encoding = d.IDENTITY
    if group: m.system_properties.message_group = group
    r = stub.SendMessage(s.SendMessageRequest(messages=[m]), metadata=meta, timeout=10)
    return dict(code=r.status.code, message=r.status.message,
                entries=[dict(code=e.status.code, id=e.message_id) for e in r.entries])
"""


def test_message_types_unknown_topics_and_raw_requests(start_node):
    node = grpc_node(start_node)
    create_topics(node, T="NORMAL", F="FIFO")
    events = run5(node, RAW + r"""
p = producer("T", "F")
try:
    p.send(message("F", "normal-to-fifo"))
    out("normal_to_fifo", ok=True)
except Exception as e:
    out("normal_to_fifo", ok=False, **error(e))
r = p.send(message("F", "fifo-to-fifo", group="g1"))
out("fifo_to_fifo", id=r.message_id)
try:
    p.send(message("NoSuchTopic", "nowhere"))
    out("no_such_topic", ok=True)
except Exception as e:
    out("no_such_topic", ok=False, **error(e))
out("raw_fifo_to_normal", **raw_send("T", group="g1"))
out("raw_no_client_id", **raw_send("T", meta=[m for m in META if m[0] != "x-mq-client-id"]))
out("raw_4mib", **raw_send("T", body=b"\x01" * (4 << 20)))
out("raw_too_big", **raw_send("T", body=b"\x01" * ((4 << 20) + 1)))
out("raw_empty_id", **raw_send("T", msg_id=""))
# a Telemetry settings command with neither publishing nor subscription
def commands():
    yield s.TelemetryCommand(settings=d.Settings(client_type=d.PRODUCER))
    time.sleep(5)
try:
    for c in stub.Telemetry(commands(), metadata=META, timeout=5):
        out("telemetry_answer", text=str(c))
    out("telemetry_end", code="OK")
except grpc.RpcError as e:
    out("telemetry_end", code=e.code().name, details=e.details())
try:
    stub.PullMessage(s.PullMessageRequest(), metadata=META, timeout=5).next()
    out("pull", code="OK")
except grpc.RpcError as e:
    out("pull", code=e.code().name)
finish(p)
""")
    bad = one(events, "normal_to_fifo")
    assert not bad["ok"] and bad["type"] == "IllegalArgumentException", \
        "the route's accept_message_types let the client refuse a NORMAL message for a FIFO topic"
    assert ID_5X.match(one(events, "fifo_to_fifo")["id"])
    missing = one(events, "no_such_topic")
    assert not missing["ok"] and "failed to fetch topic" in missing["error"], missing
    assert one(events, "raw_fifo_to_normal")["code"] == 40014, "MESSAGE_PROPERTY_CONFLICT_WITH_TYPE"
    assert one(events, "raw_no_client_id")["code"] == 40017, "CLIENT_ID_REQUIRED"
    assert one(events, "raw_4mib")["code"] == 20000, "a 4 MiB body fits"
    assert one(events, "raw_too_big")["code"] == 41301, "MESSAGE_BODY_TOO_LARGE"
    assert one(events, "raw_empty_id")["code"] == 40009, "ILLEGAL_MESSAGE_ID"
    telemetry = one(events, "telemetry_end")
    assert telemetry["code"] == "INVALID_ARGUMENT", \
        f"settings without publishing or subscription end the stream: {telemetry}"
    assert one(events, "pull")["code"] == "UNIMPLEMENTED"
    assert [m["body"] for m in stored(node, "F")] == ["fifo-to-fifo"]
    assert [m["properties"].get("__SHARDINGKEY") for m in stored(node, "F")] == ["g1"]


# -- rows 6-10: SimpleConsumer ----------------------------------------------------------------

def test_simple_consumer_receives_acks_changes_invisibility_and_gets_redeliveries(start_node):
    node = grpc_node(start_node)
    create_topics(node, T="NORMAL")
    events = run5(node, """
p = producer("T")
a = p.send(message("T", "first-\u00e9", tag="TagA", keys=("ka",), props={"idx": "1"}))
out("sent", id=a.message_id)
c = simple("G1", "T", wait=3)
[m] = receive_until(c, lambda g: g, seconds=15)
t = time.time()
empty = c.receive(16, 15)
out("empty_receive", count=len(empty), seconds=time.time() - t)
try:
    c.receive(1, 5)
    out("short_invisible", ok=True)
except Exception as e:
    out("short_invisible", ok=False, **error(e))
old = m.receipt_handle
c.change_invisible_duration(m, 5)
out("changed", new_handle=m.receipt_handle != old)
c.ack(m)
out("acked")
b = p.send(message("T", "second", tag="TagB"))
out("sent", id=b.message_id)
[m2] = receive_until(c, lambda g: g, seconds=15, invisible=10)
t = time.time()
again = receive_until(c, lambda g: g, seconds=25, invisible=10)
out("again", seconds=time.time() - t, ids=[x.message_id for x in again])
for x in again:
    c.ack(x)
late = receive_until(c, lambda g: False, seconds=8)
finish(c, p)
""", timeout=120)
    sent = [e["id"] for e in kind(events, "sent")]
    received = kind(events, "received")
    first = received[0]
    assert first["id"] == sent[0] and first["attempt"] == 1 and not first["corrupted"]
    assert first["body"] == "first-\u00e9" and first["tag"] == "TagA" and first["keys"] == ["ka"]
    assert first["props"] == {"idx": "1"}, "user properties only, no system keys"
    empty = one(events, "empty_receive")
    assert empty["count"] == 0 and 2 <= empty["seconds"] < 6, "a 3 s long poll answered 40401"
    short = one(events, "short_invisible")
    assert not short["ok"] and short["code"] == 40011, "ILLEGAL_INVISIBLE_TIME below 10 s"
    assert one(events, "changed")["new_handle"], "ChangeInvisibleDuration returns a new handle"
    assert received[1]["id"] == sent[1] and received[1]["attempt"] == 1
    again = one(events, "again")
    assert again["ids"] == [sent[1]] and 5 <= again["seconds"] < 20
    assert received[2]["id"] == sent[1] and received[2]["attempt"] == 2, \
        "an unacked message comes back after its invisible time, delivery attempt 2"
    assert len(received) == 3, "the acked message never comes back, nor the second after its ack"


def test_simple_consumer_group_dead_letters_after_max_attempts(start_node):
    node = grpc_node(start_node)
    create_topics(node, T="NORMAL")
    create_group(node, "G1", retryMaxTimes=1)
    events = run5(node, """
p = producer("T")
r = p.send(message("T", "never-acked", tag="TagD"))
out("sent", id=r.message_id)
c = simple("G1", "T", wait=3)
receive_until(c, lambda g: False, seconds=36, invisible=10)
finish(c, p)
""", timeout=120)
    msg_id = one(events, "sent")["id"]
    attempts = [e["attempt"] for e in kind(events, "received")]
    assert attempts == [1, 2], "retryMaxTimes=1: two deliveries, then the dead-letter queue"
    [dead] = stored(node, "%DLQ%G1")
    assert dead["body"] == "never-acked" and dead["properties"]["UNIQ_KEY"] == msg_id


# -- row 11: FIFO ------------------------------------------------------------------------------

def test_fifo_messages_of_one_group_come_in_order_one_at_a_time(start_node):
    node = grpc_node(start_node)
    create_topics(node, F="FIFO")
    create_group(node, "GF", consumeMessageOrderly=True)
    events = run5(node, """
p = producer("F")
for i in range(3):
    r = p.send(message("F", f"fifo-{i}", group="order-1"))
    out("sent", id=r.message_id)
for i in range(3):
    r = p.send(message("F", f"other-{i}", group="order-2"))
    out("sent2", id=r.message_id)
c = simple("GF", "F", wait=3)
seen = []
end = time.time() + 40
while len(seen) < 6 and time.time() < end:
    got = c.receive(1, 15)
    for m in got:
        out("received", **view(m))
        seen.append(m)
    if got:
        blocked = [x for x in c.receive(32, 15) if x.message_group == got[0].message_group]
        for x in blocked:
            out("received_while_unacked", **view(x))
        c.ack(got[0])
finish(c, p)
""", timeout=120)
    queues = {m["properties"]["__SHARDINGKEY"]: set() for m in stored(node, "F")}
    for m in stored(node, "F"):
        queues[m["properties"]["__SHARDINGKEY"]].add(m["queueId"])
    assert [len(q) for q in queues.values()] == [1, 1], f"one message group, one queue: {queues}"
    received = kind(events, "received")
    for group, prefix in (("order-1", "fifo"), ("order-2", "other")):
        bodies = [e["body"] for e in received if e["group"] == group]
        assert bodies == [f"{prefix}-{i}" for i in range(3)], f"{group} in send order"
    assert kind(events, "received_while_unacked") == [], \
        "an orderly group gets nothing more of a message group until the last one is acked"


# -- row 12: delay -----------------------------------------------------------------------------

def test_delay_message_arrives_after_its_delivery_time(start_node):
    node = grpc_node(start_node)
    create_topics(node, D="DELAY")
    events = run5(node, """
p = producer("D")
c = simple("GD", "D", wait=3)
at = int(time.time()) + 8  # level 3 (10 s): a loaded machine's slow early receive stays early
r = p.send(message("D", "later", at=at))
out("sent", id=r.message_id, at=at, now=time.time())
early = c.receive(16, 15)
out("early", count=len(early), now=time.time())
got = receive_until(c, lambda g: g, seconds=25)
out("arrived", now=time.time())
finish(c, p)
""", timeout=90)
    sent = one(events, "sent")
    assert one(events, "early")["count"] == 0, "nothing before the delivery time"
    [msg] = kind(events, "received")
    assert msg["id"] == sent["id"] and msg["body"] == "later"
    assert one(events, "arrived")["now"] >= sent["at"] - 0.5, "not before its delivery time"
    assert msg["delivery"] and abs(msg["delivery"] - sent["at"] * 1000) < 1500, \
        "delivery_timestamp read back in ms"


# -- rows 13, 14: transactions -----------------------------------------------------------------

def test_transactions_commit_rollback_and_orphan_recovered_by_the_checker(start_node):
    node = grpc_node(start_node, "-D", "transactionCheckInterval=1000",
                     "-D", "transactionTimeOut=1000")
    create_topics(node, X="TRANSACTION")
    events = run5(node, """
checked = threading.Event()
class Checker(TransactionChecker):
    def check(self, m):
        out("checked", id=m.message_id, body=m.body.decode())
        checked.set()
        return TransactionResolution.COMMIT
p = producer("X", checker=Checker())
c = simple("GX", "X", wait=3)
t = p.begin_transaction()
r = p.send(message("X", "committed", tag="TagX", keys=("kx",)), t)
out("sent", what="commit", id=r.message_id, txid=r.transaction_id)
t.commit()
t = p.begin_transaction()
r = p.send(message("X", "rolled-back"), t)
out("sent", what="rollback", id=r.message_id, txid=r.transaction_id)
t.rollback()
t = p.begin_transaction()
r = p.send(message("X", "orphan"), t)
out("sent", what="orphan", id=r.message_id, txid=r.transaction_id)
out("checker_called", ok=checked.wait(30))
receive_until(c, lambda g: len(g) >= 2, seconds=20)
receive_until(c, lambda g: False, seconds=5)
finish(c, p)
""", timeout=120)
    sent = {e["what"]: e for e in kind(events, "sent")}
    for e in sent.values():
        assert ID_5X.match(e["id"]) and e["txid"], e
    assert one(events, "checker_called")["ok"], \
        "the server asked the producer about its orphan (RecoverOrphanedTransactionCommand)"
    assert {e["body"] for e in kind(events, "checked")} == {"orphan"}
    received = {e["body"]: e for e in kind(events, "received")}
    assert set(received) == {"committed", "orphan"}, "the rolled-back message never arrives"
    assert received["committed"]["id"] == sent["commit"]["id"]
    assert received["committed"]["tag"] == "TagX" and received["committed"]["keys"] == ["kx"]
    assert received["orphan"]["id"] == sent["orphan"]["id"]
    assert sorted(m["body"] for m in stored(node, "X")) == ["committed", "orphan"], \
        "the real topic holds the committed messages only"


# -- rows 15-17: PushConsumer ------------------------------------------------------------------

def test_push_consumer_consumes_and_retries_a_failure(start_node):
    node = grpc_node(start_node)
    create_topics(node, T="NORMAL")
    events = run5(node, """
lock = threading.Lock()
seen = []
class Listener(MessageListener):
    def consume(self, m):
        with lock:
            first = m.body == b"push-1" and not any(v["body"] == "push-1" for v in seen)
            seen.append(view(m))
        out("consumed", fail=first, **view(m))
        return ConsumeResult.FAILURE if first else ConsumeResult.SUCCESS
t = time.time()
c = PushConsumer(cfg(), "G1", Listener(), {"T": FilterExpression()})
c.startup()
out("started", seconds=time.time() - t)
p = producer("T")
ids = [p.send(message("T", f"push-{i}", tag="TagP", props={"idx": str(i)})).message_id for i in range(5)]
out("sent", ids=ids)
end = time.time() + 30
while time.time() < end:
    with lock:
        if len({v["body"] for v in seen}) == 5 and len(seen) >= 6: break
    time.sleep(0.1)
time.sleep(2)
out("connections")
wait_file("stop", 20)
finish(p, c)
""", timeout=120)
    assert one(events, "started")["seconds"] < 10, "push start-up got its settings in time"
    ids = one(events, "sent")["ids"]
    consumed = kind(events, "consumed")
    assert sorted(e["id"] for e in consumed if not e["fail"]) == sorted(ids), \
        "every message consumed successfully exactly once"
    failed = [e for e in consumed if e["body"] == "push-1"]
    assert [(e["fail"], e["attempt"]) for e in failed] == [(True, 1), (False, 2)], \
        "FAILURE is a nack: redelivered with delivery attempt 2"
    retry = failed[1]["t"] - failed[0]["t"]
    assert retry < 10, f"the first customized backoff step is 1 s (took {retry:.1f}s)"
    for e in consumed:
        assert e["tag"] == "TagP" and e["props"] == {"idx": e["body"].split("-")[1]}


def test_push_consumer_registers_and_unregisters(start_node):
    node = grpc_node(start_node)
    create_topics(node, T="NORMAL")
    with start_peer("grpc5", script("""
class Listener(MessageListener):
    def consume(self, m):
        return ConsumeResult.SUCCESS
c = PushConsumer(cfg(), "GREG", Listener(), {"T": FilterExpression()})
c.startup()
out("started")
wait_file("stop", 40)
finish(c)
"""), args=[node.addrs["grpc"]]) as peer:
        peer.wait_line(r'"kind": "started"', timeout=20)
        time.sleep(2)  # the first heartbeat and settings re-sync come after ~1 s
        live = consumers_of(node, "GREG")
        (peer.home / "stop").touch()
        run = peer.finish(timeout=30)
    assert run.returncode == 0, run.explain()
    assert len(live) == 1, f"one 5.x push consumer in GREG: {live}"
    assert consumers_of(node, "GREG") == [], "NotifyClientTermination{group} unregisters it"


def test_fifo_push_consumer_forwards_to_the_dead_letter_queue(start_node):
    node = grpc_node(start_node)
    create_topics(node, F="FIFO")
    create_group(node, "GF", consumeMessageOrderly=True, retryMaxTimes=1)
    events = run5(node, """
class Listener(MessageListener):
    def consume(self, m):
        out("consumed", **view(m))
        return ConsumeResult.FAILURE
c = PushConsumer(cfg(), "GF", Listener(), {"F": FilterExpression()})
c.startup()
p = producer("F")
r = p.send(message("F", "doomed", group="fifo-dlq"))
out("sent", id=r.message_id)
time.sleep(15)
finish(p, c)
""", timeout=90)
    msg_id = one(events, "sent")["id"]
    consumed = kind(events, "consumed")
    assert consumed and all(e["id"] == msg_id for e in consumed)
    assert len(consumed) <= 2, "max attempts 2 (retryMaxTimes 1 + 1), then the DLQ"
    [dead] = stored(node, "%DLQ%GF")
    assert dead["body"] == "doomed" and dead["properties"]["UNIQ_KEY"] == msg_id

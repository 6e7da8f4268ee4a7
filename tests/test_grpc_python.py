"""The official RocketMQ 5.x Python client (PyPI rocketmq-python-client 5.1.2, written by others)
against rmqnode's gRPC endpoint (spec/grpc-proxy.md §9): producers (normal, FIFO, delay,
transactions and the orphan checker), SimpleConsumer (receive, ack, change invisible duration,
redelivery, DLQ), PushConsumer (assignment, consumption, retry, FIFO DLQ), a 4 MiB body, a
client killed mid-stream, a node restarted under a consumer, and messages crossing between the
5.x protocol and the remoting clients (C++ 1.x, ali-ons, rmqctl).

Each scenario is one client process (tests/peers.py, with a timeout) printing JSON lines; the
tests assert on them and on what the node stored. Long polls are kept short (3 s)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time


from peers import run_alions, run_cpp, run_grpc5, start_peer
from remoting import call
from rmqnode.net import fastjson
from rmqnode.net.codes import RequestCode

ROLES = ("namesrv", "broker", "grpc")
ID_5X = re.compile(r"^01[0-9A-F]{32}$")  # a 5.x client's message id (spec §5.1)


# -- the node and what it stored -------------------------------------------------------------

def grpc_node(start_node, *extra: str, grpc_port: int = 0, home=None):
    """A node serving namesrv, broker and gRPC on free loopback ports."""
    return start_node("--namesrv-port", "0", "--listen-port", "0", "--grpc-port", str(grpc_port),
                      *extra, roles=ROLES, home=home)


def rmqctl(node, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rmqctl.cli", "-n", node.namesrv, *args],
                          capture_output=True, text=True, timeout=timeout)


def create_topics(node, **kinds: str) -> None:
    """create_topics(node, T="NORMAL", F="FIFO"): gRPC route queries never create topics."""
    for name, kind in kinds.items():
        r = rmqctl(node, "topic", "create", name, "--type", kind)
        assert r.returncode == 0, f"rmqctl topic create {name} --type {kind}: {r.stdout}{r.stderr}"


def create_group(node, group: str, **config: object) -> None:
    """A subscription group with its config (retryMaxTimes, consumeMessageOrderly...), through
    UPDATE_AND_CREATE_SUBSCRIPTIONGROUP as mqadmin sends it."""
    body = fastjson.dumpb({"groupName": group, **config})
    resp = call(node.broker, RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, body=body)
    assert resp.code == 0, f"create group {group}: {resp.code} {resp.remark}"


def stored(node, topic: str, group: str = "rmq-test-check") -> list[dict]:
    """Every message of `topic` as `rmqctl -o ndjson consume --from first` prints it."""
    r = rmqctl(node, "-o", "ndjson", "consume", topic, "-g", group, "--from", "first", "-e")
    assert r.returncode == 0, f"rmqctl consume {topic}: exit {r.returncode}\n{r.stdout}{r.stderr}"
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def producers_of(node, group: str) -> list[dict]:
    resp = call(node.broker, RequestCode.GET_PRODUCER_CONNECTION_LIST, {"producerGroup": group})
    if resp.code != 0:
        return []
    return fastjson.loads(resp.body).get("connectionSet", [])


def consumers_of(node, group: str) -> list[dict]:
    resp = call(node.broker, RequestCode.GET_CONSUMER_CONNECTION_LIST, {"consumerGroup": group})
    if resp.code != 0:
        return []
    return fastjson.loads(resp.body).get("connectionSet", [])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the client side -------------------------------------------------------------------------

PRELUDE = r'''
import json, os, sys, threading, time, traceback
from rocketmq import (ClientConfiguration, ConsumeResult, Credentials, FilterExpression, Message,
                      MessageListener, Producer, PushConsumer, SimpleConsumer, TransactionChecker,
                      TransactionResolution)
EP = sys.argv[1]
T0 = time.time()
_OUT = threading.Lock()
def out(kind, **kw):  # one whole line per event, whichever thread prints it
    line = json.dumps(dict(kind=kind, t=round(time.time() - T0, 3), **kw), default=str) + "\n"
    with _OUT:
        sys.stdout.write(line)
        sys.stdout.flush()
def cfg():
    return ClientConfiguration(EP, Credentials(), request_timeout=3)
def message(topic, body, tag=None, keys=(), props=None, group=None, at=None):
    m = Message()
    m.topic = topic
    m.body = body if isinstance(body, bytes) else body.encode()
    if tag: m.tag = tag
    for k in keys: m.keys = k
    for k, v in (props or {}).items(): m.add_property(k, v)
    if group: m.message_group = group
    if at: m.delivery_timestamp = at
    return m
def view(m):
    body = m.body or b""
    return dict(id=m.message_id, topic=m.topic, tag=m.tag, keys=sorted(m.keys),
                props=dict(m.properties), size=len(body), attempt=m.delivery_attempt,
                body=body.decode("utf-8", "replace") if len(body) < 2000 else None,
                group=m.message_group, corrupted=m.corrupted, born=m.born_timestamp,
                delivery=m.delivery_timestamp, type=m.message_type)
def error(e):
    return dict(type=type(e).__name__, error=str(e), code=getattr(e, "code", None))
def producer(*topics, checker=None):
    p = Producer(cfg(), topics=list(topics), checker=checker)
    p.startup()
    return p
def simple(group, *topics, wait=3):
    c = SimpleConsumer(cfg(), group, {t: FilterExpression() for t in topics}, await_duration=wait)
    c.startup()
    return c
def receive_until(c, pred, seconds=20, invisible=15, batch=16):
    """Receive (printing each message) until pred(all received) or the time is up."""
    got, end = [], time.time() + seconds
    while not pred(got) and time.time() < end:
        for m in c.receive(batch, invisible):
            got.append(m)
            out("received", **view(m))
    return got
def wait_file(name, seconds=60):
    end = time.time() + seconds
    while not os.path.exists(name) and time.time() < end:
        time.sleep(0.05)
    return os.path.exists(name)
def finish(*clients):
    for c in clients:
        try:
            c.shutdown()
        except Exception as e:
            out("shutdown_error", **error(e))
    out("done")
    sys.stdout.flush()
    os._exit(0)  # the client's scheduler threads would keep the interpreter alive
'''


def script(body: str) -> str:
    return PRELUDE + "\ntry:\n" + "\n".join("    " + line for line in body.strip("\n").splitlines()) \
        + "\nexcept Exception as e:\n    out('error', trace=traceback.format_exc(), **error(e))\n" \
        + "    sys.stdout.flush()\n    os._exit(1)\n"


def events_of(run) -> list[dict]:
    return [json.loads(line) for line in run.lines if line.startswith("{")]


def run5(node, body: str, timeout: float = 90, args=()) -> list[dict]:
    """Run a 5.x client script against the node's gRPC address; its events once it exited 0."""
    run = run_grpc5(script(body), timeout=timeout, args=[node.addrs["grpc"], *args])
    assert run.returncode == 0 and any(e["kind"] == "done" for e in events_of(run)), run.explain()
    return events_of(run)


def kind(events: list[dict], name: str) -> list[dict]:
    return [e for e in events if e["kind"] == name]


def one(events: list[dict], name: str) -> dict:
    found = kind(events, name)
    assert len(found) == 1, f"expected one {name!r} event, got {found}\nall: {events}"
    return found[0]


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


# -- a 4 MiB body ------------------------------------------------------------------------------

def test_a_4_mib_body_goes_through_both_ways(start_node):
    node = grpc_node(start_node)
    create_topics(node, T="NORMAL")
    events = run5(node, """
import hashlib
body = bytes(range(256)) * (4 * 1024 * 4)
assert len(body) == 4 << 20
p = producer("T")
r = p.send(message("T", body, tag="Big"))
out("sent", id=r.message_id, md5=hashlib.md5(body).hexdigest())
c = simple("GBIG", "T", wait=3)
[m] = receive_until(c, lambda g: g, seconds=20)
out("big", id=m.message_id, size=len(m.body), md5=hashlib.md5(m.body).hexdigest(), corrupted=m.corrupted)
c.ack(m)
finish(c, p)
""", timeout=90)
    sent, big = one(events, "sent"), one(events, "big")
    assert big["id"] == sent["id"] and big["size"] == 4 << 20
    assert big["md5"] == sent["md5"] and not big["corrupted"]


# -- a client killed mid-stream, a node restarted under a consumer -----------------------------

def test_a_client_killed_mid_stream_leaves_the_node_serving(start_node):
    node = grpc_node(start_node)
    create_topics(node, T="NORMAL")
    with start_peer("grpc5", script("""
p = producer("T")
r = p.send(message("T", "held", tag="K"))
out("sent", id=r.message_id)
c = simple("GK", "T", wait=10)
[m] = receive_until(c, lambda g: g, seconds=15, invisible=10)
out("polling")
while True:
    c.receive(16, 10)  # killed in here, mid long poll
"""), args=[node.addrs["grpc"]]) as peer:
        peer.wait_line(r'"kind": "polling"', timeout=30)
        time.sleep(1.5)
        peer.kill()
        first = events_of(peer.finish(timeout=5))
    msg_id = one(first, "sent")["id"]
    assert node.proc.poll() is None, "the node survived"
    events = run5(node, """
p = producer("T")
r = p.send(message("T", "after", tag="K"))
out("sent", id=r.message_id)
c = simple("GK", "T", wait=3)
receive_until(c, lambda g: len(g) >= 2, seconds=30, invisible=10)
finish(c, p)
""", timeout=90)
    got = {e["body"]: e for e in kind(events, "received")}
    assert set(got) == {"held", "after"}
    assert got["held"]["id"] == msg_id and got["held"]["attempt"] == 2, \
        "the dead client's message comes back after its invisible time"
    assert got["after"]["attempt"] == 1


def test_a_slow_push_listener_keeps_its_message_past_the_default_invisible_time(start_node):
    """A push consumer's receive carries auto_renew and no invisible time: the server keeps the
    message invisible while the listener works (spec §4.6 auto-renew), here 70 s, past the 60 s
    default, so it is neither delivered twice nor is the late ack refused."""
    node = grpc_node(start_node)
    create_topics(node, T="NORMAL")
    events = run5(node, """
calls = []
class Slow(MessageListener):
    def consume(self, m):
        calls.append(m.message_id)
        out("consuming", **view(m))
        if len(calls) == 1:
            time.sleep(70)
        out("consumed", id=m.message_id)
        return ConsumeResult.SUCCESS
c = PushConsumer(cfg(), "GSLOW", Slow(), {"T": FilterExpression()})
c.startup()
p = producer("T")
out("sent", id=p.send(message("T", "slow")).message_id)
time.sleep(80)
out("calls", n=len(calls))
finish(p, c)
""", timeout=150)
    consuming = kind(events, "consuming")
    assert [e["attempt"] for e in consuming] == [1], \
        f"one delivery while the listener works: {consuming}"


def test_a_push_consumer_killed_while_consuming_hands_its_message_on(start_node):
    """A push consumer holds an auto-renewed message (no invisible time of its own) and is
    killed: the message reaches the next member of the group, with delivery attempt 2."""
    node = grpc_node(start_node)
    create_topics(node, T="NORMAL")
    with start_peer("grpc5", script("""
class Stuck(MessageListener):
    def consume(self, m):
        out("holding", **view(m))
        time.sleep(3600)
c = PushConsumer(cfg(), "GKP", Stuck(), {"T": FilterExpression()})
c.startup()
p = producer("T")
r = p.send(message("T", "handed-on"))
out("sent", id=r.message_id)
time.sleep(3600)
"""), args=[node.addrs["grpc"]]) as first:
        first.wait_line(r'"kind": "holding"', timeout=30)
        first.kill()
        held = events_of(first.finish(timeout=5))
    killed = time.monotonic()
    msg_id = one(held, "sent")["id"]
    events = run5(node, """
got = []
class Listener(MessageListener):
    def consume(self, m):
        got.append(m)
        out("received", **view(m))
        return ConsumeResult.SUCCESS
c = PushConsumer(cfg(), "GKP", Listener(), {"T": FilterExpression()})
c.startup()
end = time.time() + 100
while not got and time.time() < end:
    time.sleep(0.1)
finish(c)
""", timeout=150)
    took = time.monotonic() - killed
    [again] = kind(events, "received")
    assert again["id"] == msg_id and again["attempt"] == 2, again
    assert took < 30, f"handed on {took:.1f}s after the kill: a client without a channel has " \
                      "its auto-renewed handles released (1 s), not left to the 60 s default " \
                      "invisible time (spec §4.6 auto-renew, §4.11)"


def test_node_restart_under_a_5x_consumer_loses_nothing_and_repeats_no_ack(start_node, tmp_path):
    port = free_port()
    home = tmp_path / "home"
    home.mkdir()
    node = grpc_node(start_node, grpc_port=port, home=home)
    create_topics(node, T="NORMAL")
    with start_peer("grpc5", script("""
p = producer("T")
ids = [p.send(message("T", f"r-{i}", props={"idx": str(i)})).message_id for i in range(10)]
out("sent", ids=ids)
c = simple("GR", "T", wait=3)
got = receive_until(c, lambda g: len(g) >= 10, seconds=20, invisible=10)
for m in got:
    if int(m.properties["idx"]) < 5:
        c.ack(m)
out("acked_half", ids=sorted(m.message_id for m in got if int(m.properties["idx"]) < 5))
wait_file("restarted", 60)
out("resumed")
end = time.time() + 40
while time.time() < end and not os.path.exists("stop"):
    try:
        for m in c.receive(16, 30):
            out("received", **view(m))
            c.ack(m)
    except Exception as e:
        out("receive_error", **error(e))
        time.sleep(0.5)
finish(c, p)
"""), args=[f"127.0.0.1:{port}"]) as peer:
        peer.wait_line(r'"kind": "acked_half"', timeout=40)
        assert node.stop() == 0
        node = grpc_node(start_node, grpc_port=port, home=home)
        (peer.home / "restarted").touch()
        peer.wait_line(r'"kind": "resumed"', timeout=10)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and \
                peer.stdout.split('"kind": "resumed"')[1].count('"kind": "received"') < 5:
            time.sleep(0.2)
        time.sleep(3)
        (peer.home / "stop").touch()
        run = peer.finish(timeout=30)
    assert run.returncode == 0, run.explain()
    events = events_of(run)
    before = kind(events[:events.index(one(events, "resumed"))], "received")
    assert sorted(int(e["props"]["idx"]) for e in before) == list(range(10))
    received = kind(events[events.index(one(events, "resumed")):], "received")
    idx = sorted(int(e["props"]["idx"]) for e in received)
    assert idx == [5, 6, 7, 8, 9], \
        f"after the restart: every unacked message once, no acked one ({idx})"
    assert all(e["attempt"] >= 2 for e in received)


# -- cross-protocol: 5.x producer -> remoting consumers, C++ producer -> 5.x consumers --------

def sent_by_5x(node, topic: str, n: int = 5) -> list[dict]:
    events = run5(node, f"""
p = producer({topic!r})
for i in range({n}):
    r = p.send(message({topic!r}, f"x-{{i}}-\\u00e9", tag="TagA" if i % 2 else "TagB",
                       keys=(f"key-{{i}}", "grp"), props={{"idx": str(i), "lang": "\\u65e5"}}))
    out("sent", i=i, id=r.message_id)
finish(p)
""")
    return kind(events, "sent")


def test_5x_producer_to_cpp_push_consumer(start_node):
    node = grpc_node(start_node)
    create_topics(node, T="NORMAL")
    sent = sent_by_5x(node, "T")
    run = run_cpp(f"""
import json, threading, time
from rocketmq.client import PushConsumer
got, lock = [], threading.Lock()
def cb(msg):
    with lock:
        got.append(dict(id=msg.id, body=msg.body.decode(), tags=msg.tags.decode(),
                        keys=msg.keys.decode(), idx=msg.get_property("idx").decode(),
                        lang=msg.get_property("lang").decode(), reconsume=msg.reconsume_times))
c = PushConsumer("CPP_FROM_5X")
c.set_namesrv_addr({node.namesrv!r})
c.subscribe("T", cb, "*")
c.start()
end = time.time() + 30
while time.time() < end and len(got) < 5:
    time.sleep(0.1)
time.sleep(1)
c.shutdown()
for g in got:
    print(json.dumps(g), flush=True)
""", timeout=60)
    assert run.returncode == 0, run.explain()
    got = sorted((json.loads(line) for line in run.lines if line.startswith("{")),
                 key=lambda g: int(g["idx"]))
    assert [int(g["idx"]) for g in got] == list(range(5)), run.explain()
    for g, s in zip(got, sent):
        i = s["i"]
        assert g["id"] == s["id"], "the 5.x message id is the message's id for 4.x clients too"
        assert g["body"] == f"x-{i}-\u00e9" and g["lang"] == "\u65e5"
        assert g["tags"] == ("TagA" if i % 2 else "TagB")
        assert sorted(g["keys"].split()) == sorted([f"key-{i}", "grp"])


def test_5x_producer_to_alions_consumer(start_node):
    node = grpc_node(start_node)
    create_topics(node, T="NORMAL")
    sent = sent_by_5x(node, "T")
    run = run_alions("""
const { Consumer } = require('ali-ons');
const logger = { info() {}, warn() {}, error() {}, debug() {} };
(async () => {
  const consumer = new Consumer({ httpclient: {}, logger, nameSrv: process.argv[2],
    consumerGroup: 'ONS_FROM_5X', consumeFromWhere: 'CONSUME_FROM_FIRST_OFFSET' });
  consumer.on('error', () => {});
  const got = [];
  consumer.subscribe('T', '*', async msg => {
    got.push({ id: msg.msgId, uniq: msg.properties.UNIQ_KEY, body: msg.body.toString(),
               tags: msg.tags, keys: msg.keys, idx: msg.properties.idx, lang: msg.properties.lang });
  });
  await consumer.ready();
  const deadline = Date.now() + 40000;
  while (got.length < 5 && Date.now() < deadline) await new Promise(r => setTimeout(r, 100));
  for (const g of got) console.log(JSON.stringify(g));
  await consumer.close();
  process.exit(0);
})().catch(e => { console.log(String(e && e.stack || e)); process.exit(1); });
""", timeout=90, args=[node.namesrv])
    assert run.returncode == 0, run.explain()
    got = sorted((json.loads(line) for line in run.lines if line.startswith("{")),
                 key=lambda g: int(g["idx"]))
    assert [int(g["idx"]) for g in got] == list(range(5)), run.explain()
    for g, s in zip(got, sent):
        i = s["i"]
        # ali-ons hands out the broker's offset id as msgId whatever the sender (as it does for
        # messages of 4.x producers); the sender's id is the UNIQ_KEY property, as in Java.
        assert g["uniq"] == s["id"], g
        assert re.fullmatch(r"[0-9A-F]{32}", g["id"]), g
        assert g["body"] == f"x-{i}-\u00e9" and g["lang"] == "\u65e5"
        assert g["tags"] == ("TagA" if i % 2 else "TagB")
        assert sorted(g["keys"].split()) == sorted([f"key-{i}", "grp"])  # space-separated


CPP_SENDS = """
import json, sys, time
from rocketmq.client import Producer, Message
p = Producer("PG_CPP_TO_5X", timeout=5000)
p.set_namesrv_addr(sys.argv[1])
p.start()
time.sleep(0.5)
for i in range(5):
    m = Message("T")
    m.set_keys(f"key-{i} grp")
    m.set_tags("TagA" if i % 2 else "TagB")
    m.set_property("idx", str(i))
    m.set_property("lang", "\u65e5")
    m.set_body(f"c-{i}-\u00e9".encode())
    r = p.send_sync(m)
    print(json.dumps(dict(i=i, id=r.msg_id, status=int(r.status))), flush=True)
p.shutdown()
"""


def sent_by_cpp(node) -> list[dict]:
    run = run_cpp(CPP_SENDS, timeout=60, args=[node.namesrv])
    assert run.returncode == 0, run.explain()
    sent = [json.loads(line) for line in run.lines if line.startswith("{")]
    assert [s["status"] for s in sent] == [0] * 5, run.explain()
    return sent


def check_from_cpp(received: list[dict], sent: list[dict]) -> None:
    by_idx = {int(e["props"]["idx"]): e for e in received}
    assert sorted(by_idx) == list(range(5)), received
    for s in sent:
        e = by_idx[s["i"]]
        i = s["i"]
        assert e["id"] == s["id"], "a 4.x client's message id (UNIQ_KEY) is the 5.x message id"
        assert e["body"] == f"c-{i}-\u00e9" and e["tag"] == ("TagA" if i % 2 else "TagB")
        assert e["keys"] == sorted([f"key-{i}", "grp"]), "KEYS split on spaces"
        assert e["props"] == {"idx": str(i), "lang": "\u65e5"}, "user properties only"
        assert e["attempt"] == 1 and not e["corrupted"]


def test_cpp_producer_to_5x_simple_consumer(start_node):
    node = grpc_node(start_node)
    create_topics(node, T="NORMAL")
    sent = sent_by_cpp(node)
    events = run5(node, """
c = simple("G5_FROM_CPP", "T", wait=3)
for m in receive_until(c, lambda g: len(g) >= 5, seconds=20):
    c.ack(m)
f = SimpleConsumer(cfg(), "G5_TAG_A", {"T": FilterExpression("TagA")}, await_duration=3)
f.startup()
got = []
end = time.time() + 12
while time.time() < end:
    for m in f.receive(16, 15):
        out("filtered", **view(m))
        f.ack(m)
finish(c, f)
""")
    check_from_cpp(kind(events, "received"), sent)
    filtered = sorted(int(e["props"]["idx"]) for e in kind(events, "filtered"))
    assert filtered == [1, 3], "a TAG filter expression: TagA messages only, each once"


def test_cpp_producer_to_5x_push_consumer(start_node):
    node = grpc_node(start_node)
    create_topics(node, T="NORMAL")
    sent = sent_by_cpp(node)
    events = run5(node, """
seen = []
class Listener(MessageListener):
    def consume(self, m):
        seen.append(m)
        out("received", **view(m))
        return ConsumeResult.SUCCESS
c = PushConsumer(cfg(), "G5P_FROM_CPP", Listener(), {"T": FilterExpression()})
c.startup()
end = time.time() + 30
while len(seen) < 5 and time.time() < end:
    time.sleep(0.1)
time.sleep(1)
finish(c)
""")
    check_from_cpp(kind(events, "received"), sent)

"""What the tests of the official RocketMQ 5.x Python client (PyPI rocketmq-python-client 5.1.2)
against rmqnode's gRPC endpoint share: a node serving gRPC, what it stored, and the client side
(PRELUDE, a script's JSON-line events). Each scenario is one client process (tests/peers.py,
with a timeout) printing JSON lines; the tests assert on them and on what the node stored."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys


from peers import run_grpc5
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

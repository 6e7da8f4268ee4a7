"""Messages crossing between the 5.x protocol and the remoting clients: the official 5.x Python
client's messages consumed by the C++ 1.x client and ali-ons, and the C++ client's consumed by
5.x consumers, with their ids, keys, tags and properties intact."""

from __future__ import annotations

import json
import re

from grpc5 import create_topics, grpc_node, kind, run5
from peers import run_alions, run_cpp


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


def received_in_order(run, n: int) -> list[dict]:
    """The messages a remoting consumer printed (one JSON line each), by their `idx`
    property: exactly the n that were sent."""
    assert run.returncode == 0, run.explain()
    got = sorted((json.loads(line) for line in run.lines if line.startswith("{")),
                 key=lambda g: int(g["idx"]))
    assert [int(g["idx"]) for g in got] == list(range(n)), run.explain()
    return got


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
    got = received_in_order(run, 5)
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
    got = received_in_order(run, 5)
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

"""ali-ons (npm ali-ons@3.12.0), a RocketMQ client written in JavaScript by others, against
rmqnode: producer, consumer from the first offset with a tag filter, and a retry."""

from __future__ import annotations

import json

from peers import run_alions
from remoting import send

FAST_DELAYS = " ".join(["1s"] * 18)  # retries come back after a second, not 10 s

HEAD = """
const { Producer, Consumer, Message } = require('ali-ons');
const httpclient = {};
const logger = { info() {}, warn() {}, error() {}, debug() {} };
const nameSrv = %r;
const out = o => console.log(JSON.stringify(o));
(async () => {
"""
TAIL = """
  process.exit(0);
})().catch(e => { out({ kind: 'error', error: String(e && e.stack || e) }); process.exit(1); });
"""


def ons_script(ns: str, body: str) -> str:
    """An ali-ons program: `body` runs in an async main that has `nameSrv`, `httpclient`, a
    silent `logger` and `out(obj)` (one JSON line), and exits 0 after it (1 on an error)."""
    return HEAD % ns + body + TAIL


def run_ons(start_node, topic: str, body: str):
    """A node with one-second retry delays and `topic` created (ali-ons never creates topics:
    made to exist first, as an operator would), and the events the ali-ons `body` printed
    there, once it exited 0."""
    node = start_node("--namesrv-port", "0", "--listen-port", "0",
                      "-D", f"messageDelayLevel={FAST_DELAYS}")
    send(node.broker, topic, b"init", TAGS="Init")
    result = run_alions(ons_script(node.namesrv, body), timeout=90)
    assert result.returncode == 0, result.explain()
    return node, [json.loads(line) for line in result.lines if line.startswith("{")]


BODY = """
  const producer = new Producer({ httpclient, logger, nameSrv, producerGroup: 'PID_ONS_T' });
  await producer.ready();
  for (let i = 0; i < 20; i++) {
    const msg = new Message('OnsT', i % 2 ? 'TagA' : 'TagB', Buffer.from('ons-' + i + '-\\u00e9'));
    msg.keys = ['k' + i, 'g' + (i % 3)];
    msg.properties.idx = String(i);
    const r = await producer.send(msg);
    out({ kind: 'sent', status: r.sendStatus, id: r.msgId, queue: r.messageQueue.queueId,
          offset: r.queueOffset });
  }
  const consumer = new Consumer({ httpclient, logger, nameSrv, consumerGroup: 'CID_ONS_T',
                                  consumeFromWhere: 'CONSUME_FROM_FIRST_OFFSET' });
  consumer.on('error', () => {});
  const got = [];
  let failed = false;
  consumer.subscribe('OnsT', 'TagA', async msg => {
    const idx = msg.properties.idx;
    if (idx === '5' && !failed) { failed = true; throw new Error('ask for a retry'); }
    got.push({ idx, reconsume: msg.reconsumeTimes, topic: msg.topic, tags: msg.tags,
               keys: msg.keys, body: msg.body.toString() });
  });
  await consumer.ready();
  const deadline = Date.now() + 40000;
  while (got.length < 10 && Date.now() < deadline) await new Promise(r => setTimeout(r, 100));
  out({ kind: 'got', got });
  await consumer.close();
  await producer.close();
"""


def test_alions_produces_consumes_and_retries(start_node):
    _, events = run_ons(start_node, "OnsT", BODY)
    sent = [e for e in events if e["kind"] == "sent"]
    assert len(sent) == 20 and all(e["status"] == "SEND_OK" for e in sent)
    [got] = [e["got"] for e in events if e["kind"] == "got"]
    assert sorted(int(g["idx"]) for g in got) == list(range(1, 20, 2)), \
        "every TagA message once (the retried one after its retry), no TagB"
    for g in got:
        i = int(g["idx"])
        assert g["body"] == f"ons-{i}-\u00e9" and g["tags"] == "TagA" and g["topic"] == "OnsT"
        assert g["keys"] == f"k{i} g{i % 3}"  # ali-ons hands keys back space-separated
        assert g["reconsume"] == (1 if i == 5 else 0)

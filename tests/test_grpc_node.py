"""The official RocketMQ 5.x Node.js client (npm rocketmq-client-nodejs 1.0.8, written by others)
against rmqnode's gRPC endpoint, spec/grpc-proxy.md §9 row 21: producer start-up and send,
SimpleConsumer receive / change invisible duration / ack, transactions with the orphan checker,
and a PushConsumer. Node's quirks (§7): `x-mq-language: HTTP`, no namespace or authorization
headers, only queue 0 used, an MD5 body digest needed on every delivered message, an
exponential producer backoff in the settings reply (else the process dies).

Each scenario is one `node` process (tests/peers.py, with a timeout) printing JSON lines."""

from __future__ import annotations

import json

from peers import run_grpcnode
from grpc5 import ID_5X, create_group, create_topics, grpc_node, kind, one, stored

HEAD = """
const { Producer, SimpleConsumer, PushConsumer, ConsumeResult } = require('rocketmq-client-nodejs');
const endpoints = process.argv[2];
const T0 = Date.now();
const out = (kind, o = {}) => console.log(JSON.stringify({ kind, t: (Date.now() - T0) / 1000, ...o }));
const sleep = ms => new Promise(r => setTimeout(r, ms));
const view = m => ({ id: m.messageId, topic: m.topic, tag: m.tag || null, keys: [...m.keys].sort(),
  props: Object.fromEntries(m.properties), body: m.body.toString(), attempt: m.deliveryAttempt,
  group: m.messageGroup || null, corrupted: !!m.corrupted });
async function receiveUntil(c, pred, ms, invisible = 15000) {
  const got = [];
  const end = Date.now() + ms;
  while (!pred(got) && Date.now() < end) {
    for (const m of await c.receive(16, invisible)) { got.push(m); out('received', view(m)); }
  }
  return got;
}
(async () => {
"""
TAIL = """
  out('done');
  process.exit(0);
})().catch(e => { out('error', { error: String(e && e.stack || e), code: e && e.code });
                  process.exit(1); });
"""


def run_node(node, body: str, timeout: float = 90) -> list[dict]:
    run = run_grpcnode(HEAD + body + TAIL, timeout=timeout, args=[node.addrs["grpc"]])
    events = [json.loads(line) for line in run.lines if line.startswith("{")]
    assert run.returncode == 0 and any(e["kind"] == "done" for e in events), run.explain()
    return events


def test_grpcnode_client_is_installed():
    run = run_grpcnode("const m = require('rocketmq-client-nodejs');\n"
                       "console.log(typeof m.Producer, typeof m.SimpleConsumer,\n"
                       "            require('rocketmq-client-nodejs/package.json').version);\n",
                       timeout=30)
    assert run.lines == ["function function 1.0.8"], run.explain()


def test_node_producer_and_simple_consumer(start_node):
    node = grpc_node(start_node)
    create_topics(node, T="NORMAL")
    events = run_node(node, """
  const p = new Producer({ endpoints, topics: ['T'] });
  let t = Date.now();
  await p.startup();
  out('started', { seconds: (Date.now() - t) / 1000 });
  const ids = [];
  for (let i = 0; i < 3; i++) {
    const r = await p.send({ topic: 'T', tag: 'TagN', keys: ['kn' + i, 'node'],
      properties: new Map([['idx', String(i)], ['lang', '\\u65e5']]),
      body: Buffer.from('node-' + i + '-\\u00e9') });
    out('sent', { id: r.messageId, offset: r.offset });
    ids.push(r.messageId);
  }
  const c = new SimpleConsumer({ endpoints, consumerGroup: 'GN', awaitDuration: 3000,
                                 subscriptions: new Map([['T', '*']]) });
  await c.startup();
  const got = await receiveUntil(c, g => g.length >= 3, 20000);
  t = Date.now();
  const empty = await c.receive(16, 15000);
  out('empty_receive', { count: empty.length, seconds: (Date.now() - t) / 1000 });
  const [first, ...rest] = got;
  await c.changeInvisibleDuration(first, 5000);
  await c.ack(first);
  for (const m of rest) await c.ack(m);
  out('acked');
  await sleep(6000);
  const late = await c.receive(16, 15000);
  out('late', { ids: late.map(m => m.messageId) });
  await c.shutdown();
  await p.shutdown();
""")
    assert one(events, "started")["seconds"] < 5
    sent = kind(events, "sent")
    assert len(sent) == 3 and all(ID_5X.match(s["id"]) and s["offset"] >= 0 for s in sent)
    received = sorted(kind(events, "received"), key=lambda e: e["body"])
    assert [e["id"] for e in received] == [s["id"] for s in sent]
    for i, e in enumerate(received):
        assert e["body"] == f"node-{i}-\u00e9" and e["tag"] == "TagN" and not e["corrupted"]
        assert e["keys"] == sorted([f"kn{i}", "node"]) and e["attempt"] == 1
        assert e["props"] == {"idx": str(i), "lang": "\u65e5"}
    assert one(events, "empty_receive")["count"] == 0
    assert one(events, "late")["ids"] == [], "acked (after a change of invisibility): gone"
    bodies = sorted(m["body"] for m in stored(node, "T"))
    assert bodies == [f"node-{i}-\u00e9" for i in range(3)]
    for m in stored(node, "T"):
        assert m["properties"]["PGROUP"] == "T" and ID_5X.match(m["properties"]["UNIQ_KEY"])


def test_node_transactions_and_orphan_checker(start_node):
    node = grpc_node(start_node, "-D", "transactionCheckInterval=1000",
                     "-D", "transactionTimeOut=1000")
    create_topics(node, X="TRANSACTION")
    events = run_node(node, """
  let checked = null;
  const checker = { async check(m) { out('checked', { id: m.messageId, body: m.body.toString() });
                                      checked = m.messageId; return 1; /* COMMIT */ } };
  const p = new Producer({ endpoints, topics: ['X'], checker });
  await p.startup();
  const c = new SimpleConsumer({ endpoints, consumerGroup: 'GNX', awaitDuration: 3000,
                                 subscriptions: new Map([['X', '*']]) });
  await c.startup();
  for (const what of ['commit', 'rollback', 'orphan']) {
    const tx = p.beginTransaction();
    const r = await p.send({ topic: 'X', tag: 'TagX', body: Buffer.from(what) }, tx);
    out('sent', { what, id: r.messageId, txid: r.transactionId });
    if (what === 'commit') await tx.commit();
    if (what === 'rollback') await tx.rollback();
  }
  const end = Date.now() + 30000;
  while (!checked && Date.now() < end) await sleep(100);
  out('checker_called', { ok: !!checked });
  const got = await receiveUntil(c, g => g.length >= 2, 20000);
  for (const m of got) await c.ack(m);
  await receiveUntil(c, () => false, 4000);
  await c.shutdown();
  await p.shutdown();
""", timeout=120)
    sent = {e["what"]: e for e in kind(events, "sent")}
    assert one(events, "checker_called")["ok"], "RecoverOrphanedTransactionCommand reached Node"
    assert [e["body"] for e in kind(events, "checked")] == ["orphan"]
    received = {e["body"]: e["id"] for e in kind(events, "received")}
    assert received == {"commit": sent["commit"]["id"], "orphan": sent["orphan"]["id"]}


def test_node_push_consumer(start_node):
    node = grpc_node(start_node)
    create_topics(node, T="NORMAL")
    create_group(node, "GNP")
    events = run_node(node, """
  const seen = [];
  const c = new PushConsumer({ endpoints, consumerGroup: 'GNP', subscriptions: new Map([['T', '*']]),
    messageListener: { consume(m) { seen.push(m.messageId); out('received', view(m));
                                    return ConsumeResult.SUCCESS; } } });
  const t = Date.now();
  await c.startup();
  out('started', { seconds: (Date.now() - t) / 1000 });
  const p = new Producer({ endpoints, topics: ['T'] });
  await p.startup();
  const ids = [];
  for (let i = 0; i < 3; i++) ids.push((await p.send({ topic: 'T', body: Buffer.from('np-' + i) })).messageId);
  out('sent', { ids });
  const end = Date.now() + 30000;
  while (seen.length < 3 && Date.now() < end) await sleep(100);
  await sleep(1000);
  await p.shutdown();
  await c.shutdown();
""", timeout=90)
    assert one(events, "started")["seconds"] < 10
    ids = one(events, "sent")["ids"]
    assert sorted(e["id"] for e in kind(events, "received")) == sorted(ids)


def test_node_push_consumer_retries_a_failure(start_node):
    """Node push consumers nack a failure with ChangeInvisibleDuration; with the customized
    backoff the Java proxy sends, 1.0.8 asks for 0 ms (spec §7, Node 9): the server must take it."""
    node = grpc_node(start_node)
    create_topics(node, T="NORMAL")
    events = run_node(node, """
  const seen = [];
  const c = new PushConsumer({ endpoints, consumerGroup: 'GNR', subscriptions: new Map([['T', '*']]),
    messageListener: { consume(m) {
      const fail = m.body.toString() === 'nr-1' && !seen.includes('nr-1');
      seen.push(m.body.toString());
      out('received', { fail, ...view(m) });
      return fail ? ConsumeResult.FAILURE : ConsumeResult.SUCCESS; } } });
  await c.startup();
  const p = new Producer({ endpoints, topics: ['T'] });
  await p.startup();
  for (let i = 0; i < 3; i++) await p.send({ topic: 'T', body: Buffer.from('nr-' + i) });
  const end = Date.now() + 40000;
  while (seen.length < 4 && Date.now() < end) await sleep(100);
  await sleep(1000);
  await p.shutdown();
  await c.shutdown();
""", timeout=90)
    received = kind(events, "received")
    assert sorted(e["body"] for e in received if not e["fail"]) == ["nr-0", "nr-1", "nr-2"]
    retried = [e for e in received if e["body"] == "nr-1"]
    assert [(e["fail"], e["attempt"]) for e in retried] == [(True, 1), (False, 2)], received

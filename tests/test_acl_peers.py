"""Plain ACL with the real clients' own credential options, against a node with aclEnable=true:
the C++ client 1.x (`set_session_credentials`), ali-ons (`accessKey`/`secretKey`) and the
official 5.x Python client (`Credentials(ak, sk)`, the gRPC `authorization` header). A valid
account sends and consumes; a wrong secret, an unknown key and a denied topic are refused with
the broker's reason; a client without credentials is refused too.

The C++ client retries a refused send and then reports "No route info of this topic", and the
Python client "failed to fetch topic route": the broker's reasons are read from the node's
debug log (`request.failed`), one line per refused request."""

from __future__ import annotations

import json

from peers import run_alions, run_cpp, run_grpc5
from rmqnode.net.codes import RequestCode
from test_acl import ADMIN, ADMIN_SECRET, EXCEPTION, invoke, signed
from grpc5 import script
from test_interop_alions import ons_script

AK, SK = "clientUser1", "clientSecret1"
RULES = f"""\
globalWhiteRemoteAddresses: []
accounts:
  - accessKey: {AK}
    secretKey: {SK}
    admin: false
    defaultTopicPerm: DENY
    defaultGroupPerm: DENY
    topicPerms:
      - AclOrders=PUB|SUB
      - AclSecret=SUB
    groupPerms:
      - aclGroup=SUB
      - aclOns=SUB
      - aclSimple=SUB
  - accessKey: {ADMIN}
    secretKey: {ADMIN_SECRET}
    admin: true
"""


def acl_node(start_node, tmp_path, *extra: str):
    home = tmp_path / "home"
    (home / "conf").mkdir(parents=True)
    (home / "conf" / "plain_acl.yml").write_text(RULES)
    node = start_node("--namesrv-port", "0", "--listen-port", "0", "--grpc-port", "0",
                      "-D", "aclEnable=true", "-vv", *extra, home=home,
                      roles=("namesrv", "broker", "grpc"))
    for topic in ("AclOrders", "AclSecret"):  # created by the admin account, signed
        created = invoke(node.broker, signed(RequestCode.UPDATE_AND_CREATE_TOPIC, {
            "topic": topic, "defaultTopic": "TBW102", "readQueueNums": 4, "writeQueueNums": 4,
            "perm": 6, "topicFilterType": "SINGLE_TAG", "topicSysFlag": 0, "order": "false"},
            key=ADMIN, secret=ADMIN_SECRET))[0]
        assert created.code == 0, created.remark
    return node


def events(run) -> list[dict]:
    return [json.loads(line) for line in run.lines if line.startswith("{")]


def refusals(node) -> str:
    """The node's log lines of refused requests (remoting and gRPC), as one text."""
    return "\n".join(line for line in node.lines if "request.failed" in line)


CPP = """
import json, sys, threading, time
from rocketmq.client import Producer, Message, PushConsumer
NS, AK, SK = sys.argv[1:4]
def out(kind, **kw):
    print(json.dumps(dict(kind=kind, **kw)), flush=True)
def producer(ak, sk):
    p = Producer("aclProducer" + ak[:3], timeout=5000)
    p.set_namesrv_addr(NS)
    if ak:
        p.set_session_credentials(ak, sk, "ALIYUN")
    p.start()
    time.sleep(0.5)
    return p
def try_send(p, topic, label):
    m = Message(topic)
    m.set_body(b"acl-" + label.encode())
    try:
        r = p.send_sync(m)
        out("sent", label=label, status=int(r.status))
    except Exception as e:
        out("refused", label=label, error=str(e))
good = producer(AK, SK)
for i in range(5):
    try_send(good, "AclOrders", f"ok{i}")
try_send(good, "AclSecret", "denied")
good.shutdown()
for label, ak, sk in (("wrong", AK, "not-the-secret"), ("unknown", "nobody1234", SK),
                      ("anonymous", "", "")):
    p = producer(ak, sk)
    try_send(p, "AclOrders", label)
    p.shutdown()
got, lock = [], threading.Lock()
def on_message(msg):
    with lock:
        got.append(msg.body.decode())
c = PushConsumer("aclGroup")
c.set_namesrv_addr(NS)
c.set_session_credentials(AK, SK, "ALIYUN")
c.subscribe("AclOrders", on_message)
c.start()
end = time.time() + 40
while time.time() < end and len(got) < 5:
    time.sleep(0.2)
out("got", bodies=sorted(got))
c.shutdown()
"""


def test_cpp_client_with_session_credentials(start_node, tmp_path):
    node = acl_node(start_node, tmp_path)
    run = run_cpp(CPP, timeout=120, args=[node.namesrv, AK, SK])
    assert run.returncode == 0, run.explain()
    by_label = {e.get("label"): e for e in events(run)}
    assert all(by_label[f"ok{i}"] == {"kind": "sent", "label": f"ok{i}", "status": 0}
               for i in range(5)), run.explain()
    for label in ("denied", "wrong", "unknown", "anonymous"):
        assert by_label[label]["kind"] == "refused", run.explain()
    log = refusals(node)
    for reason in ("No default permission for topic:AclSecret",
                   f"Check signature failed for accessKey={AK}", "No acl config for nobody1234",
                   "No acl config for , "):  # the C++ client sends an empty AccessKey
        assert f"code=SEND_MESSAGE response=1 remark=\"{EXCEPTION}{reason}" in log, log
    [got] = [e["bodies"] for e in events(run) if e["kind"] == "got"]
    assert got == [f"acl-ok{i}" for i in range(5)], run.explain()


ONS = """
  const [ak, sk] = [process.argv[2], process.argv[3]];
  const creds = { accessKey: ak, secretKey: sk };
  // each client its own instanceName: clients of one process otherwise share one connection,
  // and its credentials
  const producer = new Producer({ httpclient, logger, nameSrv, producerGroup: 'PID_ACL',
                                  instanceName: 'good', ...creds });
  producer.on('error', () => {});  // the consumer's retry topic has no route before it is made
  await producer.ready();
  for (let i = 0; i < 3; i++) {
    const r = await producer.send(new Message('AclOrders', 'TagA', Buffer.from('ons-' + i)));
    out({ kind: 'sent', status: r.sendStatus });
  }
  for (const [label, topic, options] of [['denied', 'AclSecret', creds],
      ['wrong', 'AclOrders', { accessKey: ak, secretKey: 'not-the-secret' }]]) {
    const p = new Producer({ httpclient, logger, nameSrv, producerGroup: 'PID_ACL_' + label,
                             instanceName: label, ...options });
    p.on('error', () => {});
    try {
      await p.ready();
      await p.send(new Message(topic, 'TagA', Buffer.from(label)));
      out({ kind: 'sent', label });
    } catch (e) {
      out({ kind: 'refused', label, error: String(e.message || e) });
    }
    await p.close().catch(() => {});  // its unregistration is refused too
  }
  const consumer = new Consumer({ httpclient, logger, nameSrv, consumerGroup: 'aclOns',
                                  instanceName: 'consumer',
                                  consumeFromWhere: 'CONSUME_FROM_FIRST_OFFSET', ...creds });
  consumer.on('error', () => {});
  const got = [];
  consumer.subscribe('AclOrders', '*', async msg => { got.push(msg.body.toString()); });
  await consumer.ready();
  const deadline = Date.now() + 40000;
  while (got.length < 3 && Date.now() < deadline) await new Promise(r => setTimeout(r, 100));
  out({ kind: 'got', got: got.sort() });
  await consumer.close();
  await producer.close();
"""


def test_alions_with_access_key(start_node, tmp_path):
    node = acl_node(start_node, tmp_path)
    run = run_alions(ons_script(node.namesrv, ONS), timeout=120, args=[AK, SK])
    assert run.returncode == 0, run.explain()
    evs = events(run)
    assert [e["status"] for e in evs if e["kind"] == "sent"] == ["SEND_OK"] * 3, run.explain()
    assert {e["label"] for e in evs if e["kind"] == "refused"} == {"denied", "wrong"}, evs
    log = refusals(node)  # ali-ons says "Send [4] times, still failed"
    for reason in ("No default permission for topic:AclSecret",
                   f"Check signature failed for accessKey={AK}"):
        assert f"code=SEND_MESSAGE_V2 response=1 remark=\"{EXCEPTION}{reason}" in log, log
    [got] = [e["got"] for e in evs if e["kind"] == "got"]
    assert got == ["ons-0", "ons-1", "ons-2"], run.explain()


GRPC = """
def signed_cfg(ak, sk):
    return ClientConfiguration(EP, Credentials(ak, sk), request_timeout=3)
p = Producer(signed_cfg(sys.argv[2], sys.argv[3]), topics=["AclOrders"])
p.startup()
for i in range(3):
    out("sent", id=p.send(message("AclOrders", f"grpc-{i}")).message_id)
try:
    p.send(message("AclSecret", "denied"))
    out("sent_denied")
except Exception as e:
    out("refused", label="denied", **error(e))
p.shutdown()
for label, ak, sk in (("wrong", sys.argv[2], "not-the-secret"), ("anonymous", "", "")):
    q = Producer(ClientConfiguration(EP, Credentials(ak, sk) if ak else Credentials(),
                                     request_timeout=3), topics=["AclOrders"])
    try:
        q.startup()
        q.send(message("AclOrders", label))
        out("sent_" + label)
    except Exception as e:
        out("refused", label=label, **error(e))
    try:
        q.shutdown()
    except Exception:
        pass
c = SimpleConsumer(signed_cfg(sys.argv[2], sys.argv[3]), "aclSimple",
                   {"AclOrders": FilterExpression()}, await_duration=3)
c.startup()
got = receive_until(c, lambda got: len(got) >= 3)
for m in got:
    c.ack(m)
finish(c)
"""


def test_grpc_python_client_with_credentials(start_node, tmp_path):
    node = acl_node(start_node, tmp_path)
    run = run_grpc5(script(GRPC), timeout=120, args=[node.addrs["grpc"], AK, SK])
    evs = events(run)
    assert run.returncode == 0 and evs[-1]["kind"] == "done", run.explain()
    assert len([e for e in evs if e["kind"] == "sent"]) == 3, run.explain()
    refused = {e["label"]: e for e in evs if e["kind"] == "refused"}
    assert set(refused) == {"denied", "wrong", "anonymous"}, run.explain()
    assert "40300" in json.dumps(refused["denied"]), refused["denied"]
    log = refusals(node)
    assert f"code=40100 message=\"Check signature failed for accessKey={AK}\"" in log, log
    assert "code=40100 message=\"No accessKey is configured\"" in log, log
    received = sorted(e["body"] for e in evs if e["kind"] == "received")
    assert received == ["grpc-0", "grpc-1", "grpc-2"], run.explain()

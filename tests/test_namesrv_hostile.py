"""Hostile and malformed requests to `rmqnode --role namesrv`: each is refused with a short
remark, leaves the route tables as they were, and never crashes a handler."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest

from rmqnode.net import fastjson
from rmqnode.net.client import RemotingClient
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode as RC, ResponseCode
from remoting import call, call_json
from test_namesrv import brokers_in_route

EMPTY_CLUSTER = {"brokerAddrTable": {}, "clusterAddrTable": {}}
# The transport's answer to an exception a handler did not expect: "ValueError: ...".
CRASH = re.compile(r"^[A-Z]\w*(Error|Exception)\b")
REMARK_MAX = 512


class Peer:
    """One connection that stays open: a broker's registration lives as long as its
    connection, so a test registers, and unregisters, through one of these."""

    def __init__(self, addr: str) -> None:
        self.addr = addr
        self.loop = asyncio.new_event_loop()
        self.client = RemotingClient()

    def call(self, code: int, fields: dict | None = None, raw: bytes = b"") -> RemotingCommand:
        cmd = RemotingCommand.request(code, fields, raw)
        return self.loop.run_until_complete(self.client.invoke(self.addr, cmd, 5.0))

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


@pytest.fixture
def peer(namesrv) -> Iterator[Peer]:
    connection = Peer(namesrv.namesrv)
    yield connection
    connection.close()


def header(name: str = "b1", cluster: str = "C1", addr: str = "127.0.0.1:30911",
           **more: object) -> dict[str, object]:
    return {"brokerName": name, "clusterName": cluster, "brokerAddr": addr, "brokerId": 0,
            "haServerAddr": "127.0.0.1:30912", **more}


def body(topics: object = None, **wrapper: object) -> bytes:
    table = {"T1": {"topicName": "T1", "perm": 6, "readQueueNums": 4,
                    "writeQueueNums": 4}} if topics is None else topics
    return fastjson.dumpb({"filterServerList": [], "topicConfigSerializeWrapper": {
        "dataVersion": {"counter": 1, "timestamp": 1}, "topicConfigTable": table,
        **wrapper}}, ascii_only=True)  # ascii: lone surrogates as \u escapes


def queue(**cfg: object) -> dict[str, object]:
    return {"T1": {"topicName": "T1", "perm": 6, "readQueueNums": 4, "writeQueueNums": 4,
                   **cfg}}


BAD_REGISTRATIONS: list[tuple[dict, bytes]] = [
    (header(), body(queue(readQueueNums="four"))),
    (header(), body(queue(writeQueueNums=10**8))),
    (header(), body(queue(readQueueNums=-1))),
    (header(), body(queue(perm="rw"))),
    (header(), body(queue(perm=2**40))),
    (header(), body(queue(topicSysFlag=1.5))),
    (header(), body({"T1": "not a config"})),
    (header(), body({"../../x": {"readQueueNums": 1}})),
    (header(), body({"\ud800": {"readQueueNums": 1}})),
    (header(), body({"t" * 200: {"readQueueNums": 1}})),
    (header(), body([1, 2])),
    (header(), body(dataVersion="v1")),
    (header(), body(dataVersion={"counter": {"nested": [1] * 1000}})),
    (header(), fastjson.dumpb({"topicConfigSerializeWrapper": [1]})),
    (header(), b"[1, 2]"),
    (header(), b"{"),
    (header(), b"[" * 100_000),
    (header(), b"\xff\xfe"),
    (header(brokerId="abc"), body()),
    (header(brokerId="1" * 30), body()),
    (header(brokerId=None), body()),
    (header(addr="nohost"), body()),
    (header(addr="127.0.0.1:99999"), body()),
    (header(addr="127.0.0.1:-1"), body()),
    (header(addr="exa mple:80"), body()),
    (header(addr=None), body()),
    (header(name="../../x"), body()),
    (header(name="b" * 300), body()),
    (header(name="名前"), body()),
    (header(name=None), body()),
    (header(cluster="a/b"), body()),
    (header(cluster=""), body()),
    (header(haServerAddr="x"), body()),
    (header(heartbeatTimeoutMillis="-5"), body()),
]


def assert_refused(resp: RemotingCommand, what: object) -> None:
    assert resp.code == ResponseCode.SYSTEM_ERROR, (what, resp.code, resp.remark)
    assert resp.remark and len(resp.remark) < REMARK_MAX, (what, resp.remark)
    assert "\n" not in resp.remark and not CRASH.match(resp.remark), (what, resp.remark)


def test_refused_registration_leaves_no_trace(namesrv, peer):
    ns = namesrv.namesrv
    responses = [peer.call(RC.REGISTER_BROKER, h, b) for h, b in BAD_REGISTRATIONS]
    for case, resp in zip(BAD_REGISTRATIONS, responses):
        assert_refused(resp, case)
    assert call_json(ns, RC.GET_BROKER_CLUSTER_INFO) == EMPTY_CLUSTER
    assert call_json(ns, RC.GET_ALL_TOPIC_LIST_FROM_NAMESERVER) == {"topicList": []}
    # The same broker, well formed, registers; a host name with dots is a valid broker name
    # (Java's default), and so are the topics named after it.
    good = header(name="host-1.example.com")
    reg = peer.call(RC.REGISTER_BROKER, good, body(queue() | {"host-1.example.com": {}}))
    assert reg.code == 0, reg.remark
    assert brokers_in_route(ns, "T1") == brokers_in_route(ns, "host-1.example.com") == {
        "host-1.example.com"}


def test_many_bad_registrations_keep_cluster_info_small(peer):
    bad = body(queue(readQueueNums="x" * 1000))
    codes = {peer.call(RC.REGISTER_BROKER, header(name=f"b{i}", addr=f"127.0.0.1:{20000 + i}"),
                       bad).code for i in range(500)}
    assert codes == {ResponseCode.SYSTEM_ERROR}
    info = peer.call(RC.GET_BROKER_CLUSTER_INFO)
    assert len(info.body) < 100, info.body[:200]


NAMES = ["", "../../x", "x" * 100_000, "名字\u202e", "a\nb", "%RETRY%g", "-1",
         "9" * 30, "127.0.0.1:70000", '{"a":1}']
BODIES = [b"", b"{", b"[]", b"null", b"\xff\xfe", b"[" * 50_000, b'{"counter":"x"}',
          b'{"\\ud800":1}', b'{"counter":1e400}', b"x" * 1_000_000]
VALID: dict[int, dict[str, object]] = {
    RC.REGISTER_BROKER: header(),
    RC.UNREGISTER_BROKER: header(),
    RC.QUERY_DATA_VERSION: {"brokerAddr": "127.0.0.1:30911"},
    RC.GET_ROUTEINFO_BY_TOPIC: {"topic": "T1"},
    RC.GET_BROKER_CLUSTER_INFO: {},
    RC.GET_ALL_TOPIC_LIST_FROM_NAMESERVER: {},
    RC.GET_TOPICS_BY_CLUSTER: {"cluster": "C1"},
    RC.GET_SYSTEM_TOPIC_LIST_FROM_NS: {},
    RC.DELETE_TOPIC_IN_NAMESRV: {"topic": "T1", "clusterName": "C1"},
    RC.WIPE_WRITE_PERM_OF_BROKER: {"brokerName": "b1"},
    RC.ADD_WRITE_PERM_OF_BROKER: {"brokerName": "b1"},
    RC.PUT_KV_CONFIG: {"namespace": "N", "key": "k", "value": "v"},
    RC.GET_KV_CONFIG: {"namespace": "N", "key": "k"},
    RC.DELETE_KV_CONFIG: {"namespace": "N", "key": "k"},
    RC.GET_KVLIST_BY_NAMESPACE: {"namespace": "N"},
    RC.GET_NAMESRV_CONFIG: {},
    RC.UPDATE_NAMESRV_CONFIG: {},
}
CONFIG_BODIES = [b"listenPort=abc", b"orderMessageEnable=true\nclusterTest=maybe",
                 b"\xff\xfe", b"=\n:\n#", b"listenPort=" + b"9" * 100_000]


def mutations(fields: dict[str, object]) -> list[tuple[dict | None, bytes]]:
    """A request's fields with each one missing or replaced by a hostile value; a few bodies."""
    out: list[tuple[dict | None, bytes]] = [(None, b"")]
    for key in fields:
        out.append(({k: v for k, v in fields.items() if k != key}, b""))
        out.extend(({**fields, key: value}, b"") for value in NAMES)
    out.extend((fields, raw) for raw in BODIES)
    return out


def test_every_request_survives_hostile_fields(namesrv, peer):
    ns = namesrv.namesrv
    requests = [(code, f, b) for code, fields in VALID.items() for f, b in mutations(fields)]
    requests += [(RC.UPDATE_NAMESRV_CONFIG, {}, raw) for raw in CONFIG_BODIES]
    responses = [peer.call(*request) for request in requests]
    for (code, fields, raw), resp in zip(requests, responses):
        what = (code, fields and {k: str(v)[:40] for k, v in fields.items()}, raw[:40])
        assert resp.code != ResponseCode.SYSTEM_ERROR or not CRASH.match(resp.remark or ""), \
            (what, resp.remark)
        assert len(resp.remark or "") < REMARK_MAX, (what, resp.remark[:200])
    crashes = [line for line in namesrv.lines if "Traceback" in line or "request.crashed" in line]
    assert not crashes, crashes
    # A refused config update changed nothing; the node still routes a broker.
    assert b"orderMessageEnable=false" in call(ns, RC.GET_NAMESRV_CONFIG).body
    assert peer.call(RC.REGISTER_BROKER, header(name="b-ok"), body()).code == 0
    assert brokers_in_route(ns, "T1") == {"b-ok"}


def test_brokers_leave_without_trace(namesrv, peer):
    ns = namesrv.namesrv
    a = header(name="moved", cluster="C1")
    assert peer.call(RC.REGISTER_BROKER, a, body()).code == 0
    # Re-registered under another cluster: listed in both, as in Java.
    assert peer.call(RC.REGISTER_BROKER, {**a, "clusterName": "C2"}, body()).code == 0
    # An unregistration naming the wrong id changes nothing (the broker still expires later).
    assert peer.call(RC.UNREGISTER_BROKER, {**a, "brokerId": 1}).code == 0
    assert brokers_in_route(ns, "T1") == {"moved"}
    assert peer.call(RC.UNREGISTER_BROKER, {**a, "clusterName": "C2"}).code == 0
    assert call_json(ns, RC.GET_BROKER_CLUSTER_INFO) == EMPTY_CLUSTER

    # The same address under a new broker name leaves the old one.
    assert peer.call(RC.REGISTER_BROKER, header(name="old"), body()).code == 0
    assert peer.call(RC.REGISTER_BROKER, header(name="new", cluster="C3"), body()).code == 0
    info = call_json(ns, RC.GET_BROKER_CLUSTER_INFO)
    assert info["clusterAddrTable"] == {"C3": ["new"]}
    assert list(info["brokerAddrTable"]) == ["new"]
    assert peer.call(RC.UNREGISTER_BROKER, header(name="new", cluster="C3")).code == 0
    assert call_json(ns, RC.GET_BROKER_CLUSTER_INFO) == EMPTY_CLUSTER
    assert call_json(ns, RC.GET_ALL_TOPIC_LIST_FROM_NAMESERVER) == {"topicList": []}

"""Seeded fuzzing of one real node (name server and broker in one process) over its sockets.

Every request code the node answers gets requests built from a valid template (the captured
requests of real Java clients and mqadmin, and our own for the codes no capture holds) with
fields removed, of the wrong type, out of range, huge, or naming hostile paths, and bodies cut
or replaced; throwaway connections get codec-level garbage. A peer must never be able to make
the node crash a handler (a Traceback, a `request.crashed` line, or a SYSTEM_ERROR whose remark
is a Python exception), write outside its home, or stop serving: afterwards it must still
store and return a message and exit 0 on SIGTERM.

The mutations and the load live here so that benchmarks/fuzz_soak.py runs the same ones much
longer; the seed is fixed (RMQ_FUZZ_SEED overrides it) and printed with every failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from conftest import Node
from remoting import call
from rmqnode.message import BatchEntry, encode_batch
from rmqnode.net.codec import (SERIALIZE_JSON, SERIALIZE_ROCKETMQ, FrameDecoder, RemotingCommand,
                               decode_frame)
from rmqnode.net.codes import RequestCode as RC
from rmqnode.net.codes import ResponseCode
from wire import exchanges, flows

SEED = int(os.environ.get("RMQ_FUZZ_SEED", "20250601"))
TEST_FRAMES = 60_000
TOPIC, GROUP, PRODUCER = "FuzzTopic", "FuzzGroup", "FuzzProducer"
REPLY_TOPIC = "DefaultCluster_REPLY_TOPIC"  # created at start, as Java does
OUTSIDE = "outside"  # the watched sibling of the node's home that hostile names aim at
# A remark that is a Python exception's repr: the transport's answer to a handler crash.
CRASH_REMARK = re.compile(r"^[A-Z]\w*(Error|Exception|Iteration|Exit)\b")
CRASH_LINE = re.compile(r"Traceback|request\.crashed")
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
ANSWER_TIMEOUT = 3.0  # a held pull or POP long poll that outlives this is simply abandoned


class Raw(str):
    """A JSON literal written into a JSON header as is: `1e400`, `NaN`, `[1]`, `{"a":1}`."""


Value = str | Raw


# -- hostile values -----------------------------------------------------------------------


def hostile_names(outside: Path) -> list[str]:
    """Topic, group and key values a malicious or broken client might send; the relative
    ones climb from every depth of the store into the watched `outside` dir."""
    climbs = ["../" * depth + f"{OUTSIDE}/x" for depth in range(1, 8)]
    return [*climbs, str(outside / "abs"), "../../x", "/tmp/x", "%RETRY%../..", "%DLQ%é",
            '{"a":1}', "a" * 300, "", " ", ".", "..", "%RETRY%", "%DLQ%", "a/b", "a\\b",
            "a\x00b", "名字", "TBW102", "SCHEDULE_TOPIC_XXXX", "RMQ_SYS_TRANS_HALF_TOPIC",
            "%RETRY%" + "../" * 4 + OUTSIDE, "DefaultCluster", "x" * 128, "x" * 256]


NUMBERS = ["-1", "0", "-2147483648", "-2147483649", "2147483647", "2147483648",
           "9223372036854775807", "9223372036854775808", "-9223372036854775809",
           "99999999999999999999999999999", "1e400", "-1e400", "NaN", "Infinity", "1.5", "0x10",
           " 1", "1 ", "+1", "--1", "true", "null", "١٢", "9" * 5000, "-0", "1_000"]
STRINGS = ["", "x" * 70_000, "é中文\U0001F600", "\x00\x01\x7f", "\ufffd", "\n\r\t", "%s%n",
           "\\u0000", "true", "false", "TAG||*", "*||a", "a b c d e f g", "0 0 0 0 0 x 0",
           "1 2 3 4 1 b 0 5", "0 " * 9, ";;;", "0 1 2;x", "1 0 x", "RETRY"]
# Values only a JSON header can carry: the codec turns them into strings, or refuses them.
JSON_ONLY = [Raw("1e400"), Raw("-1e400"), Raw("NaN"), Raw("Infinity"), Raw("1.5"),
             Raw("true"), Raw("false"), Raw("null"), Raw("[]"), Raw('{"a":1}'), Raw("[1,[2]]"),
             Raw("123456789012345678901234567890"), Raw("-0"), Raw('"\\ud800"'),
             Raw('"a\\udfffb"'), Raw('"\\u0000"'), Raw("[" * 5000 + "]" * 5000)]


def garbage_json_bodies() -> list[bytes]:
    return [b"", b"{", b"[]", b"1", b'"x"', b"null", b"{}", b"[" * 100_000, b"{\"a\":" * 3000,
            b'{"a":NaN}', b'{"a":1e400}', b'{"\\ud800":1}', b"\xff\xfe", b"\x00" * 64,
            b'{"mqSet":[1,"x",null,{}]}', b'{"consumerDataSet":[1]}',
            b'{"producerDataSet":{"a":1}}', b'{"topicConfigSerializeWrapper":[]}',
            b'{"mqSet":[{"queueId":"x"}]}', b'{"mqSet":[{"queueId":1e400}]}']


# -- templates ----------------------------------------------------------------------------


@dataclass
class Template:
    """A valid request of one code: its header fields, body and serialization."""

    code: int
    fields: dict[str, str]
    body: bytes = b""
    serialize_type: int = SERIALIZE_JSON


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


def _subscription(topic: str) -> dict[str, object]:
    return {"classFilterMode": False, "codeSet": [], "expressionType": "TAG",
            "subString": "*", "subVersion": 1, "tagsSet": [], "topic": topic}


def own_templates(broker_addr: str, outside: Path) -> list[Template]:
    """Valid requests on the fuzzed topic and group, one or more for every code the node
    handles: the captures cover only what Java clients happened to send."""
    now = str(int(time.time() * 1000))
    send = {"producerGroup": PRODUCER, "topic": TOPIC, "defaultTopic": "TBW102",
            "defaultTopicQueueNums": "4", "queueId": "0", "sysFlag": "0", "bornTimestamp": now,
            "flag": "0", "properties": "KEYS\x01k1\x02TAGS\x01t\x02WAIT\x01true\x02",
            "reconsumeTimes": "0", "unitMode": "false", "maxReconsumeTimes": "16",
            "batch": "false"}
    v2 = {"a": PRODUCER, "b": TOPIC, "c": "TBW102", "d": "4", "e": "1", "f": "0", "g": now,
          "h": "0", "i": "KEYS\x01k2\x02UNIQ_KEY\x01AC11000100002A9F0000000000000001\x02",
          "j": "0", "k": "false", "l": "16", "m": "false"}
    pull = {"consumerGroup": GROUP, "topic": TOPIC, "queueId": "0", "queueOffset": "0",
            "maxMsgNums": "32", "sysFlag": "5", "commitOffset": "0",
            "suspendTimeoutMillis": "200", "subscription": "*", "subVersion": "1",
            "expressionType": "TAG"}
    pop = {"consumerGroup": GROUP, "topic": TOPIC, "queueId": "-1", "maxMsgNums": "4",
           "invisibleTime": "60000", "pollTime": "200", "bornTime": now, "initMode": "0",
           "expType": "TAG", "exp": "*", "order": "false"}
    ack = {"consumerGroup": GROUP, "topic": TOPIC, "queueId": "0", "offset": "0",
           "extraInfo": f"0 {now} 60000 0 0 broker-a 0 0"}
    mq = {"topic": TOPIC, "brokerName": "broker-a", "queueId": 0}
    locks = _json({"consumerGroup": GROUP, "clientId": "127.0.0.1@fuzz", "mqSet": [mq]})
    heartbeat = _json({"clientID": "127.0.0.1@fuzz", "producerDataSet": [
        {"groupName": PRODUCER}], "consumerDataSet": [{
            "groupName": GROUP, "consumeType": "CONSUME_PASSIVELY", "messageModel": "CLUSTERING",
            "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET", "unitMode": False,
            "subscriptionDataSet": [_subscription(TOPIC)]}]})
    group_config = _json({"groupName": GROUP, "consumeEnable": True, "retryQueueNums": 1,
                          "retryMaxTimes": 16, "brokerId": 0, "whichBrokerWhenConsumeSlowly": 1,
                          "consumeBroadcastEnable": True, "consumeFromMinEnable": True})
    register = _json({"topicConfigSerializeWrapper": {
        "dataVersion": {"counter": 1, "timestamp": int(now)},
        "topicConfigTable": {TOPIC: {"topicName": TOPIC, "readQueueNums": 4,
                                     "writeQueueNums": 4, "perm": 6, "order": False,
                                     "topicFilterType": "SINGLE_TAG", "topicSysFlag": 0}}},
        "filterServerList": []})
    broker = {"brokerName": "broker-fz", "brokerAddr": "127.0.0.1:1", "clusterName": "FzCluster",
              "brokerId": "0", "haServerAddr": "127.0.0.1:2", "compressed": "false",
              "bodyCrc32": "0", "heartbeatTimeoutMillis": "30000"}
    kv = {"namespace": "ORDER_TOPIC_CONFIG", "key": TOPIC, "value": "broker-a:4"}
    topic_q = {"topic": TOPIC, "queueId": "0"}
    reply = "MSG_TYPE\x01reply\x02CORRELATION_ID\x01c1\x02REPLY_TO_CLIENT\x01127.0.0.1@gone\x02"
    batch = encode_batch([BatchEntry(b"one", {"KEYS": "b1"}), BatchEntry(b"two", {"TAGS": "t"})])
    t = Template
    return [
        t(RC.SEND_MESSAGE, send, b"fuzz body"), t(RC.SEND_MESSAGE_V2, v2, b"fuzz v2"),
        t(RC.SEND_MESSAGE_V2, v2, b"binary header", SERIALIZE_ROCKETMQ),
        t(RC.SEND_BATCH_MESSAGE, {**v2, "m": "true"}, batch),
        t(RC.SEND_MESSAGE_V2, {**v2, "i": "TRAN_MSG\x01true\x02PGROUP\x01" + PRODUCER,
                               "f": "4"}, b"half"),
        t(RC.SEND_MESSAGE_V2, {**v2, "i": "DELAY\x013\x02"}, b"delayed"),
        # Replies to a requester that is gone: one that is there would be pushed to, and a
        # fuzz link never answers a push.
        t(RC.SEND_REPLY_MESSAGE_V2, {**v2, "b": REPLY_TOPIC, "i": reply}, b"reply v2"),
        t(RC.SEND_REPLY_MESSAGE, {**send, "topic": REPLY_TOPIC, "properties": reply}, b"reply"),
        t(RC.CONSUMER_SEND_MSG_BACK, {"group": GROUP, "offset": "0", "delayLevel": "0",
                                      "originMsgId": "x", "originTopic": TOPIC,
                                      "maxReconsumeTimes": "16", "unitMode": "false"}),
        t(RC.END_TRANSACTION, {"producerGroup": PRODUCER, "tranStateTableOffset": "0",
                               "commitLogOffset": "0", "commitOrRollback": "8",
                               "fromTransactionCheck": "false", "msgId": "x",
                               "transactionId": "x"}),
        t(RC.PULL_MESSAGE, pull), t(RC.LITE_PULL_MESSAGE, {**pull, "sysFlag": "4"}),
        t(RC.PULL_MESSAGE, {**pull, "sysFlag": "0"}, b"", SERIALIZE_ROCKETMQ),
        t(RC.POP_MESSAGE, pop), t(RC.ACK_MESSAGE, ack),
        t(RC.CHANGE_MESSAGE_INVISIBLETIME, {**ack, "invisibleTime": "1000"}),
        t(RC.HEART_BEAT, {}, heartbeat),
        t(RC.UNREGISTER_CLIENT, {"clientID": "127.0.0.1@fuzz", "producerGroup": PRODUCER,
                                 "consumerGroup": GROUP}),
        t(RC.GET_CONSUMER_LIST_BY_GROUP, {"consumerGroup": GROUP}),
        t(RC.QUERY_CONSUMER_OFFSET, {"consumerGroup": GROUP, **topic_q,
                                     "setZeroIfNotFound": "true"}),
        t(RC.UPDATE_CONSUMER_OFFSET, {"consumerGroup": GROUP, **topic_q, "commitOffset": "1"}),
        t(RC.LOCK_BATCH_MQ, {}, locks), t(RC.UNLOCK_BATCH_MQ, {}, locks),
        t(RC.CHECK_CLIENT_CONFIG, {}, _json({"group": GROUP,
                                              "subscriptionData": _subscription(TOPIC)})),
        t(RC.GET_MAX_OFFSET, topic_q), t(RC.GET_MIN_OFFSET, topic_q),
        t(RC.SEARCH_OFFSET_BY_TIMESTAMP, {**topic_q, "timestamp": now, "boundaryType": "LOWER"}),
        t(RC.GET_EARLIEST_MSG_STORETIME, topic_q),
        t(RC.VIEW_MESSAGE_BY_ID, {"offset": "0"}),
        t(RC.QUERY_MESSAGE, {"topic": TOPIC, "key": "k1", "maxNum": "32", "beginTimestamp": "0",
                             "endTimestamp": now, "_UNIQUE_KEY_QUERY": "false"}),
        t(RC.UPDATE_AND_CREATE_TOPIC, {"topic": TOPIC, "defaultTopic": "TBW102",
                                       "readQueueNums": "4", "writeQueueNums": "4", "perm": "6",
                                       "topicFilterType": "SINGLE_TAG", "topicSysFlag": "0",
                                       "order": "false"}),
        t(RC.DELETE_TOPIC_IN_BROKER, {"topic": "FuzzDoomed"}),
        t(RC.GET_ALL_TOPIC_CONFIG, {}), t(RC.GET_TOPIC_STATS_INFO, {"topic": TOPIC}),
        t(RC.GET_ALL_CONSUMER_OFFSET, {}), t(RC.GET_ALL_DELAY_OFFSET, {}),  # slave sync
        t(RC.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, {}, group_config),
        t(RC.DELETE_SUBSCRIPTIONGROUP, {"groupName": "FuzzDoomedGroup", "cleanOffset": "true"}),
        t(RC.GET_ALL_SUBSCRIPTIONGROUP_CONFIG, {}),
        t(RC.GET_CONSUMER_CONNECTION_LIST, {"consumerGroup": GROUP}),
        t(RC.GET_PRODUCER_CONNECTION_LIST, {"producerGroup": PRODUCER}),
        t(RC.GET_CONSUME_STATS, {"consumerGroup": GROUP, "topic": TOPIC}),
        t(RC.QUERY_TOPIC_CONSUME_BY_WHO, {"topic": TOPIC}),
        t(RC.GET_BROKER_RUNTIME_INFO, {}), t(RC.GET_BROKER_CONFIG, {}),
        # Harmless keys, and ones that would move the node's files: Java refuses those.
        t(RC.UPDATE_BROKER_CONFIG, {}, (f"fileReservedTime=72\nstorePathRootDir={outside}/s\n"
                                        f"storePathCommitLog={outside}/c\n").encode()),
        t(RC.INVOKE_BROKER_TO_RESET_OFFSET, {"topic": TOPIC, "group": GROUP, "timestamp": "-1",
                                             "isForce": "true", "queueId": "0", "offset": "0"}),
        t(RC.VIEW_BROKER_STATS_DATA, {"statsName": "TOPIC_PUT_NUMS", "statsKey": TOPIC}),
        t(RC.INVOKE_BROKER_TO_GET_CONSUMER_STATUS, {"topic": TOPIC, "group": GROUP,
                                                    "clientAddr": broker_addr}),
        t(RC.DELETE_EXPIRED_COMMITLOG, {}),
        t(RC.GET_SYSTEM_TOPIC_LIST_FROM_BROKER, {}), t(RC.CLEAN_EXPIRED_CONSUMEQUEUE, {}),
        t(RC.CLEAN_UNUSED_TOPIC, {}), t(RC.GET_BROKER_CONSUME_STATS, {"isOrder": "false"}),
        t(RC.GET_CONSUMER_RUNNING_INFO, {"consumerGroup": GROUP, "clientId": "127.0.0.1@fuzz",
                                         "jstackEnable": "false"}),
        t(RC.CONSUME_MESSAGE_DIRECTLY, {"consumerGroup": GROUP, "clientId": "127.0.0.1@fuzz",
                                        "msgId": "7F00000100002A9F0000000000000000",
                                        "brokerName": "broker-a"}),
        t(RC.REGISTER_BROKER, broker, register), t(RC.UNREGISTER_BROKER, broker),
        t(RC.QUERY_DATA_VERSION, broker, _json({"counter": 1, "timestamp": int(now)})),
        t(RC.GET_ROUTEINFO_BY_TOPIC, {"topic": TOPIC}), t(RC.GET_BROKER_CLUSTER_INFO, {}),
        t(RC.GET_ALL_TOPIC_LIST_FROM_NAMESERVER, {}),
        t(RC.GET_TOPICS_BY_CLUSTER, {"cluster": "DefaultCluster"}),
        t(RC.GET_SYSTEM_TOPIC_LIST_FROM_NS, {}),
        t(RC.DELETE_TOPIC_IN_NAMESRV, {"topic": "FuzzDoomed", "clusterName": "FzCluster"}),
        t(RC.WIPE_WRITE_PERM_OF_BROKER, {"brokerName": "broker-fz"}),
        t(RC.ADD_WRITE_PERM_OF_BROKER, {"brokerName": "broker-fz"}),
        t(RC.PUT_KV_CONFIG, kv), t(RC.GET_KV_CONFIG, kv), t(RC.DELETE_KV_CONFIG, kv),
        t(RC.GET_KVLIST_BY_NAMESPACE, kv), t(RC.GET_NAMESRV_CONFIG, {}),
        t(RC.UPDATE_NAMESRV_CONFIG, {}, f"orderMessageEnable=false\nkvConfigPath={outside}/kv"
                                         f"\nconfigStorePath={outside}/ns\n".encode()),
        t(RC.UPDATE_AND_CREATE_ACL_CONFIG, {
            "accessKey": "fuzzuser", "secretKey": "fuzzsecret", "whiteRemoteAddress": "",
            "defaultTopicPerm": "PUB|SUB", "defaultGroupPerm": "SUB", "admin": "false",
            "topicPerms": f"{TOPIC}=PUB|SUB,other=DENY", "groupPerms": f"{GROUP}=SUB"}),
        t(RC.DELETE_ACL_CONFIG, {"accessKey": "fuzzdoomed"}),
        t(RC.GET_BROKER_CLUSTER_ACL_INFO, {}), t(RC.GET_BROKER_CLUSTER_ACL_CONFIG, {}),
        # The ACL file the whitelist lands in is named by the request: only the node's own.
        t(RC.UPDATE_GLOBAL_WHITE_ADDRS_CONFIG, {"globalWhiteAddrs": "10.1.2.*,10.9.9.{1,2}",
                                                "aclFileFullPath": f"{outside}/plain_acl.yml"}),
    ]


def captured_templates() -> list[Template]:
    """The requests real Java clients, mqadmin and a Java broker sent, decoded."""
    out = []
    for flow in flows():
        for req, _ in exchanges(flow):
            cmd = decode_frame(req.raw[4:])
            out.append(Template(cmd.code, dict(cmd.ext_fields or {}), cmd.body,
                                cmd.serialize_type))
    return out


# -- mutation -----------------------------------------------------------------------------


Signer = Callable[[dict, bytes], dict]


def _unsigned(fields: dict, body: bytes) -> dict:
    return fields


@dataclass
class Fuzzer:
    """Turns templates into hostile frames, reproducibly from one seed."""

    seed: int
    outside: Path
    templates: dict[int, list[Template]]
    rng: random.Random = field(init=False)
    names: list[str] = field(init=False)
    opaque: int = 0
    # With ACL on: signs most frames after their mutation (Signer), so they reach handlers.
    sign: Signer | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.names = hostile_names(self.outside)

    def value(self, json_header: bool) -> Value:
        rng = self.rng
        pools: list[list] = [self.names, NUMBERS, STRINGS]
        if json_header:
            pools.append(JSON_ONLY)
        return rng.choice(rng.choice(pools))

    def mutate_fields(self, fields: dict[str, str], json_header: bool) -> dict[str, Value]:
        rng = self.rng
        out: dict[str, Value] = dict(fields)
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            action = rng.randrange(10)
            key = rng.choice(list(out)) if out else "topic"
            if action == 0:
                out.pop(key, None)
            elif action == 1:
                out[rng.choice(("topic", "consumerGroup", "queueId", "x" * 300, "é", ""))] = \
                    self.value(json_header)
            else:
                out[key] = self.value(json_header)
        return out

    def mutate_body(self, body: bytes) -> bytes:
        rng = self.rng
        action = rng.randrange(8)
        if action == 0 and body:
            return body[:rng.randrange(len(body))]
        if action == 1:
            return rng.randbytes(rng.randrange(1, 300))
        if action == 2:
            return rng.choice(garbage_json_bodies())
        if action == 3 and body[:1] == b"{":
            return self.mutate_json_body(body)
        if action == 4 and body:
            flipped = bytearray(body)
            for _ in range(rng.randrange(1, 8)):
                flipped[rng.randrange(len(flipped))] = rng.randrange(256)
            return bytes(flipped)
        return body

    def mutate_json_body(self, body: bytes) -> bytes:
        """One value somewhere in a JSON body replaced by a hostile one (any type)."""
        try:
            data = json.loads(body)
        except ValueError:
            return body
        nodes: list[tuple[object, object]] = []

        def walk(node: object) -> None:
            items = node.items() if isinstance(node, dict) else \
                enumerate(node) if isinstance(node, list) else ()
            for key, child in items:
                nodes.append((node, key))
                walk(child)

        walk(data)
        if not nodes:
            return body
        parent, key = self.rng.choice(nodes)
        parent[key] = self.rng.choice([*self.names, *NUMBERS, None, [], {}, -1, 2 ** 70, 1.5,
                                       True, [None], {"": None}])  # type: ignore[index]
        return json.dumps(data).encode()

    def request(self, template: Template) -> tuple[bytes, int]:
        """A mutated request of the template's code, as a whole frame, and its opaque."""
        rng = self.rng
        self.opaque += 1
        st = template.serialize_type if rng.random() < 0.8 else rng.choice(
            (SERIALIZE_JSON, SERIALIZE_ROCKETMQ))
        fields = self.mutate_fields(template.fields, st == SERIALIZE_JSON) \
            if rng.random() < 0.85 else dict(template.fields)
        body = self.mutate_body(template.body) if rng.random() < 0.4 else template.body
        if self.sign is not None and rng.random() < 0.8:
            fields = self.sign(fields, body)
        header = {"code": template.code, "flag": 0, "language": "JAVA", "opaque": self.opaque,
                  "version": rng.choice((409, 409, 409, 0, -1, 121, 2 ** 31 - 1))}
        if st == SERIALIZE_ROCKETMQ:
            return frame(st, binary_header(header, fields), body), self.opaque
        if rng.random() < 0.05:
            header["language"] = rng.choice((Raw("1"), "", "x" * 1000, Raw("null")))
        return frame(st, json_header(header, fields), body), self.opaque

    def garbage(self) -> bytes:
        """Bytes for a throwaway connection: frames the codec must refuse, or half of one."""
        rng = self.rng
        code = rng.choice(list(self.templates))
        good, _ = self.request(rng.choice(self.templates[code]))
        kind = rng.randrange(12)
        if kind == 0:
            return rng.randbytes(rng.randrange(1, 200))
        if kind == 1:
            return struct.pack(">i", rng.choice((-1, 0, 1, 3, 2 ** 31 - 1, 16 << 20))) + good[4:]
        if kind == 2:
            return good[:4] + struct.pack(">i", (good[4] << 24) | rng.choice(
                (0xFFFFFF, len(good), 0))) + good[8:]
        if kind == 3:
            return good[:4] + bytes([rng.randrange(2, 256)]) + good[5:]
        if kind == 4:
            return good[:rng.randrange(1, len(good))]
        if kind == 5:
            return frame(SERIALIZE_JSON, rng.choice(
                (b"", b"{", b"[]", b"1", b'{"code":"x"}', b'{"code":1e400}', b'{"code":NaN}',
                 b'{"code":10,"extFields":[]}', b'{"code":10,"opaque":"x"}',
                 b'{"code":10,"flag":1e400}', b'{"code":10,"extFields":{"a":' * 2000,
                 b'{"code":10,"remark":"\\ud800"}', b"\xff" * 10, b'{"code":true}',
                 b'{"code":10,"version":"x"}', b'{"code":' + b"9" * 400 + b"}")), b"")
        if kind == 6:
            return frame(SERIALIZE_ROCKETMQ, rng.randbytes(rng.randrange(0, 40)), b"")
        if kind == 7:
            head = struct.pack(">hbhiii", 10, 0, 409, 1, 0, rng.choice((-1, 5, 1000)))
            return frame(SERIALIZE_ROCKETMQ, head + b"ab" + struct.pack(
                ">i", rng.choice((-1, 3, 1 << 30))) + b"\x00\x01k", b"")
        if kind == 8:
            return frame(SERIALIZE_ROCKETMQ, binary_header(
                {"code": 10, "flag": 0, "language": "JAVA", "opaque": 1, "version": 409},
                {"topic": "\udcff"}), b"")
        if kind == 9:  # a frame announcing more than is sent: the node must wait, not crash
            return struct.pack(">i", len(good) + 1000) + good[4:]
        if kind == 10:  # a response nobody asked for, then a request
            return frame(SERIALIZE_JSON, b'{"code":0,"flag":1,"opaque":99999}', b"") + good
        return good + rng.randbytes(rng.randrange(1, 50))

    def frames(self, count: int, addrs: dict[int, str]) -> Iterator[tuple[str, bytes, int]]:
        """`count` items (address, bytes, opaque); opaque 0 marks garbage for a throwaway
        connection. Codes are drawn evenly, so the rare ones get their share."""
        codes = sorted(self.templates)
        for _ in range(count):
            if self.rng.random() < 0.08:
                yield self.rng.choice(list(addrs.values())), self.garbage(), 0
                continue
            code = self.rng.choice(codes)
            data, opaque = self.request(self.rng.choice(self.templates[code]))
            yield addrs.get(code, self.rng.choice(list(addrs.values()))), data, opaque


def json_text(value: object) -> str:
    """JSON with Raw literals kept; str escaped as ASCII, so lone surrogates go as escapes."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{json_text(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def json_header(header: dict[str, object], fields: dict[str, Value]) -> bytes:
    return json_text({**header, "extFields": fields}).encode()


def binary_header(header: dict[str, object], fields: dict[str, Value]) -> bytes:
    """The ROCKETMQ serialization, written by hand so that it can carry what our encoder
    never writes (strings that are not UTF-8, out-of-range numbers cut to their width)."""
    def utf8(text: str) -> bytes:
        return text.encode("utf-8", "surrogatepass")

    ext = b"".join(struct.pack(">h", len(utf8(k)) & 0x7FFF) + utf8(k) + struct.pack(
        ">i", len(utf8(v))) + utf8(v) for k, v in fields.items())
    version = int(header["version"])  # type: ignore[call-overload]
    return struct.pack(">hbhiii", int(header["code"]) & 0x7FFF, 0,  # type: ignore[call-overload]
                       max(-32768, min(version, 32767)), int(header["opaque"]),  # type: ignore
                       0, 0) + struct.pack(">i", len(ext)) + ext


def frame(serialize_type: int, header: bytes, body: bytes) -> bytes:
    return struct.pack(">ii", 4 + len(header) + len(body),
                       (serialize_type << 24) | len(header)) + header + body


# -- load ---------------------------------------------------------------------------------


@dataclass
class Findings:
    """What a run saw: answers that are crashes, and how many frames got what."""

    seed: int
    sent: int = 0
    answered: int = 0
    unanswered: int = 0
    garbage: int = 0
    unconnected: int = 0  # frames not sent: this side could not open a connection
    crashes: list[str] = field(default_factory=list)

    def check(self, request: bytes, answer: RemotingCommand) -> None:
        if answer.code == ResponseCode.SYSTEM_ERROR and CRASH_REMARK.match(answer.remark or ""):
            cmd = decode_frame(request[4:])
            fields = {k: v[:80] for k, v in (cmd.ext_fields or {}).items()}
            self.crashes.append(f"code {cmd.code} {fields} body {cmd.body[:80]!r}: "
                                f"{answer.remark[:300]}")


class Link:
    """One fuzzing connection; answers are matched to requests by opaque."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.waiting: dict[int, asyncio.Future[RemotingCommand | None]] = {}
        self.task = asyncio.create_task(self._read(reader))

    @classmethod
    async def open(cls, addr: str) -> Link:
        host, port = addr.rsplit(":", 1)
        return cls(*await asyncio.open_connection(host, int(port)))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        decoder = FrameDecoder()
        try:
            while data := await reader.read(1 << 16):
                for cmd in decoder.feed(data):
                    fut = self.waiting.pop(cmd.opaque, None)
                    if fut is not None and not fut.done():
                        fut.set_result(cmd)
        except (OSError, ValueError):
            pass
        finally:
            for fut in self.waiting.values():
                if not fut.done():
                    fut.set_result(None)
            self.waiting.clear()

    @property
    def alive(self) -> bool:
        return not self.task.done() and not self.writer.is_closing()

    def send(self, data: bytes, opaque: int) -> asyncio.Future[RemotingCommand | None]:
        fut: asyncio.Future[RemotingCommand | None] = asyncio.get_running_loop().create_future()
        self.waiting[opaque] = fut
        self.writer.write(data)
        return fut

    async def close(self) -> None:
        self.writer.close()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def throwaway(addr: str, data: bytes, linger: float) -> None:
    """Garbage on its own connection: written, read from briefly, then dropped."""
    try:
        link = await Link.open(addr)
    except OSError:
        return
    try:
        link.writer.write(data)
        await asyncio.wait([link.task], timeout=linger)
    finally:
        await link.close()


async def run_frames(items: Iterator[tuple[str, bytes, int]], findings: Findings,
                     links_per_addr: int = 4, in_flight: int = 64,
                     timeout: float = ANSWER_TIMEOUT) -> None:
    """Send everything, at most `in_flight` unanswered at a time, over a few connections
    per address (reopened when the node drops one)."""
    links: dict[tuple[str, int], Link] = {}
    opening: dict[tuple[str, int], asyncio.Future[Link]] = {}
    slots = asyncio.Semaphore(in_flight)
    tasks: set[asyncio.Task] = set()

    async def connect(key: tuple[str, int], addr: str) -> Link:
        """The live link for `key`; senders that find it dropped wait for one replacement
        (each opening its own would leave all but one open until the end)."""
        link = links.get(key)
        if link is not None and link.alive:
            return link
        pending = opening.get(key)
        if pending is None:
            pending = opening[key] = asyncio.ensure_future(replace(key, addr, link))
            pending.add_done_callback(lambda _: opening.pop(key, None))
        return await pending

    async def replace(key: tuple[str, int], addr: str, dropped: Link | None) -> Link:
        if dropped is not None:
            await dropped.close()
        link = links[key] = await Link.open(addr)
        return link

    async def one(addr: str, data: bytes, opaque: int) -> None:
        try:
            if not opaque:
                findings.garbage += 1
                await throwaway(addr, data, 0.05)
                return
            try:
                link = await connect((addr, opaque % links_per_addr), addr)
            except OSError:  # the node is checked for life at the end
                findings.unconnected += 1
                return
            fut = link.send(data, opaque)
            findings.sent += 1
            try:
                answer = await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                findings.unanswered += 1
                return
            if answer is not None:
                findings.answered += 1
                findings.check(data, answer)
        finally:
            slots.release()

    for addr, data, opaque in items:
        await slots.acquire()
        task = asyncio.create_task(one(addr, data, opaque))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks)
    for link in links.values():
        await link.close()


# -- the node and what it must still do -----------------------------------------------------


def handled_codes(node: Node) -> dict[int, str]:
    """Request code -> the address that serves it, learnt by asking both servers about every
    code RocketMQ defines (an empty request; unknown codes answer REQUEST_CODE_NOT_SUPPORTED)."""
    codes = {v for k, v in vars(RC).items() if k.isupper() and isinstance(v, int)}
    served: dict[int, str] = {}

    async def probe(code: int, addr: str) -> None:
        link = await Link.open(addr)
        try:
            fut = link.send(frame(SERIALIZE_JSON, json_header(
                {"code": code, "flag": 0, "language": "JAVA", "opaque": code,
                 "version": 409}, {}), b""), code)
            answer = await asyncio.wait_for(fut, ANSWER_TIMEOUT)
            if answer is not None and answer.code != ResponseCode.REQUEST_CODE_NOT_SUPPORTED:
                served[code] = addr
        except asyncio.TimeoutError:
            served[code] = addr  # held: served, just slow
        finally:
            await link.close()

    async def probe_all() -> None:
        await asyncio.gather(*(probe(code, addr) for code in sorted(codes)
                               for addr in (node.namesrv, node.broker)))

    asyncio.run(probe_all())
    return served


def tree(root: Path, skip: Path) -> set[str]:
    """Every path under `root` except under `skip`, relative to `root`."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == skip:
            dirnames.clear()
            continue
        out.update(str((here / n).relative_to(root)) for n in [*dirnames, *filenames])
    return out


def crash_lines(node: Node) -> list[str]:
    return [line for line in node.lines if CRASH_LINE.search(line)]


def crash_signatures(lines: list[str]) -> dict[str, list]:
    """Each distinct crash in a log, as `REQUEST: Exception @ file:line` (the innermost frame
    of its traceback) -> [how often, the first message]: what an owner must fix. REQUEST is
    the request.crashed line's code, else the event logged with the traceback; a crash
    logged on one line (no traceback) counts as that line."""
    found: dict[str, list] = {}

    def add(key: str, message: str) -> None:
        found.setdefault(key, [0, message])[0] += 1

    code, where, in_traceback, recent = "?", "?", False, ["", "", ""]
    for line in lines:
        if "request.crashed" in line:
            match = re.search(r"code=(\S+)", line)
            code, in_traceback = match.group(1) if match else "?", False
            error, at = re.search(r"error=(\S+)", line), re.search(r"at=(\S+)", line)
            if error:  # a crash logged on one line, with where it happened
                add(f"{code}: {error.group(1)} @ {at.group(1) if at else '?'}",
                    line.split("request.crashed", 1)[1].strip()[:200])
        elif line.startswith("Traceback"):
            in_traceback, where = True, "?"
            if code == "?":
                code = _crash_context(recent)
        elif in_traceback and (frame_line := re.match(r'\s+File "(.+?)", line (\d+), in (\S+)',
                                                      line)):
            path, number, function = frame_line.groups()
            if "/rmqnode/" in path or where == "?":  # the innermost frame of ours
                where = f"{os.path.relpath(path)}:{number} in {function}"
        elif in_traceback and line and not line[0].isspace():
            add(f"{code}: {line.split(':', 1)[0]} @ {where}", line[:200])
            in_traceback, code = False, "?"
        recent = [*recent[1:], line]
    return found


def _crash_context(recent: list[str]) -> str:
    """What a traceback that is not a handler's was logged under: the log event, asyncio's
    'Fatal error on transport' (a crash in data_received) or a task nobody awaited."""
    for line in reversed(recent):
        if LOG_LINE.match(line):
            return line.split()[4]  # date time LEVEL logger event
        if line.startswith(("Fatal error on transport", "Task exception was never retrieved")):
            return line.split(" TCP")[0]
        if line.startswith("future: <Task") and (coro := re.search(r"coro=<(\S+)\(", line)):
            return f"task {coro.group(1)}"
    return "?"


def still_serves(node: Node, topic: str, group: str, sign: Signer = _unsigned) -> list[str]:
    """What is wrong with the node's basic service: a topic created, a message sent with
    SEND_MESSAGE_V2 and pulled back with PULL_MESSAGE (empty when all is well)."""
    created = call(node.broker, RC.UPDATE_AND_CREATE_TOPIC, sign({
        "topic": topic, "defaultTopic": "TBW102", "readQueueNums": 1, "writeQueueNums": 1,
        "perm": 6, "topicFilterType": "SINGLE_TAG", "topicSysFlag": 0, "order": "false"}, b""))
    if created.code != 0:
        return [f"UPDATE_AND_CREATE_TOPIC: {created.code} {created.remark}"]
    sent = call(node.broker, RC.SEND_MESSAGE_V2, sign({
        "a": PRODUCER, "b": topic, "c": "TBW102", "d": 1, "e": 0, "f": 0,
        "g": int(time.time() * 1000), "h": 0, "i": "WAIT\x01true\x02", "j": 0, "k": "false",
        "m": "false"}, b"still alive"), b"still alive")
    if sent.code != 0:
        return [f"SEND_MESSAGE_V2: {sent.code} {sent.remark}"]
    pulled = call(node.broker, RC.PULL_MESSAGE, sign({
        "consumerGroup": group, "topic": topic, "queueId": 0, "queueOffset": 0,
        "maxMsgNums": 1, "sysFlag": 4, "commitOffset": 0, "suspendTimeoutMillis": 0,
        "subscription": "*", "subVersion": 0, "expressionType": "TAG"}, b""))
    if pulled.code != 0 or b"still alive" not in pulled.body:
        return [f"PULL_MESSAGE: {pulled.code} {pulled.remark} body {pulled.body[:100]!r}"]
    return []


def sandbox(root: Path) -> tuple[Path, Path]:
    """(home, outside): the node's home three levels below `root` so that hostile relative
    names of any depth land in `root`, which is watched; `outside` is home's watched sibling."""
    home = root / "a" / "b" / "c" / "home"
    home.mkdir(parents=True)
    outside = home.parent / OUTSIDE
    outside.mkdir()
    return home, outside


def templates_by_code(node: Node, outside: Path) -> dict[int, list[Template]]:
    by_code: dict[int, list[Template]] = {}
    for template in [*own_templates(node.broker, outside), *captured_templates()]:
        by_code.setdefault(template.code, []).append(template)
    return by_code


def seed_node(node: Node, sign: Signer = _unsigned) -> None:
    """The fuzzed topic exists and holds messages, so requests reach past 'topic not exist'."""
    call(node.broker, RC.UPDATE_AND_CREATE_TOPIC, sign({
        "topic": TOPIC, "readQueueNums": 4, "writeQueueNums": 4, "perm": 6}, b""))
    for queue_id in range(4):
        for i in range(3):
            call(node.broker, RC.SEND_MESSAGE_V2, sign({
                "a": PRODUCER, "b": TOPIC, "c": "TBW102", "d": 4, "e": queue_id, "f": 0,
                "g": 0, "h": 0, "i": f"KEYS\x01k{i}\x02TAGS\x01t\x02"}, b"seed"), b"seed")


def test_fuzz_every_request_code(tmp_path, start_node):
    fuzz(tmp_path, start_node, TEST_FRAMES)


def fuzz(tmp_path: Path, start_node, frames: int, *args: str, sign: Signer = _unsigned,
         home: Path | None = None) -> None:
    """`frames` hostile frames at a node started with `args` (in `home`, made by sandbox),
    signed by `sign` where the fuzzer chooses to; then every check of the module."""
    if home is None:
        home, outside = sandbox(tmp_path)
    else:
        outside = home.parent / OUTSIDE
    node = start_node("--namesrv-port", "0", "--listen-port", "0", "--store",
                      str(home / "store"), *args, home=home)
    before = tree(tmp_path, home)
    served = handled_codes(node)
    templates = templates_by_code(node, outside)
    missing = sorted(set(served) - set(templates))
    assert not missing, f"request codes the node serves with no fuzz template: {missing}"
    seed_node(node, sign)

    fuzzer = Fuzzer(SEED, outside, templates, sign=None if sign is _unsigned else sign)
    findings = Findings(SEED)
    started = time.monotonic()
    asyncio.run(run_frames(fuzzer.frames(frames, served), findings))
    elapsed = time.monotonic() - started

    where = f"seed {SEED} (RMQ_FUZZ_SEED), {frames} frames in {elapsed:.1f} s"
    problems = [f"answer: {c}" for c in dict.fromkeys(findings.crashes)]
    problems += [f"created outside the home: {p}" for p in sorted(tree(tmp_path, home) - before)]
    problems += still_serves(node, "FuzzStillServes", "FuzzStillServesGroup", sign)
    code = node.stop()
    problems += [f"SIGTERM exit code {code}"] if code != 0 else []
    problems += [f"crash x{n}: {sig}: {example}"
                 for sig, (n, example) in crash_signatures(node.lines).items()]
    problems += [f"log: {line}" for line in crash_lines(node)
                 if "Traceback" not in line and "request.crashed" not in line]
    assert findings.answered > frames // 2, f"{where}: only {findings} answered"
    assert not problems, f"{where}: {len(problems)} problems:\n" + "\n".join(problems[:80])

"""What the fuzz (tests/test_fuzz.py, benchmarks/fuzz_soak.py) builds its requests from: a
valid template of every request code the node answers (the captured requests of real Java
clients and mqadmin, and our own for the codes no capture holds), and the hostile values its
mutations put into them."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from rmqnode.message import BatchEntry, encode_batch
from rmqnode.net.codec import SERIALIZE_JSON, SERIALIZE_ROCKETMQ, decode_frame
from rmqnode.net.codes import RequestCode as RC
from wire import exchanges, flows

TOPIC, GROUP, PRODUCER = "FuzzTopic", "FuzzGroup", "FuzzProducer"
REPLY_TOPIC = "DefaultCluster_REPLY_TOPIC"  # created at start, as Java does
OUTSIDE = "outside"  # the watched sibling of the node's home that hostile names aim at


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

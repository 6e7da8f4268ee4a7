"""The properties rmqnode stores, byte for byte against what a real 4.9.8 broker stored for
the same kind of message (the Java store fixture): a plain send, a delayed message parked and
delivered, a consumer's send-back to retry and to the DLQ, a transaction's half message, its
commit and its op record; and `rmqctl message trace` on client trace records."""

from __future__ import annotations

import json
import time

import pytest

from remoting import call, call_json, send
from rmqctl.client.consumer import parse_messages
from rmqnode.message import MessageExt, decode_offset_msg_id
from rmqnode.net.codes import RequestCode
from rmqnode.storage.javamap import java_order
from test_rmqctl_messages import rmqctl
from test_store_java import all_records

FAST = " ".join(["1s"] * 18)


@pytest.fixture(scope="module")
def java(java_store_pristine) -> list[MessageExt]:
    return [rec for _, rec in all_records(java_store_pristine)]


@pytest.fixture
def node(start_node):
    return start_node("--namesrv-port", "0", "--listen-port", "0",
                      "-D", f"messageDelayLevel={FAST}")


def first(records: list[MessageExt], topic: str, **props: str) -> MessageExt:
    return next(r for r in records if r.topic == topic
                and all(r.properties.get(k) == v for k, v in props.items()))


def as_sent(rec: MessageExt) -> dict[str, str]:
    """The properties a Java producer sent for a stored record, as its own HashMap walked
    them, with WAIT and without what the broker added (CLUSTER, which the broker must put in
    its bucket, not last; REAL_TOPIC and REAL_QID)."""
    return {"WAIT": "true", **{k: v for k, v in rec.properties.items()
                               if k not in ("CLUSTER", "REAL_TOPIC", "REAL_QID")}}


def stored_at(broker: str, offset_id: str) -> MessageExt:
    _, phy = decode_offset_msg_id(offset_id)
    resp = call(broker, RequestCode.VIEW_MESSAGE_BY_ID, {"offset": phy})
    assert resp.code == 0, resp.remark
    return parse_messages(resp.body)[0]


def by_key(broker: str, topic: str, key: str, count: int = 1) -> list[MessageExt]:
    """The records of TOPIC indexed under KEY, waiting for `count` of them."""
    deadline = time.monotonic() + 15
    while True:
        resp = call(broker, RequestCode.QUERY_MESSAGE, {
            "topic": topic, "key": key, "maxNum": 32, "beginTimestamp": 0,
            "endTimestamp": int(time.time() * 1000) + 60_000})
        found = parse_messages(resp.body) if resp.code == 0 else []
        if len(found) >= count:
            return sorted(found, key=lambda m: m.commit_log_offset)
        assert time.monotonic() < deadline, f"{topic}/{key}: {resp.code} {resp.remark}"
        time.sleep(0.2)


def test_java_order_is_the_hashmap_walk_of_every_record_java_stored(java):
    for rec in java:
        assert list(java_order(rec.properties)) == list(rec.properties)


def test_a_send_is_stored_without_wait_in_hashmap_order(node, java):
    ref = first(java, "PubA", idx="0")
    sent = send(node.broker, "PubA", b"x", **as_sent(ref))
    got = stored_at(node.broker, sent["msgId"])
    assert "WAIT" not in got.properties
    assert got.properties_text == ref.properties_text


def test_a_delayed_message_keeps_delay_real_topic_real_qid_and_wait(node, java):
    parked_ref = first(java, "SCHEDULE_TOPIC_XXXX", KEYS="d0")
    delivered_ref = first(java, "PubB", KEYS="d0")
    send(node.broker, "PubB", b"d", **as_sent(parked_ref))
    [parked] = by_key(node.broker, "SCHEDULE_TOPIC_XXXX", "d0")
    assert parked.properties_text == parked_ref.properties_text
    [delivered] = by_key(node.broker, "PubB", "d0")
    assert delivered.properties_text == delivered_ref.properties_text
    assert delivered.properties["DELAY"] == "1"  # getDelayTimeLevel() on the consumer


def test_send_back_to_retry_and_to_the_dlq(node, java):
    original_ref = first(java, "PubA", idx="0")
    retry_ref = first(java, "SCHEDULE_TOPIC_XXXX", UNIQ_KEY=original_ref.msg_id)
    sent = send(node.broker, "PubA", b"x", **as_sent(original_ref))
    original = stored_at(node.broker, sent["msgId"])
    for delay in (0, -1):
        resp = call(node.broker, RequestCode.CONSUMER_SEND_MSG_BACK, {
            "offset": original.commit_log_offset, "group": "GID_PUB", "delayLevel": delay,
            "originMsgId": original.msg_id, "originTopic": "PubA", "unitMode": False,
            "maxReconsumeTimes": 16})
        assert resp.code == 0, resp.remark
    [parked] = by_key(node.broker, "SCHEDULE_TOPIC_XXXX", original.msg_id)
    origin = original.offset_msg_id  # Java's getMsgId() of a message read by offset
    assert parked.properties == retry_ref.properties | {"ORIGIN_MESSAGE_ID": origin}
    assert list(parked.properties) == list(retry_ref.properties)
    assert parked.reconsume_times == 1

    [dead] = by_key(node.broker, "%DLQ%GID_PUB", original.msg_id)
    expected = dict(original.properties, RETRY_TOPIC="PubA", WAIT="false", DELAY="0",
                    ORIGIN_MESSAGE_ID=origin)
    assert dead.properties_text == "\x02".join(f"{k}\x01{v}" for k, v in
                                               java_order(expected).items())
    topics = call_json(node.broker, RequestCode.GET_ALL_TOPIC_CONFIG)["topicConfigTable"]
    assert topics["%DLQ%GID_PUB"]["perm"] == 6, "4.9.8 makes the DLQ readable"


def test_send_back_follows_java_order_of_checks(node):
    """asyncConsumerSendMsgBack: a group without retry queues is answered success and nothing
    is stored; the retry topic is made even for a message that goes straight to the DLQ."""
    from rmqnode.net import fastjson
    sent = send(node.broker, "Backs", b"x")
    _, offset = decode_offset_msg_id(sent["msgId"])

    def back(group: str) -> int:
        return call(node.broker, RequestCode.CONSUMER_SEND_MSG_BACK, {
            "offset": offset, "group": group, "delayLevel": -1, "originMsgId": sent["msgId"],
            "originTopic": "Backs", "unitMode": False, "maxReconsumeTimes": 16}).code

    assert call(node.broker, RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
                body=fastjson.dumpb({"groupName": "NoRetry", "retryQueueNums": 0})).code == 0
    assert back("NoRetry") == 0
    assert back("ToDlq") == 0
    topics = call_json(node.broker, RequestCode.GET_ALL_TOPIC_CONFIG)["topicConfigTable"]
    assert "%RETRY%NoRetry" not in topics and "%DLQ%NoRetry" not in topics
    assert "%RETRY%ToDlq" in topics and "%DLQ%ToDlq" in topics


def test_transaction_half_commit_and_op_records(node, java):
    half_ref = java[[r.topic for r in java].index("RMQ_SYS_TRANS_HALF_TOPIC")]
    uniq = half_ref.properties["UNIQ_KEY"]
    commit_ref = first(java, "PubTx", UNIQ_KEY=uniq)
    op_ref = first(java, "RMQ_SYS_TRANS_OP_HALF_TOPIC")
    sent = send(node.broker, "PubTx", b"t", **as_sent(half_ref))
    half = stored_at(node.broker, sent["msgId"])
    assert half.topic == "RMQ_SYS_TRANS_HALF_TOPIC"
    assert half.properties_text == half_ref.properties_text
    resp = call(node.broker, RequestCode.END_TRANSACTION, {
        "producerGroup": "PID_PUB_TX", "tranStateTableOffset": half.queue_offset,
        "commitLogOffset": half.commit_log_offset, "commitOrRollback": 8,
        "fromTransactionCheck": False, "msgId": uniq, "transactionId": uniq})
    assert resp.code == 0, resp.remark
    [committed] = by_key(node.broker, "PubTx", uniq)
    assert committed.properties_text == commit_ref.properties_text
    assert committed.sys_flag & 0xC == 0x8
    resp = call(node.broker, RequestCode.VIEW_MESSAGE_BY_ID,
                {"offset": committed.commit_log_offset + committed.store_size})
    assert resp.code == 0, resp.remark
    [op] = parse_messages(resp.body)
    assert op.properties_text == op_ref.properties_text
    assert op.body == str(half.queue_offset).encode()


def trace_body(msg_id: str, topic: str, now: int) -> str:
    """Pub, SubBefore and SubAfter records of one message, as TraceDataEncoder writes them and
    AsyncTraceDispatcher packs them into one trace message."""
    c, f = "\x01", "\x02"
    pub = c.join(["Pub", str(now), "DefaultRegion", "PG", topic, msg_id, "TagA", "k1",
                  "127.0.0.1:10911", "5", "3", "0", "7F00000100002A9F0000000000000000",
                  "true"]) + f
    before = c.join(["SubBefore", str(now + 10), "DefaultRegion", "CG", "req1", msg_id, "0",
                     "k1"]) + f
    after = c.join(["SubAfter", "req1", msg_id, "7", "true", "k1", "0", str(now + 17),
                    "CG"]) + f
    return pub + before + after


def test_message_trace_reads_the_trace_topic(start_node):
    node = start_node("--namesrv-port", "0", "--listen-port", "0",
                      "-D", "traceTopicEnable=true")
    topics = call_json(node.broker, RequestCode.GET_ALL_TOPIC_CONFIG)["topicConfigTable"]
    assert topics["RMQ_SYS_TRACE_TOPIC"]["readQueueNums"] == 1
    sent = send(node.broker, "Orders", b"hello", KEYS="k1", TAGS="TagA",
                UNIQ_KEY="7F0000014DAC478E98D07BF9B51D1388")
    msg_id = "7F0000014DAC478E98D07BF9B51D1388"
    assert sent["msgId"] != msg_id  # the response names the offset id
    now = int(time.time() * 1000)
    send(node.broker, "RMQ_SYS_TRACE_TOPIC", trace_body(msg_id, "Orders", now).encode(),
         KEYS=f"{msg_id} k1")
    send(node.broker, "RMQ_SYS_TRACE_TOPIC", b"\x01\x02Pub\x01garbage\x02", KEYS=msg_id)
    by_key(node.broker, "RMQ_SYS_TRACE_TOPIC", msg_id, 2)
    for given in (msg_id, sent["msgId"]):  # either kind of id
        out = rmqctl(node.namesrv, "-o", "ndjson", "message", "trace", given, "-t", "Orders")
        assert out.returncode == 0, out.stderr
        rows = [json.loads(line) for line in out.stdout.splitlines()]
        assert [(r["type"], r["group"]) for r in rows] == [
            ("Pub", "PG"), ("SubBefore", "CG"), ("SubAfter", "CG")]
        assert rows[0]["topic"] == "Orders" and rows[0]["success"] is True
        assert rows[2]["costTime"] == 7 and rows[0]["clientHost"].startswith("127.0.0.1:")
        assert all(type(r["timestamp"]) is int for r in rows), "numbers stay numbers in JSON"
    missing = rmqctl(node.namesrv, "message", "trace", "7F0000014DAC478E98D07BF9B51D1399")
    assert missing.returncode == 3 and "-g GROUP" in missing.stderr



def test_batch_properties_as_message_ext_batch_encoder_writes_them(node):
    """MessageExtBatchEncoder (4.9.8): each entry's properties as the producer wrote them
    (Java's client writes no trailing separator), a separator, then the batch header's
    properties (WAIT kept) with CLUSTER, in Java's HashMap order."""
    from rmqnode.message import BatchEntry, encode_batch
    from rmqnode.storage.javamap import properties_string
    entries = [BatchEntry(b"one", {"KEYS": "k1", "UNIQ_KEY": "U1"}), BatchEntry(b"two")]
    resp = call(node.broker, RequestCode.SEND_BATCH_MESSAGE, {
        "a": "PG", "b": "Batched", "c": "TBW102", "d": 4, "e": 0, "f": 0, "g": 0, "h": 0,
        "i": "WAIT\x01true", "m": "true"}, encode_batch(entries))
    assert resp.code == 0, resp.remark
    tail = properties_string({"WAIT": "true", "CLUSTER": "DefaultCluster"})
    first_id, second_id = resp.ext_fields["msgId"].split(",")
    one, two = stored_at(node.broker, first_id), stored_at(node.broker, second_id)
    assert one.properties_text == "KEYS\x01k1\x02UNIQ_KEY\x01U1\x02" + tail
    assert two.properties_text == tail
    assert one.properties["KEYS"] == "k1" and one.properties["CLUSTER"] == "DefaultCluster"

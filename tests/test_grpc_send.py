"""The producer side of the gRPC endpoint (SendMessage, EndTransaction, transaction checks
over Telemetry) with raw grpcio calls and our own stubs against a real rmqnode, read back by a
remoting consumer (PULL_MESSAGE): what a 5.x producer sends is stored as the Java proxy stores
it (spec grpc-proxy.md §4.4, §4.9, §5.2, §5.6). Also the 5.x topic attribute message.type
through UPDATE_AND_CREATE_TOPIC and rmqctl."""

from __future__ import annotations

import gzip
import json
import queue
import threading
import time

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from rmqnode.grpc.producer import consistent_hash
from rmqnode.grpc.v2 import definition_pb2 as d
from rmqnode.grpc.v2 import service_pb2 as s
from rmqnode.grpc.v2.service_pb2_grpc import MessagingServiceStub
from rmqnode.message import MessageExt, java_hash
from rmqnode.net.codes import RequestCode, ResponseCode
from rmqnode.storage.records import decode_record
from tests.remoting import call, call_json
from tests.test_grpc_server import create_topic, metadata

CHECKS = ("-D", "transactionCheckInterval=500", "-D", "transactionTimeOut=500")


@pytest.fixture
def node(start_node):
    return start_node("--namesrv-port", "0", "--listen-port", "0", "--grpc-port", "0",
                      "-D", "maxMessageSize=65536", *CHECKS,
                      roles=("namesrv", "broker", "grpc"))


@pytest.fixture
def stub(node):
    with grpc.insecure_channel(node.addrs["grpc"]) as channel:
        yield MessagingServiceStub(channel)


_ids = iter(range(1 << 30))


def message(topic: str, body: bytes = b"hello", *, message_id: str | None = None,
            kind: int = d.NORMAL, **system: object) -> d.Message:
    """One message as the Python 5.1.2 producer builds it (fixtures/grpc)."""
    user = system.pop("user", {})
    born = Timestamp(seconds=int(time.time()))
    sp = d.SystemProperties(message_id=message_id or f"0102FC000000014FCD0B1D9C55{next(_ids):08X}",
                            body_encoding=d.IDENTITY, message_type=kind, born_timestamp=born,
                            born_host="192.0.2.2", **system)
    return d.Message(topic=d.Resource(name=topic), user_properties=user, system_properties=sp,
                     body=body)


def send(stub: MessagingServiceStub, *messages: d.Message) -> s.SendMessageResponse:
    return stub.SendMessage(s.SendMessageRequest(messages=messages), metadata=metadata())


def send_ok(stub: MessagingServiceStub, msg: d.Message) -> s.SendResultEntry:
    resp = send(stub, msg)
    assert resp.status.code == d.OK, resp.status
    [entry] = resp.entries
    assert entry.status.code == d.OK and entry.message_id == msg.system_properties.message_id
    return entry


def code(stub: MessagingServiceStub, *messages: d.Message) -> int:
    resp = send(stub, *messages)
    assert not resp.entries  # a refused request stores nothing
    return resp.status.code


def pull(node, topic: str, queue_id: int = 0, at_least: int = 1) -> list[MessageExt]:
    """What a remoting consumer gets from the queue from offset 0, once it holds `at_least`
    messages (queues are written just after the put) or after 3 s."""
    deadline = time.time() + 3
    while True:
        found = _pull_once(node, topic, queue_id)
        if len(found) >= at_least or time.time() > deadline:
            return found
        time.sleep(0.05)


def _pull_once(node, topic: str, queue_id: int) -> list[MessageExt]:
    resp = call(node.broker, RequestCode.PULL_MESSAGE, {
        "consumerGroup": "PullG", "topic": topic, "queueId": queue_id, "queueOffset": 0,
        "maxMsgNums": 32, "sysFlag": 4, "commitOffset": 0, "suspendTimeoutMillis": 0,
        "subscription": "*", "subVersion": 0})
    if resp.code != ResponseCode.SUCCESS:
        return []
    out, pos = [], 0
    while pos < len(resp.body):
        record = decode_record(resp.body, pos)
        assert isinstance(record, MessageExt)
        out.append(record)
        pos += record.store_size
    return out


def end(stub: MessagingServiceStub, topic: str, transaction_id: str, resolution: int,
        source: int = d.SOURCE_CLIENT) -> int:
    return stub.EndTransaction(s.EndTransactionRequest(
        topic=d.Resource(name=topic), message_id=transaction_id, transaction_id=transaction_id,
        resolution=resolution, source=source), metadata=metadata()).status.code


def test_normal_send_is_stored_as_the_proxy_stores_it(node, stub):
    create_topic(node, "GT", 1)
    msg = message("GT", b"hello", tag="TagA", keys=["k1", "k2"], user={"color": "red"},
                  trace_context="00-abc-01")
    entry = send_ok(stub, msg)
    assert entry.offset == 0 and entry.transaction_id == ""
    [stored] = pull(node, "GT")
    props = stored.properties
    assert stored.body == b"hello" and stored.sys_flag == 0
    assert props["UNIQ_KEY"] == msg.system_properties.message_id  # the client's id
    assert props["TAGS"] == "TagA" and props["KEYS"] == "k1 k2" and props["color"] == "red"
    assert props["PGROUP"] == "GT" and props["TRACE_CONTEXT"] == "00-abc-01"
    assert props["__BORNHOST"] == "192.0.2.2"
    assert props["BORN_TIMESTAMP"] == str(msg.system_properties.born_timestamp.seconds * 1000)
    assert stored.born_timestamp == msg.system_properties.born_timestamp.seconds * 1000
    assert props["CLUSTER"] == "DefaultCluster" and "WAIT" not in props  # as 4.9.8 stores
    assert stored.born_host_text.startswith("127.0.0.1:")  # the connection's address
    # The stored message is found by the client's id, as mqadmin queryMsgById finds it.
    found = call(node.broker, RequestCode.QUERY_MESSAGE, {
        "topic": "GT", "key": msg.system_properties.message_id, "maxNum": 1,
        "beginTimestamp": 0, "endTimestamp": 2**62})
    assert found.code == ResponseCode.SUCCESS and b"hello" in found.body


def test_gzip_body_is_stored_inflated(node, stub):
    create_topic(node, "GZ", 1)
    msg = message("GZ", gzip.compress(b"x" * 1000))
    msg.system_properties.body_encoding = d.GZIP
    send_ok(stub, msg)
    assert pull(node, "GZ")[0].body == b"x" * 1000
    corrupt = message("GZ", b"not gzip")
    corrupt.system_properties.body_encoding = d.GZIP
    assert code(stub, corrupt) == d.MESSAGE_CORRUPTED
    bomb = message("GZ", gzip.compress(b"\0" * 70000))  # inflates past maxMessageSize
    bomb.system_properties.body_encoding = d.GZIP
    assert code(stub, bomb) == d.MESSAGE_BODY_TOO_LARGE


def test_fifo_messages_of_a_group_share_a_queue_in_order(node, stub):
    create_topic(node, "GF", 8, "+message.type=FIFO")
    for body in (b"f1", b"f2", b"f3"):
        send_ok(stub, message("GF", body, kind=d.FIFO, message_group="g1"))
    queue_id = consistent_hash(java_hash("g1"), 8)
    stored = pull(node, "GF", queue_id)
    assert [m.body for m in stored] == [b"f1", b"f2", b"f3"]
    assert all(m.properties["__SHARDINGKEY"] == "g1" for m in stored)
    assert sum(len(pull(node, "GF", q, at_least=0)) for q in range(8)) == 3


def test_consistent_hash_spreads_and_stays():
    """Guava's jump hash: stable per key, within range, and a bucket added moves only
    the keys that land on the new bucket."""
    keys = [java_hash(f"group-{i}") for i in range(2000)]
    four = [consistent_hash(k, 4) for k in keys]
    five = [consistent_hash(k, 5) for k in keys]
    assert set(four) == {0, 1, 2, 3}
    assert all(b == a or b == 4 for a, b in zip(four, five))
    assert 300 < five.count(4) < 500


def test_message_type_must_match_the_topic(node, stub):
    create_topic(node, "GN", 2)
    create_topic(node, "GF2", 2, "+message.type=FIFO")
    create_topic(node, "GM", 2, "+message.type=MIXED")
    resp = send(stub, message("GF2", kind=d.NORMAL))
    assert resp.status.code == d.MESSAGE_PROPERTY_CONFLICT_WITH_TYPE
    assert resp.status.message == ("TopicMessageType validate failed, the expected type is "
                                   "FIFO, but actual type is NORMAL")
    # The type comes from the properties, not from what the message says it is.
    assert code(stub, message("GN", kind=d.NORMAL, message_group="g")) == \
        d.MESSAGE_PROPERTY_CONFLICT_WITH_TYPE
    assert code(stub, message("GN", kind=d.TRANSACTION)) == d.MESSAGE_PROPERTY_CONFLICT_WITH_TYPE
    for kind, extra in ((d.NORMAL, {}), (d.FIFO, {"message_group": "g"}),
                        (d.DELAY, {"delivery_timestamp": Timestamp(seconds=1)})):
        send_ok(stub, message("GM", kind=kind, **extra))


def test_delivery_timestamp_maps_onto_the_next_delay_level(node, stub):
    create_topic(node, "GD", 1, "+message.type=DELAY")
    due = int(time.time() * 1000) + 3000
    when = Timestamp()
    when.FromMilliseconds(due)
    send_ok(stub, message("GD", b"later", kind=d.DELAY, delivery_timestamp=when))
    past = send_ok(stub, message("GD", b"now", kind=d.DELAY,
                                 delivery_timestamp=Timestamp(seconds=1)))
    assert past.offset == 0  # a time passed already: stored on the topic at once
    [now] = pull(node, "GD")
    assert now.body == b"now" and now.properties["TIMER_DELIVER_MS"] == "1000"
    assert "DELAY" not in now.properties
    while time.time() * 1000 < due:
        assert [m.body for m in pull(node, "GD", at_least=0)] == [b"now"]  # never early
        time.sleep(0.5)
    time.sleep(1.5)  # level 2 (5 s) is the shortest one not shorter than 3 s
    later = pull(node, "GD", at_least=2)[1]
    assert later.body == b"later" and later.properties["TIMER_DELIVER_MS"] == str(due)
    assert later.properties["DELAY"] == "2" and later.store_timestamp >= due

    two_days = Timestamp(seconds=int(time.time()) + 2 * 86400)
    assert code(stub, message("GD", kind=d.DELAY, delivery_timestamp=two_days)) == \
        d.ILLEGAL_DELIVERY_TIME
    three_hours = Timestamp(seconds=int(time.time()) + 3 * 3600)  # past the longest level
    resp = send(stub, message("GD", kind=d.DELAY, delivery_timestamp=three_hours))
    assert resp.status.code == d.ILLEGAL_DELIVERY_TIME and "7200000" in resp.status.message


def test_transaction_commit_and_rollback(node, stub):
    create_topic(node, "GX", 1, "+message.type=TRANSACTION")
    commit = message("GX", b"commit-me", kind=d.TRANSACTION)
    rollback = message("GX", b"roll-me-back", kind=d.TRANSACTION)
    for msg in (commit, rollback):
        entry = send_ok(stub, msg)
        assert entry.transaction_id == msg.system_properties.message_id
    assert pull(node, "GX", at_least=0) == []  # halves are hidden
    assert end(stub, "GX", commit.system_properties.message_id, d.COMMIT) == d.OK
    assert end(stub, "GX", rollback.system_properties.message_id, d.ROLLBACK) == d.OK
    [committed] = pull(node, "GX")
    assert committed.body == b"commit-me" and committed.properties["PGROUP"] == "GX"
    assert committed.properties["UNIQ_KEY"] == commit.system_properties.message_id
    # Ended once: a second answer finds no open half message, nothing is stored twice.
    assert end(stub, "GX", commit.system_properties.message_id, d.COMMIT) == \
        d.INTERNAL_SERVER_ERROR
    assert end(stub, "GX", "", d.COMMIT) == d.INVALID_TRANSACTION_ID
    assert end(stub, "GX", "0102FFFF", d.COMMIT) == d.INTERNAL_SERVER_ERROR
    assert end(stub, "GX", commit.system_properties.message_id,
               d.TRANSACTION_RESOLUTION_UNSPECIFIED) == d.OK
    time.sleep(0.2)
    assert len(pull(node, "GX", at_least=2)) == 1
    # The half's producer group is its topic: another topic's producer cannot end it.
    create_topic(node, "GX2", 1, "+message.type=TRANSACTION")
    other = message("GX", b"other", kind=d.TRANSACTION)
    send_ok(stub, other)
    assert end(stub, "GX2", other.system_properties.message_id, d.COMMIT) == \
        d.INTERNAL_SERVER_ERROR


def test_orphaned_transaction_is_recovered_over_telemetry(node, stub):
    """The checker asks the producer of group = topic over its Telemetry stream; the
    producer's EndTransaction(SERVER_CHECK) commits the half message."""
    create_topic(node, "GO", 1, "+message.type=TRANSACTION")
    outbox: queue.Queue = queue.Queue()
    received: queue.Queue = queue.Queue()
    settings = d.Settings(client_type=d.PRODUCER, publishing=d.Publishing(
        topics=[d.Resource(name="GO")], max_body_size=4 << 20, validate_message_type=True),
        request_timeout=Duration(seconds=3))
    outbox.put(s.TelemetryCommand(settings=settings))

    def commands():
        while (command := outbox.get()) is not None:
            yield command

    stream = stub.Telemetry(commands(), metadata=metadata())

    def read() -> None:
        try:
            for command in stream:
                received.put(command)
        except grpc.RpcError:  # cancelled at the end of the test
            pass
    threading.Thread(target=read, daemon=True).start()
    try:
        assert received.get(timeout=5).status.code == d.OK  # the settings reply
        orphan = message("GO", b"orphan", kind=d.TRANSACTION, user={"k": "v"})
        send_ok(stub, orphan)
        command = received.get(timeout=10)
        recover = command.recover_orphaned_transaction_command
        assert recover.transaction_id == orphan.system_properties.message_id
        assert recover.message.topic.name == "GO" and recover.message.body == b"orphan"
        assert recover.message.system_properties.message_type == d.TRANSACTION
        assert dict(recover.message.user_properties) == {"k": "v"}
        assert end(stub, "GO", recover.transaction_id, d.COMMIT, d.SOURCE_SERVER_CHECK) == d.OK
        assert [m.body for m in pull(node, "GO")] == [b"orphan"]
    finally:
        outbox.put(None)
        stream.cancel()


def test_refusals(node, stub):
    create_topic(node, "GR", 1)
    assert code(stub) == d.MESSAGE_CORRUPTED
    create_topic(node, "GR2", 1)
    assert code(stub, message("GR"), message("GR2")) == d.MESSAGE_CORRUPTED
    assert code(stub, message("NoSuchTopic")) == d.TOPIC_NOT_FOUND
    assert code(stub, message("GR", b"")) == d.MESSAGE_BODY_EMPTY
    assert code(stub, message("GR", b"x" * 65537)) == d.MESSAGE_BODY_TOO_LARGE
    send_ok(stub, message("GR", b"x" * 65536))
    assert code(stub, message("GR", message_id=" ")) == d.ILLEGAL_MESSAGE_ID
    assert code(stub, message("GR", message_id="id\x01UNIQ_KEY")) == d.ILLEGAL_MESSAGE_ID
    assert code(stub, message("GR", tag="a||b")) == d.ILLEGAL_MESSAGE_TAG
    assert code(stub, message("GR", tag=" ")) == d.ILLEGAL_MESSAGE_TAG
    assert code(stub, message("GR", keys=["ok", "bad\x02key"])) == d.ILLEGAL_MESSAGE_KEY
    assert code(stub, message("GR", user={"UNIQ_KEY": "x"})) == d.ILLEGAL_MESSAGE_PROPERTY_KEY
    assert code(stub, message("GR", user={"k": "v\x02DELAY\x013"})) == \
        d.ILLEGAL_MESSAGE_PROPERTY_KEY
    assert code(stub, message("GR", user={f"k{i}": "v" for i in range(129)})) == \
        d.MESSAGE_PROPERTIES_TOO_LARGE
    assert code(stub, message("GR", user={"big": "v" * 17000})) == \
        d.MESSAGE_PROPERTIES_TOO_LARGE
    create_topic(node, "GRF", 1, "+message.type=FIFO")
    assert code(stub, message("GRF", kind=d.FIFO, message_group="g" * 64)) == \
        d.ILLEGAL_MESSAGE_GROUP
    send_ok(stub, message("GRF", kind=d.FIFO, message_group="g" * 63))
    for topic in ("", "a b", "../../etc", "x" * 128, "TBW102", "RMQ_SYS_TRANS_HALF_TOPIC",
                  "SCHEDULE_TOPIC_XXXX", "rmq_sys_x"):
        assert code(stub, message(topic)) == d.ILLEGAL_TOPIC, topic
    recovery = Duration(seconds=7200)
    create_topic(node, "GRX", 1, "+message.type=TRANSACTION")
    assert code(stub, message("GRX", kind=d.TRANSACTION,
                              orphaned_transaction_recovery_duration=recovery)) == d.BAD_REQUEST
    call_ok = call(node.broker, RequestCode.UPDATE_AND_CREATE_TOPIC, {
        "topic": "GRO", "readQueueNums": 1, "writeQueueNums": 1, "perm": 4,
        "topicFilterType": "SINGLE_TAG", "topicSysFlag": 0, "order": False})
    assert call_ok.code == 0
    assert code(stub, message("GRO")) == d.FORBIDDEN  # read-only topic
    # Nothing refused reached the store.
    assert len(pull(node, "GR")) == 1


def _topic_attributes(node, topic: str) -> dict:
    table = call_json(node.broker, RequestCode.GET_ALL_TOPIC_CONFIG)["topicConfigTable"]
    return table[topic].get("attributes", {})


def test_topic_attributes_through_update_and_create_topic(node):
    create_topic(node, "AT", 2, "+message.type=DELAY")
    assert _topic_attributes(node, "AT") == {"message.type": "DELAY"}
    create_topic(node, "AT", 4)  # an update without the field keeps them
    assert _topic_attributes(node, "AT") == {"message.type": "DELAY"}
    create_topic(node, "AT", 4, "-message.type")
    assert _topic_attributes(node, "AT") == {}
    for bad, remark in (("+message.type=fifo", "value is not in set"),
                        ("+queue.type=x", "unsupported key"),
                        ("message.type=FIFO", "format is wrong"),
                        ("-message.type", "attempt to delete a nonexistent key")):
        resp = call(node.broker, RequestCode.UPDATE_AND_CREATE_TOPIC, {
            "topic": "AT", "readQueueNums": 4, "writeQueueNums": 4, "perm": 6,
            "attributes": bad})
        assert resp.code == ResponseCode.SYSTEM_ERROR and remark in resp.remark, resp.remark
    resp = call(node.broker, RequestCode.UPDATE_AND_CREATE_TOPIC, {
        "topic": "AT-new", "readQueueNums": 4, "writeQueueNums": 4, "perm": 6,
        "attributes": "-message.type"})
    assert resp.code == ResponseCode.SYSTEM_ERROR and "while creating topic" in resp.remark


def test_rmqctl_topic_type(node):
    from test_rmqctl_messages import rmqctl

    def run(*args: str) -> str:
        out = rmqctl(node.namesrv, *args)
        assert out.returncode == 0, out.stderr
        return out.stdout

    [created] = json.loads(run("-o", "json", "topic", "create", "CT", "-q", "2", "--type", "FIFO"))
    assert created["type"] == "FIFO"
    assert _topic_attributes(node, "CT") == {"message.type": "FIFO"}
    [updated] = json.loads(run("-o", "json", "topic", "update", "CT", "-q", "4"))
    assert updated["type"] == "FIFO" and _topic_attributes(node, "CT") == {"message.type": "FIFO"}
    run("topic", "create", "CN", "-q", "1")
    rows = json.loads(run("-o", "json", "topic", "list"))
    assert {"topic": "CT", "type": "FIFO"} in rows and {"topic": "CN", "type": "NORMAL"} in rows
    [route] = json.loads(run("-o", "json", "topic", "route", "CT"))["queueDatas"]
    assert route["writeQueueNums"] == 4
    assert "FIFO" in run("topic", "route", "CT")
    bad = rmqctl(node.namesrv, "topic", "create", "CX", "--type", "fifo")
    assert bad.returncode == 2

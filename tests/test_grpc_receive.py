"""The consumer RPCs of the gRPC endpoint (ReceiveMessage, AckMessage, ChangeInvisibleDuration,
ForwardMessageToDeadLetterQueue) called with raw grpcio and the project's own stubs against a
real node, the messages sent over remoting: the stream's order and fields, long polling,
acks and nacks, redelivery, the codes for bad invisible times and receipt handles, the DLQ,
a client gone mid-stream and a restart. The official clients' view is test_grpc_python*.py."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from remoting import call, send
from rmqnode.grpc.v2 import definition_pb2 as pb
from rmqnode.grpc.v2 import service_pb2 as spb
from rmqnode.grpc.v2 import service_pb2_grpc
from rmqnode.net import fastjson
from rmqnode.net.codes import RequestCode

ROLES = ("namesrv", "broker", "grpc")
METADATA = (("x-mq-client-id", "test@1@0@receive"), ("x-mq-client-version", "5.1.2"),
            ("x-mq-language", "PYTHON"))
POLL = 5  # the shortest long poll the server holds (spec §4.6)


def start(start_node, home=None):
    return start_node("--namesrv-port", "0", "--listen-port", "0", "--grpc-port", "0",
                      "-D", "reviveInterval=200", roles=ROLES, home=home)


def create_group(node, group: str, **config: object) -> None:
    body = fastjson.dumpb({"groupName": group, **config})
    resp = call(node.broker, RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, body=body)
    assert resp.code == 0, resp.remark


class Consumer:
    """One consumer group's calls on one channel, as a simple consumer makes them."""

    def __init__(self, node, group: str, topic: str) -> None:
        self.channel = grpc.insecure_channel(node.addrs["grpc"])
        self.stub = service_pb2_grpc.MessagingServiceStub(self.channel)
        self.group, self.topic = pb.Resource(name=group), pb.Resource(name=topic)

    def close(self) -> None:
        self.channel.close()

    def request(self, batch: int = 16, invisible: int | None = 15, poll: int = POLL,
                **kw) -> spb.ReceiveMessageRequest:
        kw.setdefault("filter_expression", pb.FilterExpression(type=pb.TAG, expression="*"))
        req = spb.ReceiveMessageRequest(
            group=self.group, batch_size=batch, long_polling_timeout=Duration(seconds=poll),
            message_queue=pb.MessageQueue(topic=self.topic, id=0, broker=pb.Broker(name="x")),
            **kw)
        if invisible is not None:
            req.invisible_duration.CopyFrom(Duration(seconds=invisible))
        return req

    def stream(self, req: spb.ReceiveMessageRequest) -> list[spb.ReceiveMessageResponse]:
        deadline = req.long_polling_timeout.seconds + 3  # as clients: request timeout + poll
        return list(self.stub.ReceiveMessage(req, metadata=METADATA, timeout=deadline))

    def receive(self, **kw) -> tuple[int, list[pb.Message]]:
        """(status code, messages) of one receive, checking the stream's shape on the way."""
        responses = self.stream(self.request(**kw))
        kinds = [r.WhichOneof("content") for r in responses]
        assert kinds == ["status"] + ["message"] * (len(kinds) - 2) + ["delivery_timestamp"]
        return responses[0].status.code, [r.message for r in responses[1:-1]]

    def receive_until(self, want: int, seconds: float = 20, **kw) -> list[pb.Message]:
        got: list[pb.Message] = []
        end = time.monotonic() + seconds
        while len(got) < want and time.monotonic() < end:
            got += self.receive(**kw)[1]
        return got

    def ack(self, *messages: pb.Message, handles: list[str] | None = None
            ) -> spb.AckMessageResponse:
        entries = [spb.AckMessageEntry(message_id=m.system_properties.message_id,
                                       receipt_handle=m.system_properties.receipt_handle)
                   for m in messages]
        entries += [spb.AckMessageEntry(message_id="x", receipt_handle=h) for h in handles or ()]
        return self.stub.AckMessage(spb.AckMessageRequest(group=self.group, topic=self.topic,
                                                          entries=entries), metadata=METADATA)

    def change(self, handle: str, seconds: int) -> spb.ChangeInvisibleDurationResponse:
        return self.stub.ChangeInvisibleDuration(spb.ChangeInvisibleDurationRequest(
            group=self.group, topic=self.topic, receipt_handle=handle,
            invisible_duration=Duration(seconds=seconds), message_id="x"), metadata=METADATA)

    def forward(self, m: pb.Message) -> spb.ForwardMessageToDeadLetterQueueResponse:
        return self.stub.ForwardMessageToDeadLetterQueue(
            spb.ForwardMessageToDeadLetterQueueRequest(
                group=self.group, topic=self.topic,
                receipt_handle=m.system_properties.receipt_handle,
                message_id=m.system_properties.message_id, delivery_attempt=1,
                max_delivery_attempts=16), metadata=METADATA)


@pytest.fixture
def consumer() -> Iterator:
    made: list[Consumer] = []

    def make(node, group: str, topic: str) -> Consumer:
        made.append(Consumer(node, group, topic))
        return made[-1]

    yield make
    for c in made:
        c.close()


def bodies(messages: list[pb.Message]) -> list[bytes]:
    return sorted(m.body for m in messages)


def handle_fields(m: pb.Message) -> list[str]:
    return m.system_properties.receipt_handle.split(" ")


# -- receiving ---------------------------------------------------------------------------------

def test_stream_order_properties_and_digest(start_node, consumer):
    node = start(start_node)
    send(node.broker, "RT", b"hello", queue_id=1, TAGS="TagA", KEYS="k1 k2",
         UNIQ_KEY="AC11000100002A9F0000000000000001", color="blue", __SHARDINGKEY="g1")
    code, got = consumer(node, "G", "RT").receive()
    assert code == pb.OK
    (m,) = got
    sp = m.system_properties
    assert m.topic.name == "RT" and m.body == b"hello"
    assert dict(m.user_properties) == {"color": "blue"}, "system keys stay out"
    assert sp.tag == "TagA" and list(sp.keys) == ["k1", "k2"]
    assert sp.message_id == "AC11000100002A9F0000000000000001"
    assert sp.body_digest.type == pb.MD5
    assert sp.body_digest.checksum == hashlib.md5(b"hello").hexdigest().upper()
    assert sp.body_encoding == pb.IDENTITY and sp.message_type == pb.FIFO
    assert sp.message_group == "g1" and sp.delivery_attempt == 1
    assert sp.queue_id == 1 and sp.queue_offset == 0
    assert sp.store_host == node.broker and sp.store_timestamp.seconds > 0
    fields = handle_fields(m)
    assert len(fields) == 9 and fields[2] == "15000" and fields[4] == "0" and fields[6] == "1"


def test_long_poll_ends_in_40401_or_with_a_message_that_arrives(start_node, consumer):
    node = start(start_node)
    send(node.broker, "RP", b"first")  # the topic exists; its message is then consumed
    c = consumer(node, "G", "RP")
    c.ack(*c.receive()[1])
    t0 = time.monotonic()
    code, got = c.receive()
    assert (code, got) == (pb.MESSAGE_NOT_FOUND, [])
    assert POLL - 0.2 <= time.monotonic() - t0 < POLL + 2
    # A receive held by the long poll answers as soon as a message arrives.
    timer = threading.Timer(1.0, send, (node.broker, "RP", b"late"))
    timer.start()
    t0 = time.monotonic()
    code, got = c.receive(poll=10)
    timer.join()
    assert code == pb.OK and bodies(got) == [b"late"] and time.monotonic() - t0 < 5


def test_batches_are_capped_at_32_and_a_bad_batch_size_is_40000(start_node, consumer):
    node = start(start_node)
    for i in range(40):
        send(node.broker, "RB", b"m%d" % i, queue_id=i % 4)
    c = consumer(node, "G", "RB")
    code, got = c.receive(batch=100)
    assert code == pb.OK and len(got) == 32
    assert len(c.receive(batch=100)[1]) == 8
    assert c.receive(batch=0)[0] == pb.BAD_REQUEST


def test_ack_then_nothing_comes_back(start_node, consumer):
    node = start(start_node)
    for i in range(3):
        send(node.broker, "RA", b"m%d" % i, queue_id=i)
    c = consumer(node, "G", "RA")
    got = c.receive_until(3, invisible=10)
    resp = c.ack(*got)
    assert resp.status.code == pb.OK and [e.status.code for e in resp.entries] == [pb.OK] * 3
    assert [e.receipt_handle for e in resp.entries] == \
        [m.system_properties.receipt_handle for m in got]
    time.sleep(10.5)
    assert c.receive() == (pb.MESSAGE_NOT_FOUND, [])


def test_unacked_comes_back_after_its_invisible_time_with_attempt_2(start_node, consumer):
    node = start(start_node)
    send(node.broker, "RR", b"again", UNIQ_KEY="AC11000100002A9F0000000000000002")
    c = consumer(node, "G", "RR")
    (first,) = c.receive(invisible=10)[1]
    t0 = time.monotonic()
    again = c.receive_until(1, seconds=20, invisible=10)
    assert time.monotonic() - t0 > 8, "not before the invisible time"
    (m,) = again
    assert m.body == b"again" and m.topic.name == "RR", "under its own topic"
    assert m.system_properties.message_id == first.system_properties.message_id
    assert m.system_properties.delivery_attempt == 2
    assert handle_fields(m)[4] == "1", "popped from the retry topic"
    assert c.ack(m).status.code == pb.OK
    time.sleep(10.5)
    assert c.receive() == (pb.MESSAGE_NOT_FOUND, [])


def test_change_invisible_duration_gives_a_new_handle_and_nacks(start_node, consumer):
    node = start(start_node)
    send(node.broker, "RC", b"later")
    c = consumer(node, "G", "RC")
    (m,) = c.receive()[1]
    old = m.system_properties.receipt_handle
    resp = c.change(old, 12)
    assert resp.status.code == pb.OK
    new = resp.receipt_handle
    assert new != old and new.split(" ")[2] == "12000" and new.split(" ")[-1] == old.split(" ")[-1]
    # Duration 0 (Node's nack) makes it visible at once, one delivery attempt more.
    resp = c.change(new, 0)
    assert resp.status.code == pb.OK
    (back,) = c.receive_until(1, seconds=20)  # revived within a second or two; room for load
    assert back.body == b"later" and back.system_properties.delivery_attempt == 2
    assert c.ack(back).status.code == pb.OK


# -- refusals ----------------------------------------------------------------------------------

def test_invisible_times_out_of_range_are_40011(start_node, consumer):
    node = start(start_node)
    send(node.broker, "RI", b"x")
    c = consumer(node, "G", "RI")
    assert c.receive(invisible=5)[0] == pb.ILLEGAL_INVISIBLE_TIME
    assert c.receive(invisible=13 * 3600)[0] == pb.ILLEGAL_INVISIBLE_TIME
    assert c.receive(invisible=None)[0] == pb.ILLEGAL_INVISIBLE_TIME
    # A push consumer's receive (auto_renew) takes the server's 60 s.
    code, (m,) = c.receive(invisible=None, auto_renew=True)
    assert code == pb.OK and handle_fields(m)[2] == "60000"
    assert c.change(m.system_properties.receipt_handle, 13 * 3600).status.code == \
        pb.ILLEGAL_INVISIBLE_TIME


def test_too_little_deadline_for_polling_is_40018(start_node, consumer):
    node = start(start_node)
    send(node.broker, "RD", b"x")
    c = consumer(node, "G", "RD")
    req = c.request()
    req.ClearField("long_polling_timeout")
    responses = list(c.stub.ReceiveMessage(req, metadata=METADATA, timeout=2))
    assert responses[0].status.code == pb.ILLEGAL_POLLING_TIME
    assert responses[-1].HasField("delivery_timestamp")


def test_receipt_handles_that_do_not_parse_or_expired_are_40013(start_node, consumer):
    node = start(start_node)
    send(node.broker, "RH", b"x")
    c = consumer(node, "G", "RH")
    (m,) = c.receive(invisible=10)[1]
    fields = handle_fields(m)
    bad = ["", "garbage", "1 2 3", " ".join(fields[:7]), " ".join(["x"] + fields[1:]),
           " ".join(fields[:4] + ["7"] + fields[5:])]
    resp = c.ack(handles=bad)
    assert resp.status.code == pb.INVALID_RECEIPT_HANDLE
    assert [e.status.code for e in resp.entries] == [pb.INVALID_RECEIPT_HANDLE] * len(bad)
    assert c.change("garbage", 20).status.code == pb.INVALID_RECEIPT_HANDLE
    expired = " ".join(fields[:1] + [str(int(fields[1]) - 20_000)] + fields[2:])
    assert c.ack(handles=[expired]).status.code == pb.INVALID_RECEIPT_HANDLE
    # One good entry and one bad: each its own status, 30000 on top.
    resp = c.ack(m, handles=["garbage"])
    assert resp.status.code == pb.MULTIPLE_RESULTS
    assert [e.status.code for e in resp.entries] == [pb.OK, pb.INVALID_RECEIPT_HANDLE]


def test_another_groups_handle_acks_nothing(start_node, consumer):
    """As with Java's broker the ack of a checkpoint the group does not have is taken (OK)
    and changes nothing: the owner still gets the message back."""
    node = start(start_node)
    send(node.broker, "RO", b"mine")
    owner, other = consumer(node, "G", "RO"), consumer(node, "G2", "RO")
    (m,) = owner.receive(invisible=10)[1]
    assert other.ack(m).status.code == pb.OK
    (back,) = owner.receive_until(1, seconds=20, invisible=10)
    assert back.body == b"mine" and back.system_properties.delivery_attempt == 2


def test_bad_topic_group_and_filter(start_node, consumer):
    node = start(start_node)
    send(node.broker, "RF", b"x", TAGS="a")
    assert consumer(node, "G", "RMQ_SYS_TRACE_TOPIC").receive()[0] == pb.ILLEGAL_TOPIC
    assert consumer(node, "G", "No Such").receive()[0] == pb.ILLEGAL_TOPIC
    assert consumer(node, "CID_RMQ_SYS_X", "RF").receive()[0] == pb.ILLEGAL_CONSUMER_GROUP
    assert consumer(node, "G", "NoSuchTopic").receive()[0] == pb.TOPIC_NOT_FOUND
    c = consumer(node, "G", "RF")
    sql = pb.FilterExpression(type=pb.SQL, expression="a > 1")
    assert c.receive(filter_expression=sql)[0] == pb.ILLEGAL_FILTER_EXPRESSION
    tag_b = pb.FilterExpression(type=pb.TAG, expression="b")
    assert c.receive(filter_expression=tag_b)[0] == pb.MESSAGE_NOT_FOUND
    tag_a = pb.FilterExpression(type=pb.TAG, expression="b || a")
    send(node.broker, "RF", b"y", TAGS="a")
    assert bodies(c.receive(filter_expression=tag_a)[1]) == [b"y"]


# -- dead letters --------------------------------------------------------------------------

def test_dlq_after_max_attempts_and_forward(start_node, consumer):
    node = start(start_node)
    create_group(node, "GD", retryMaxTimes=1)
    send(node.broker, "RQ", b"poison")
    send(node.broker, "RQ", b"forwarded", queue_id=1)
    c = consumer(node, "GD", "RQ")
    got = {m.body: m for m in c.receive_until(2)}
    assert c.forward(got[b"forwarded"]).status.code == pb.OK
    m = got[b"poison"]
    for attempt in (1, 2):  # retryMaxTimes 1: two deliveries, then the DLQ
        assert m.system_properties.delivery_attempt == attempt
        assert c.change(m.system_properties.receipt_handle, 0).status.code == pb.OK
        if attempt == 1:
            (m,) = c.receive_until(1, seconds=10)
    time.sleep(1)
    assert c.receive() == (pb.MESSAGE_NOT_FOUND, [])
    dlq = consumer(node, "DLQReader", "%DLQ%GD")
    dead = dlq.receive_until(2, seconds=10)
    assert bodies(dead) == [b"forwarded", b"poison"]
    assert {m.topic.name for m in dead} == {"%DLQ%GD"}


def test_receive_sends_messages_past_max_attempts_to_the_dlq(start_node, consumer):
    """A revived message whose group now allows fewer attempts than it has had goes to the
    DLQ on receive (the proxy's check), not to the client."""
    node = start(start_node)
    create_group(node, "GL", retryMaxTimes=3)
    send(node.broker, "RL", b"tired")
    c = consumer(node, "GL", "RL")
    (m,) = c.receive()[1]
    c.change(m.system_properties.receipt_handle, 0)
    time.sleep(1.0)  # revived into the retry topic with one reconsume time
    create_group(node, "GL", retryMaxTimes=0)  # one attempt allowed: it had it
    assert c.receive() == (pb.MESSAGE_NOT_FOUND, [])
    dead = consumer(node, "DLQReader", "%DLQ%GL").receive_until(1, seconds=10)
    assert bodies(dead) == [b"tired"]


# -- FIFO groups (orderly POP) -------------------------------------------------------------------

def send_group(node, topic: str, *bodies: bytes) -> None:
    for body in bodies:
        send(node.broker, topic, body, queue_id=0, __SHARDINGKEY="g1")


def test_a_fifo_group_gets_its_queue_in_order_one_batch_at_a_time(start_node, consumer):
    node = start(start_node)
    create_group(node, "GF", consumeMessageOrderly=True)
    send_group(node, "RFifo", b"a", b"b", b"c")
    c = consumer(node, "GF", "RFifo")
    code, got = c.receive()
    assert code == pb.OK and [m.body for m in got] == [b"a", b"b", b"c"]
    assert all(handle_fields(m)[3] == "999" for m in got), "the order marker of Java's broker"
    assert [m.system_properties.delivery_attempt for m in got] == [1, 1, 1]
    send_group(node, "RFifo", b"d")
    assert c.ack(*got[:2]).status.code == pb.OK
    assert c.receive() == (pb.MESSAGE_NOT_FOUND, []), "c is still in flight"
    assert c.ack(got[2]).status.code == pb.OK
    assert [m.body for m in c.receive()[1]] == [b"d"]


def test_a_fifo_nack_redelivers_in_order_until_the_dlq(start_node, consumer):
    node = start(start_node)
    create_group(node, "GFN", consumeMessageOrderly=True, retryMaxTimes=1)
    send_group(node, "RFifoN", b"a", b"b")
    c = consumer(node, "GFN", "RFifoN")
    got = c.receive()[1]
    for attempt in (1, 2):  # retryMaxTimes 1: two deliveries, then the DLQ on receive
        assert [m.body for m in got] == [b"a", b"b"]
        assert [m.system_properties.delivery_attempt for m in got] == [attempt] * 2
        for m in got:
            resp = c.change(m.system_properties.receipt_handle, 0)
            assert resp.status.code == pb.OK
            assert handle_fields(m)[1] == resp.receipt_handle.split(" ")[1], "same pop"
        got = c.receive_until(2, seconds=10)
    assert got == []
    dead = consumer(node, "DLQReader", "%DLQ%GFN").receive_until(2, seconds=10)
    assert bodies(dead) == [b"a", b"b"]
    send_group(node, "RFifoN", b"c")
    assert [m.body for m in c.receive()[1]] == [b"c"], "the dead letters left the queue"


def test_a_fifo_forward_to_the_dlq_acks_the_order_handle(start_node, consumer):
    node = start(start_node)
    create_group(node, "GFF", consumeMessageOrderly=True)
    send_group(node, "RFifoF", b"poison", b"next")
    c = consumer(node, "GFF", "RFifoF")
    poison, nxt = c.receive()[1]
    assert c.forward(poison).status.code == pb.OK
    assert c.ack(nxt).status.code == pb.OK
    send_group(node, "RFifoF", b"later")
    assert [m.body for m in c.receive()[1]] == [b"later"]
    dead = consumer(node, "DLQReader", "%DLQ%GFF").receive_until(1, seconds=10)
    assert bodies(dead) == [b"poison"]


# -- clients that go, nodes that restart ---------------------------------------------------------

def test_a_client_gone_mid_stream_loses_nothing(start_node, consumer):
    node = start(start_node)
    send(node.broker, "RG", b"early")
    c = consumer(node, "G", "RG")
    (m,) = c.receive()[1]
    c.ack(m)
    # A long poll whose client goes away before anything arrives takes nothing with it.
    call_ = c.stub.ReceiveMessage(c.request(poll=10), metadata=METADATA, timeout=13)
    time.sleep(0.5)
    call_.cancel()
    # The cancel travels on the gRPC connection, the send on another: let it arrive first (a
    # poll still held when the message lands pops it, and it comes back after its invisible
    # time instead).
    time.sleep(1.0)
    send(node.broker, "RG", b"after-cancel")
    assert bodies(c.receive()[1]) == [b"after-cancel"]
    # A stream cut after its status: the popped messages come back after the invisible time.
    send(node.broker, "RG", b"cut", queue_id=2)
    call_ = c.stub.ReceiveMessage(c.request(invisible=10), metadata=METADATA, timeout=8)
    assert next(call_).status.code == pb.OK
    call_.cancel()
    (back,) = c.receive_until(1, seconds=20, invisible=10)
    assert back.body == b"cut" and back.system_properties.delivery_attempt == 2


def test_restart_brings_back_unacked_and_never_acked(start_node, consumer, tmp_path):
    node = start(start_node, home=tmp_path)
    for i in range(4):
        send(node.broker, "RS", b"m%d" % i, queue_id=i)
    c = consumer(node, "G", "RS")
    got = c.receive_until(4, invisible=10)
    assert len(got) == 4
    acked = sorted(got, key=lambda m: m.body)[:2]
    assert c.ack(*acked).status.code == pb.OK
    node.stop()
    node = start(start_node, home=tmp_path)
    c = consumer(node, "G", "RS")
    back = c.receive_until(2, seconds=25, invisible=10)
    assert bodies(back) == [b"m2", b"m3"]
    assert all(m.system_properties.delivery_attempt == 2 for m in back)
    c.ack(*back)
    assert c.receive() == (pb.MESSAGE_NOT_FOUND, [])

"""The auto-renewal of push consumers' messages (spec §4.6 "Auto-renew", §4.11) with raw grpcio
stubs against a real node whose default invisible time is 3 s and renewal comes 2 s ahead:
a message stays with its client past that time, is acked, nacked or forwarded with the handle
the client received, is released at once when the client goes (its Telemetry stream ends or
it terminates), and is nacked after the longest renewal time. The official push consumers'
view is test_grpc_python_survival.py (a 70 s listener, a killed consumer)."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from remoting import send
from rmqnode.grpc.v2 import definition_pb2 as pb
from rmqnode.grpc.v2 import service_pb2 as spb
from rmqnode.grpc.v2 import service_pb2_grpc
from test_grpc_receive import POLL, create_group
from test_grpc_server import access_point, metadata

ROLES = ("namesrv", "broker", "grpc")
INVISIBLE_MS = 3000  # each received message would show again after this, but for the renewal
AHEAD_MS = 2000


def start(start_node, *config: str):
    settings = ["reviveInterval=200", f"grpcDefaultInvisibleTimeMills={INVISIBLE_MS}",
                f"grpcRenewAheadTimeMills={AHEAD_MS}", *config]
    return start_node("--namesrv-port", "0", "--listen-port", "0", "--grpc-port", "0",
                      *[arg for s in settings for arg in ("-D", s)], roles=ROLES)


class Client:
    """One gRPC consumer of one group and topic, with the Telemetry stream push consumers hold
    for their life (opened by `connect`)."""

    def __init__(self, node, client_id: str, group: str, topic: str) -> None:
        self.node = node
        self.channel = grpc.insecure_channel(node.addrs["grpc"])
        self.stub = service_pb2_grpc.MessagingServiceStub(self.channel)
        self.metadata = metadata(client_id)
        self.group, self.topic = pb.Resource(name=group), pb.Resource(name=topic)
        self.commands: queue.Queue[spb.TelemetryCommand | None] = queue.Queue()
        self.stream: grpc.Future | None = None

    def connect(self) -> None:
        """Open the Telemetry stream with push consumer settings; it stays open until
        `disconnect` (the client half-closes) or `stream.cancel()` (the client vanishes)."""
        self.commands.put(spb.TelemetryCommand(settings=pb.Settings(
            client_type=pb.PUSH_CONSUMER, access_point=access_point(self.node.addrs["grpc"]),
            subscription=pb.Subscription(group=self.group, subscriptions=[
                pb.SubscriptionEntry(topic=self.topic, expression=pb.FilterExpression(
                    type=pb.TAG, expression="*"))]))))
        self.stream = self.stub.Telemetry(iter(self.commands.get, None), metadata=self.metadata)
        assert next(self.stream).status.code == pb.OK

    def disconnect(self) -> None:
        self.commands.put(None)
        assert list(self.stream) == []

    def close(self) -> None:
        self.commands.put(None)
        self.channel.close()

    def receive(self, auto_renew: bool = True) -> list[pb.Message]:
        req = spb.ReceiveMessageRequest(
            group=self.group, batch_size=16, auto_renew=auto_renew,
            long_polling_timeout=Duration(seconds=POLL),
            message_queue=pb.MessageQueue(topic=self.topic, id=-1, broker=pb.Broker(name="x")),
            filter_expression=pb.FilterExpression(type=pb.TAG, expression="*"))
        if not auto_renew:
            req.invisible_duration.CopyFrom(Duration(seconds=10))
        responses = self.stub.ReceiveMessage(req, metadata=self.metadata, timeout=POLL + 3)
        return [r.message for r in responses if r.HasField("message")]

    def ack(self, m: pb.Message) -> int:
        sp = m.system_properties
        return self.stub.AckMessage(spb.AckMessageRequest(
            group=self.group, topic=self.topic, entries=[spb.AckMessageEntry(
                message_id=sp.message_id, receipt_handle=sp.receipt_handle)]),
            metadata=self.metadata).status.code

    def change(self, m: pb.Message, seconds: int) -> spb.ChangeInvisibleDurationResponse:
        sp = m.system_properties
        return self.stub.ChangeInvisibleDuration(spb.ChangeInvisibleDurationRequest(
            group=self.group, topic=self.topic, receipt_handle=sp.receipt_handle,
            message_id=sp.message_id, invisible_duration=Duration(seconds=seconds)),
            metadata=self.metadata)

    def forward(self, m: pb.Message) -> int:
        sp = m.system_properties
        return self.stub.ForwardMessageToDeadLetterQueue(
            spb.ForwardMessageToDeadLetterQueueRequest(
                group=self.group, topic=self.topic, receipt_handle=sp.receipt_handle,
                message_id=sp.message_id, delivery_attempt=1, max_delivery_attempts=16),
            metadata=self.metadata).status.code

    def terminate(self) -> None:
        self.stub.NotifyClientTermination(spb.NotifyClientTerminationRequest(group=self.group),
                                          metadata=self.metadata)


@pytest.fixture
def client() -> Iterator:
    made: list[Client] = []

    def make(node, name: str, group: str = "G", topic: str = "T",
             connected: bool = True) -> Client:
        made.append(Client(node, f"{name}@1@0@renewal", group, topic))
        if connected:
            made[-1].connect()
        return made[-1]

    yield make
    for c in made:
        c.close()


def held_past_its_invisible_time(node, client, group: str = "G") -> tuple[Client, pb.Message]:
    """A message received by a connected push consumer `a` that another member `b` of the
    group still does not get a long poll after it would have shown again."""
    send(node.broker, "T", b"renewed")
    a, b = client(node, "a", group), client(node, "b", group)
    (m,) = a.receive()
    assert b.receive() == [], "renewed: still invisible past the 3 s default"
    return a, m


def test_a_held_message_is_renewed_and_acked_with_the_handle_received(start_node, client):
    node = start(start_node)
    a, m = held_past_its_invisible_time(node, client)
    assert a.ack(m) == pb.OK, "the received handle (expired by itself) acks the latest one"
    assert client(node, "c").receive() == [], "acked: never back"


def test_a_fifo_groups_held_message_is_renewed(start_node, client):
    node = start(start_node)
    create_group(node, "GF", consumeMessageOrderly=True)
    a, m = held_past_its_invisible_time(node, client, "GF")
    assert a.ack(m) == pb.OK
    assert client(node, "c", "GF").receive() == []


def test_a_nack_after_renewals_takes_the_handle_received(start_node, client):
    node = start(start_node)
    a, m = held_past_its_invisible_time(node, client)
    resp = a.change(m, 0)
    assert resp.status.code == pb.OK and resp.receipt_handle != m.system_properties.receipt_handle
    (again,) = client(node, "c").receive()
    assert again.body == b"renewed" and again.system_properties.delivery_attempt == 2


def test_a_forward_after_renewals_takes_the_handle_received(start_node, client):
    node = start(start_node)
    a, m = held_past_its_invisible_time(node, client)
    assert a.forward(m) == pb.OK
    assert client(node, "c").receive() == [], "acked with the latest handle: not back"
    (dead,) = client(node, "d", topic="%DLQ%G").receive(auto_renew=False)
    assert dead.body == b"renewed"


GOING = {
    "half-closes its Telemetry stream": lambda c: c.disconnect(),
    "vanishes (its stream is cut)": lambda c: c.stream.cancel(),
    "terminates": lambda c: c.terminate(),
}


@pytest.mark.parametrize("how", list(GOING))
def test_a_client_gone_releases_its_messages_at_once(start_node, client, how):
    node = start(start_node, "grpcDefaultInvisibleTimeMills=60000")
    send(node.broker, "T", b"released")
    a = client(node, "a")
    (m,) = a.receive()
    GOING[how](a)
    began = time.monotonic()
    (again,) = client(node, "b").receive()
    assert again.body == b"released" and again.system_properties.delivery_attempt == 2
    assert time.monotonic() - began < POLL, "released with 1 s, not left to the 60 s"


def test_a_receive_without_a_telemetry_stream_is_not_renewed(start_node, client):
    """The Java proxy keeps no auto-renewed message for a client without a channel."""
    node = start(start_node, "grpcDefaultInvisibleTimeMills=60000")
    send(node.broker, "T", b"unowned")
    (first,) = client(node, "a", connected=False).receive()
    (again,) = client(node, "b").receive()
    assert first.system_properties.delivery_attempt == 1
    assert again.body == b"unowned" and again.system_properties.delivery_attempt == 2


def test_after_the_longest_renewal_time_the_message_is_nacked(start_node, client):
    """grpcRenewMaxTimeMills=0: the first renewal due is a nack with the group's retry delay
    (delay level 3 for a first delivery, here 1 s)."""
    node = start(start_node, "grpcRenewMaxTimeMills=0", "messageDelayLevel=1s 1s 1s 1h")
    send(node.broker, "T", b"nacked")
    a, b = client(node, "a"), client(node, "b")
    (first,) = a.receive()
    (again,) = b.receive()
    assert first.system_properties.delivery_attempt == 1
    assert again.body == b"nacked" and again.system_properties.delivery_attempt == 2

"""The gRPC endpoint with raw grpcio stubs (our own generated modules) against a real rmqnode:
route, settings handshake, heartbeat, headers, unimplemented methods, TLS. The official clients
are exercised in their own tests (subprocesses)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import grpc
import pytest

from rmqnode.grpc.v2 import definition_pb2 as d
from rmqnode.grpc.v2 import service_pb2 as s
from rmqnode.grpc.v2.service_pb2_grpc import MessagingServiceStub
from rmqnode.net.codes import RequestCode
from tests.remoting import call

CLIENT_ID = "tester@1@0@grpc"


def metadata(client_id: str | None = CLIENT_ID) -> list[tuple[str, str]]:
    """The headers the Python 5.1.2 client sends (fixtures/grpc/client-requests.jsonl)."""
    headers = [("x-mq-language", "PYTHON"), ("x-mq-protocol", "GRPC_V2"),
               ("x-mq-client-version", "5.1.2"), ("x-mq-namespace", "")]
    return headers + ([("x-mq-client-id", client_id)] if client_id is not None else [])


def access_point(addr: str) -> d.Endpoints:
    host, port = addr.rsplit(":", 1)
    return d.Endpoints(scheme=d.IPv4, addresses=[d.Address(host=host, port=int(port))])


@pytest.fixture
def node(start_node):
    return start_node("--namesrv-port", "0", "--listen-port", "0",
                      roles=("namesrv", "broker", "grpc"))


@pytest.fixture
def stub(node):
    with grpc.insecure_channel(node.addrs["grpc"]) as channel:
        yield MessagingServiceStub(channel)


def create_topic(node, topic: str, queues: int = 4, attributes: str = "") -> None:
    fields = {"topic": topic, "readQueueNums": queues, "writeQueueNums": queues, "perm": 6,
              "topicFilterType": "SINGLE_TAG", "topicSysFlag": 0, "order": False}
    if attributes:
        fields["attributes"] = attributes
    resp = call(node.broker, RequestCode.UPDATE_AND_CREATE_TOPIC, fields)
    assert resp.code == 0, resp.remark


def test_query_route(node, stub):
    create_topic(node, "RouteT", 4)
    ep = access_point(node.addrs["grpc"])
    resp = stub.QueryRoute(s.QueryRouteRequest(topic=d.Resource(name="RouteT"), endpoints=ep),
                           metadata=metadata())
    assert resp.status.code == d.OK and resp.status.message == "OK"
    assert [q.id for q in resp.message_queues] == [0, 1, 2, 3]
    first = resp.message_queues[0]
    assert first.permission == d.READ_WRITE and first.topic.name == "RouteT"
    assert first.broker.id == 0 and first.broker.name == "broker-a"
    assert first.broker.endpoints == ep  # the access point the client dialled, echoed
    assert list(first.accept_message_types) == [d.NORMAL]

    missing = stub.QueryRoute(s.QueryRouteRequest(topic=d.Resource(name="NoSuchTopic"),
                                                  endpoints=ep), metadata=metadata())
    assert missing.status.code == d.TOPIC_NOT_FOUND and not missing.message_queues
    illegal = stub.QueryRoute(s.QueryRouteRequest(topic=d.Resource(name="a b"), endpoints=ep),
                              metadata=metadata())
    assert illegal.status.code == d.ILLEGAL_TOPIC
    system = stub.QueryRoute(s.QueryRouteRequest(topic=d.Resource(name="TBW102"),
                                                 endpoints=ep), metadata=metadata())
    assert system.status.code == d.ILLEGAL_TOPIC
    no_endpoints = stub.QueryRoute(s.QueryRouteRequest(topic=d.Resource(name="RouteT")),
                                   metadata=metadata())
    assert no_endpoints.status.code == d.ILLEGAL_ACCESS_POINT


def test_client_id_required(stub):
    for client_id in (None, "", "   "):
        resp = stub.QueryRoute(s.QueryRouteRequest(topic=d.Resource(name="T")),
                               metadata=metadata(client_id))
        assert resp.status.code == d.CLIENT_ID_REQUIRED
    beat = stub.Heartbeat(s.HeartbeatRequest(client_type=d.PRODUCER), metadata=metadata(None))
    assert beat.status.code == d.CLIENT_ID_REQUIRED


def producer_settings(addr: str, *topics: str) -> s.TelemetryCommand:
    return s.TelemetryCommand(settings=d.Settings(
        client_type=d.PRODUCER, access_point=access_point(addr),
        request_timeout={"seconds": 3},
        publishing=d.Publishing(topics=[d.Resource(name=t) for t in topics],
                                max_body_size=134217728, validate_message_type=True),
        user_agent=d.UA(language=d.PYTHON, version="5.1.2", platform="test", hostname="h")))


def test_telemetry_settings_handshake_and_heartbeat(node, stub):
    create_topic(node, "TeleT")
    addr = node.addrs["grpc"]
    stream = stub.Telemetry(iter([producer_settings(addr, "TeleT")]), metadata=metadata())
    answer = next(stream)
    assert answer.status.code == d.OK
    settings = answer.settings
    assert settings.client_type == d.PRODUCER
    assert settings.publishing.max_body_size == 4 * 1024 * 1024
    assert settings.publishing.validate_message_type
    assert [t.name for t in settings.publishing.topics] == ["TeleT"]
    policy = settings.backoff_policy
    assert policy.max_attempts == 3 and policy.WhichOneof("strategy") == "exponential_backoff"
    assert policy.exponential_backoff.multiplier == 2
    stream.cancel()

    beat = stub.Heartbeat(s.HeartbeatRequest(client_type=d.PRODUCER), metadata=metadata())
    assert beat.status.code == d.OK
    bye = stub.NotifyClientTermination(s.NotifyClientTerminationRequest(), metadata=metadata())
    assert bye.status.code == d.OK


def test_consumer_settings(node, stub):
    create_topic(node, "SubT")
    command = s.TelemetryCommand(settings=d.Settings(
        client_type=d.PUSH_CONSUMER, access_point=access_point(node.addrs["grpc"]),
        subscription=d.Subscription(group=d.Resource(name="GrpcG"), subscriptions=[
            d.SubscriptionEntry(topic=d.Resource(name="SubT"),
                                expression=d.FilterExpression(type=d.TAG, expression="*"))])))
    stream = stub.Telemetry(iter([command]), metadata=metadata("consumer@1@0@x"))
    answer = next(stream)
    assert answer.status.code == d.OK
    sub = answer.settings.subscription
    assert sub.long_polling_timeout.seconds == 20 and sub.receive_batch_size == 32
    assert not sub.fifo
    policy = answer.settings.backoff_policy
    assert policy.max_attempts == 17 and len(policy.customized_backoff.next) == 18
    stream.cancel()
    beat = stub.Heartbeat(s.HeartbeatRequest(client_type=d.PUSH_CONSUMER,
                                             group=d.Resource(name="GrpcG")),
                          metadata=metadata("consumer@1@0@x"))
    assert beat.status.code == d.OK
    assignment = stub.QueryAssignment(s.QueryAssignmentRequest(
        topic=d.Resource(name="SubT"), group=d.Resource(name="GrpcG"),
        endpoints=access_point(node.addrs["grpc"])), metadata=metadata("consumer@1@0@x"))
    assert assignment.status.code == d.OK
    assert [a.message_queue.id for a in assignment.assignments] == [-1]


def test_telemetry_settings_without_pub_sub(node, stub):
    bare = s.TelemetryCommand(settings=d.Settings(client_type=d.PRODUCER))
    with pytest.raises(grpc.RpcError) as err:
        next(stub.Telemetry(iter([bare]), metadata=metadata()))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("method,request_type", [
    ("UpdateOffset", s.UpdateOffsetRequest), ("GetOffset", s.GetOffsetRequest),
    ("QueryOffset", s.QueryOffsetRequest), ("SyncLiteSubscription", s.SyncLiteSubscriptionRequest)])
def test_unimplemented(stub, method, request_type):
    with pytest.raises(grpc.RpcError) as err:
        getattr(stub, method)(request_type(), metadata=metadata())
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_pull_unimplemented_and_recall_unsupported(stub):
    with pytest.raises(grpc.RpcError) as err:
        list(stub.PullMessage(s.PullMessageRequest(), metadata=metadata()))
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    recall = stub.RecallMessage(s.RecallMessageRequest(topic=d.Resource(name="T")),
                                metadata=metadata())
    assert recall.status.code == d.NOT_IMPLEMENTED


def test_large_message_accepted_by_transport(stub):
    """A 5 MiB request passes the transport (the default 4 MiB limit would refuse it with
    RESOURCE_EXHAUSTED); what the handler answers is its business."""
    big = s.QueryRouteRequest(topic=d.Resource(name="x" * (5 << 20)))
    resp = stub.QueryRoute(big, metadata=metadata())
    assert resp.status.code == d.ILLEGAL_TOPIC


def test_tls(start_node, tmp_path: Path):
    assert shutil.which("openssl"), "openssl makes the test's certificate: bash .ci/peers.sh " \
        "installs it (Debian package openssl)"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    node = start_node("--namesrv-port", "0", "--listen-port", "0", "--tls-cert", str(cert),
                      "--tls-key", str(key), roles=("namesrv", "broker", "grpc"))
    assert "tls=on" in node.wait_line(r"grpc\.started")
    port = node.addrs["grpc"].rsplit(":", 1)[1]
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
        resp = MessagingServiceStub(channel).QueryRoute(
            s.QueryRouteRequest(topic=d.Resource(name="NoSuchTopic"),
                                endpoints=access_point(node.addrs["grpc"])),
            metadata=metadata())
    assert resp.status.code == d.TOPIC_NOT_FOUND


def test_grpc_off(start_node):
    node = start_node("--namesrv-port", "0", "--listen-port", "0", "--no-grpc")
    assert "grpc" not in node.addrs

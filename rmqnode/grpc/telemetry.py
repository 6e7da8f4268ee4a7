"""gRPC clients: the Telemetry stream, its settings handshake, Heartbeat and
NotifyClientTermination (spec §4.2, §4.3, §4.11, §6).

Every client opens one Telemetry stream per broker and writes its Settings; the answer on the
same stream is `TelemetryCommand{status OK, settings}` with the server's values merged in
(complete: Node crashes on a producer reply without an exponential backoff, Python applies
max_body_size and long_polling_timeout verbatim). The stream stays open for the client's life
and is the channel for server commands (recovering orphaned transactions).

`GrpcClients` keeps, per client id, what the broker must know: its type, its producer topics
or consumer group and subscriptions, its merged settings and its live stream. Each client is
also registered in the broker's ClientManager through a `GrpcConnection` (a pseudo-connection),
so admin views, consumer lists and producer groups see gRPC clients as they see remoting ones.
A gRPC producer's group is the topic name (one registration per topic), as in the Java proxy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import duration_pb2

from rmqnode import log
from rmqnode.broker.clients import ClientChannel, Subscription
from rmqnode.errors import ConnectionLost, RemotingError
from rmqnode.grpc import auth, headers, resources
from rmqnode.grpc.headers import ClientHeaders
from rmqnode.grpc.status import OK, Code, GrpcError
from rmqnode.grpc.v2 import definition_pb2 as pb
from rmqnode.grpc.v2 import service_pb2
from rmqnode.net.codec import OUR_VERSION, RemotingCommand
from rmqnode.storage.dispatch import parse_delay_levels

if TYPE_CHECKING:
    from rmqnode.broker.controller import BrokerController
    from rmqnode.grpc.service import MessagingService

_log = log.get("rmqnode.grpc.telemetry")

# §6: what the Java proxy tells clients (grpcClientProducer*, grpcClientConsumer*).
PRODUCER_MAX_ATTEMPTS = 3
PRODUCER_BACKOFF = pb.ExponentialBackoff(initial=duration_pb2.Duration(nanos=10_000_000),
                                         max=duration_pb2.Duration(seconds=1), multiplier=2)
RECEIVE_BATCH_SIZE = 32
LONG_POLLING_TIMEOUT_SECONDS = 20
CONSUMER_TYPES = {pb.SIMPLE_CONSUMER: "CONSUME_ACTIVELY", pb.PUSH_CONSUMER: "CONSUME_PASSIVELY"}
FILTER_TYPES = {pb.TAG: "TAG", pb.SQL: "SQL92"}
MAX_TOPICS = 1024  # ours: topics one client may publish to or subscribe (one settings)
NODE_LANGUAGE = "HTTP"  # what rocketmq-client-nodejs sends as x-mq-language

BrokerRequestHandler = Callable[["GrpcClient", RemotingCommand], None]


class _End:
    """Put on a stream's outbox to complete it (a newer stream or termination replaced it)."""


_END = _End()


@dataclass
class GrpcClient:
    """One gRPC client (one x-mq-client-id) as this broker knows it."""

    client_id: str
    headers: ClientHeaders
    client_type: int = pb.CLIENT_TYPE_UNSPECIFIED
    settings: pb.Settings | None = None  # merged, as last answered on the stream
    topics: tuple[str, ...] = ()  # producer: publishing topics (= its producer groups)
    group: str = ""  # consumers: the consumer group
    outbox: asyncio.Queue[service_pb2.TelemetryCommand | _End] | None = None  # the live stream
    connection: GrpcConnection = field(init=False)

    def __post_init__(self) -> None:
        self.connection = GrpcConnection(self)

    @property
    def is_producer(self) -> bool:
        return self.client_type == pb.PRODUCER

    @property
    def has_stream(self) -> bool:
        return self.outbox is not None


class GrpcConnection:
    """What the broker's ClientManager holds for a gRPC client, in place of a remoting
    Connection: it is open while the client's Telemetry stream is, and the broker's oneway
    requests to it (e.g. CHECK_TRANSACTION_STATE) go to the handler registered for their
    code with GrpcClients.on_broker_request. It answers no request/response calls."""

    def __init__(self, client: GrpcClient) -> None:
        self.client = client
        self.registry: GrpcClients | None = None  # set when registered

    @property
    def peer(self) -> str:
        return self.client.headers.peer_address

    @property
    def is_open(self) -> bool:
        return self.client.has_stream

    def oneway(self, cmd: RemotingCommand) -> None:
        if self.registry is None or not self.is_open:
            raise ConnectionLost(f"gRPC client {self.client.client_id} has no Telemetry stream")
        self.registry.broker_request(self.client, cmd)

    async def request(self, cmd: RemotingCommand, timeout: float = 3.0) -> RemotingCommand:
        raise ConnectionLost(f"gRPC client {self.client.client_id} answers no remoting "
                             "requests")

    def close(self) -> None:
        """The broker expired the client (no heartbeat for 120 s): forget it."""
        if self.registry is not None:
            self.registry.remove(self.client.client_id)


class GrpcClients:
    """The registry of gRPC clients of one broker.

    API for the RPC modules:
      * `get(client_id)` -> GrpcClient | None: the client's type, topics or group, settings.
      * `producers_for(topic)` -> list[GrpcClient]: live producers (with a Telemetry stream)
        that publish to `topic`; their producer group is the topic.
      * `await send_command(client_id, TelemetryCommand)` -> bool: write a server command
        (e.g. `recover_orphaned_transaction_command`) on the client's Telemetry stream; False
        when the client has no live stream. True means queued on the stream, not answered.
      * `on_broker_request(code, handler)`: the broker's oneway requests to a gRPC client's
        pseudo-connection (e.g. CHECK_TRANSACTION_STATE from the transaction checker, which
        finds gRPC producers in producer group = topic) call `handler(client, cmd)`.
    """

    def __init__(self, broker: BrokerController) -> None:
        self.broker = broker
        self.clients: dict[str, GrpcClient] = {}
        self.handlers: dict[int, BrokerRequestHandler] = {}

    # -- for the RPC modules ---------------------------------------------------------------

    def get(self, client_id: str) -> GrpcClient | None:
        return self.clients.get(client_id)

    def producers_for(self, topic: str) -> list[GrpcClient]:
        """Producers with a live Telemetry stream that publish to `topic`."""
        return [c for c in self.clients.values()
                if c.is_producer and c.has_stream and topic in c.topics]

    async def send_command(self, client_id: str, command: service_pb2.TelemetryCommand) -> bool:
        """Queue `command` on the client's Telemetry stream; False without a live stream."""
        client = self.clients.get(client_id)
        if client is None or client.outbox is None:
            return False
        client.outbox.put_nowait(command)
        return True

    def on_broker_request(self, code: int, handler: BrokerRequestHandler) -> None:
        self.handlers[code] = handler

    def broker_request(self, client: GrpcClient, cmd: RemotingCommand) -> None:
        handler = self.handlers.get(cmd.code)
        if handler is None:
            _log.debug("broker_request.dropped", client=client.client_id, code=cmd.code)
            return
        handler(client, cmd)

    # -- registry --------------------------------------------------------------------------

    def client(self, hdrs: ClientHeaders) -> GrpcClient:
        """The client these headers name, added on first sight."""
        client = self.clients.get(hdrs.client_id)
        if client is None:
            client = self.clients[hdrs.client_id] = GrpcClient(hdrs.client_id, hdrs)
            client.connection.registry = self
        return client

    def open_stream(self, client: GrpcClient
                    ) -> asyncio.Queue[service_pb2.TelemetryCommand | _End]:
        """A new Telemetry stream of the client becomes its command channel; an older one is
        completed (the client replaced it)."""
        if client.outbox is not None:
            client.outbox.put_nowait(_END)
        client.outbox = asyncio.Queue()
        return client.outbox

    def close_stream(self, client: GrpcClient,
                     outbox: asyncio.Queue[service_pb2.TelemetryCommand | _End]) -> None:
        if client.outbox is outbox:
            client.outbox = None

    def register(self, client: GrpcClient) -> None:
        """(Re-)register the client with the broker's ClientManager, which also refreshes
        its last heartbeat: producers once per topic (group = topic), consumers in their
        group with the subscriptions of their settings."""
        manager = self.broker.clients
        channel = ClientChannel(client.connection, client.client_id,
                                client.headers.remoting_language, OUR_VERSION)
        if client.is_producer:
            for topic in client.topics:
                manager.register_producer(topic, channel)
            return
        if client.client_type not in CONSUMER_TYPES or not client.group:
            return
        self.broker.groups.find(client.group)  # created on registration, as a heartbeat does
        if manager.register_consumer(client.group, channel, CONSUMER_TYPES[client.client_type],
                                     "CLUSTERING", "CONSUME_FROM_LAST_OFFSET",
                                     _subscriptions(client)):
            self.broker.notify_consumers_changed(client.group)

    def remove(self, client_id: str) -> None:
        """Forget the client: out of the broker's tables, its stream completed."""
        client = self.clients.pop(client_id, None)
        if client is None:
            return
        for group in self.broker.clients.channel_closed(client.connection):
            self.broker.notify_consumers_changed(group)
        if client.outbox is not None:
            client.outbox.put_nowait(_END)
            client.outbox = None
        _log.info("client.removed", client=client_id)


def _subscriptions(client: GrpcClient) -> list[Subscription]:
    if client.settings is None:
        return []
    return [Subscription.parse(entry.topic.name, entry.expression.expression,
                               int(time.time() * 1000),
                               FILTER_TYPES.get(entry.expression.type, "TAG"))
            for entry in client.settings.subscription.subscriptions]


# -- settings ------------------------------------------------------------------------------

def _topics(resources_list: Any) -> tuple[str, ...]:
    if len(resources_list) > MAX_TOPICS:
        raise GrpcError(Code.BAD_REQUEST, f"more than {MAX_TOPICS} topics in the settings")
    return tuple(dict.fromkeys(resources.topic(r) for r in resources_list))


def _consumer_backoff(svc: MessagingService, group: dict[str, Any], language: str,
                      client_type: int) -> pb.RetryPolicy:
    """The group's retry policy as the Java proxy sends it: max attempts retryMaxTimes + 1,
    the delay levels as a customized backoff; Node push consumers, which only understand an
    exponential one, get its equivalent (first level to last, doubling)."""
    attempts = int(group.get("retryMaxTimes", 16)) + 1
    levels = parse_delay_levels(svc.broker.config.messageDelayLevel)
    if language == NODE_LANGUAGE and client_type == pb.PUSH_CONSUMER:
        return pb.RetryPolicy(max_attempts=attempts, exponential_backoff=pb.ExponentialBackoff(
            initial=_duration(levels[0]), max=_duration(levels[-1]), multiplier=2))
    return pb.RetryPolicy(max_attempts=attempts, customized_backoff=pb.CustomizedBackoff(
        next=[_duration(ms) for ms in levels]))


def _duration(millis: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=millis // 1000, nanos=millis % 1000 * 1_000_000)


def merged_settings(svc: MessagingService, client: GrpcClient,
                    settings: pb.Settings) -> pb.Settings:
    """The client's settings with the server's values in (§6): what it is answered."""
    merged = pb.Settings()
    merged.CopyFrom(settings)
    merged.metric.Clear()
    merged.metric.on = False
    if client.is_producer:
        merged.backoff_policy.CopyFrom(pb.RetryPolicy(max_attempts=PRODUCER_MAX_ATTEMPTS,
                                                      exponential_backoff=PRODUCER_BACKOFF))
        merged.publishing.max_body_size = svc.broker.config.maxMessageSize
        merged.publishing.validate_message_type = True
        return merged
    group = svc.broker.groups.find(client.group) or {}
    subscription = merged.subscription
    subscription.receive_batch_size = RECEIVE_BATCH_SIZE
    subscription.long_polling_timeout.CopyFrom(
        duration_pb2.Duration(seconds=LONG_POLLING_TIMEOUT_SECONDS))
    subscription.fifo = bool(group.get("consumeMessageOrderly", False))
    merged.backoff_policy.CopyFrom(_consumer_backoff(svc, group, client.headers.language,
                                                     client.client_type))
    return merged


def apply_settings(svc: MessagingService, client: GrpcClient,
                   settings: pb.Settings) -> pb.Settings:
    """Check a client's Settings, remember and register the client; returns the reply's
    settings. GrpcError when they are unusable (no publishing/subscription, an unknown
    client type, a bad topic or group)."""
    kind = settings.client_type
    pub_sub = settings.WhichOneof("pub_sub")
    if pub_sub is None:
        raise GrpcError(Code.BAD_REQUEST, "settings carry neither publishing nor subscription")
    if kind == pb.PRODUCER and pub_sub == "publishing":
        topics, group = _topics(settings.publishing.topics), ""
    elif kind in CONSUMER_TYPES and pub_sub == "subscription":
        group = resources.group(settings.subscription.group)
        topics = _topics([entry.topic for entry in settings.subscription.subscriptions])
    else:
        raise GrpcError(Code.UNRECOGNIZED_CLIENT_TYPE,
                        f"client type {kind} with {pub_sub} is not supported")
    client.client_type, client.topics, client.group = kind, topics, group
    client.settings = merged_settings(svc, client, settings)
    try:
        svc.clients.register(client)
    except RemotingError as exc:  # a subscription expression the broker cannot take
        raise GrpcError(Code.ILLEGAL_FILTER_EXPRESSION, exc.remark) from None
    return client.settings


# -- the RPCs ------------------------------------------------------------------------------

async def telemetry(svc: MessagingService,
                    requests: AsyncIterator[service_pb2.TelemetryCommand],
                    context: grpc.aio.ServicerContext
                    ) -> AsyncIterator[service_pb2.TelemetryCommand]:
    """The Telemetry stream. Commands the client writes are read by a task of their own;
    answers and server commands go out through the client's outbox, in order. Unusable
    settings end the stream with INVALID_ARGUMENT (the Java proxy's answer), settings the
    ACL refuses with PERMISSION_DENIED."""
    try:
        hdrs = headers.enter(context)
    except GrpcError as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    client = svc.clients.client(hdrs)
    outbox = svc.clients.open_stream(client)
    reader = asyncio.create_task(_read_commands(svc, client, requests, outbox))
    _log.debug("telemetry.opened", client=client.client_id, peer=hdrs.peer)
    try:
        while True:
            item = await outbox.get()
            if isinstance(item, _End):
                break
            yield item
    finally:
        reader.cancel()
        svc.clients.close_stream(client, outbox)
        _log.debug("telemetry.closed", client=client.client_id)
    if reader.done() and not reader.cancelled() and reader.exception() is not None:
        error = reader.exception()
        refused = isinstance(error, GrpcError) and error.code in (Code.UNAUTHORIZED,
                                                                 Code.FORBIDDEN)
        # settings the ACL refuses end the stream as the Java proxy ends it
        await context.abort(grpc.StatusCode.PERMISSION_DENIED if refused
                            else grpc.StatusCode.INVALID_ARGUMENT, str(error))


async def _read_commands(svc: MessagingService, client: GrpcClient,
                         requests: AsyncIterator[service_pb2.TelemetryCommand],
                         outbox: asyncio.Queue[service_pb2.TelemetryCommand | _End]) -> None:
    """Answer each settings command; the end of the client's writes ends our stream too.
    A GrpcError (bad settings) is left on the task, and the stream ends with it."""
    try:
        async for command in requests:
            kind = command.WhichOneof("command")
            if kind == "settings":
                auth.check(svc, command.settings)
                answer = apply_settings(svc, client, command.settings)
                outbox.put_nowait(service_pb2.TelemetryCommand(status=OK, settings=answer))
                _log.info("client.settings", client=client.client_id,
                          type=pb.ClientType.Name(client.client_type),
                          group=client.group or "-", topics=",".join(client.topics) or "-")
            else:  # thread stack traces, verify results: answers to commands we never send
                _log.debug("telemetry.ignored", client=client.client_id, command=kind)
    finally:
        outbox.put_nowait(_END)


async def heartbeat(svc: MessagingService, request: service_pb2.HeartbeatRequest,
                    context: grpc.aio.ServicerContext) -> service_pb2.HeartbeatResponse:
    """Heartbeat: refresh the client's registrations. Lenient where the Java proxy answers
    40015 for a client without settings (this node restarted; Python re-sends settings only
    every 5 minutes): it is registered from the request's type and group."""
    client = svc.clients.client(headers.current())
    kind = request.client_type
    if kind != pb.PRODUCER and kind not in CONSUMER_TYPES:
        raise GrpcError(Code.UNRECOGNIZED_CLIENT_TYPE, "unrecognized client type")
    if kind in CONSUMER_TYPES:
        group = resources.group(request.group)
        if client.settings is None:
            client.group = group
    if client.settings is None:
        client.client_type = kind
    svc.clients.register(client)
    return service_pb2.HeartbeatResponse(status=OK)


async def notify_client_termination(
        svc: MessagingService, request: service_pb2.NotifyClientTerminationRequest,
        context: grpc.aio.ServicerContext) -> service_pb2.NotifyClientTerminationResponse:
    """The client shuts down: unregister it everywhere and complete its stream; without a
    stream its auto-renewed messages are released (renewal.py). An unknown client is
    answered OK too (Python does not read the reply)."""
    if request.HasField("group"):
        resources.group(request.group)
    svc.clients.remove(headers.current().client_id)
    return service_pb2.NotifyClientTerminationResponse(status=OK)

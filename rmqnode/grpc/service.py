"""apache.rocketmq.v2.MessagingService: one thin method per RPC, delegating to a module.

Each RPC is `async def` and hands `(svc, request, context)` to a module function: route.py
(QueryRoute, QueryAssignment), telemetry.py (Telemetry, Heartbeat, NotifyClientTermination),
producer.py (SendMessage, EndTransaction), consumer.py (ReceiveMessage, AckMessage,
ChangeInvisibleDuration, ForwardMessageToDeadLetterQueue). The wrapper here does what every
RPC shares: it reads the headers (missing client id -> 40017), checks the ACL when it is on
(auth.py: 40100 / 40300), turns a GrpcError into the
response's Status, and answers any other exception with INTERNAL_SERVER_ERROR (50001, as the
Java proxy does) after one log line, without a traceback, like the remoting transport's
`request.crashed`: a client that can crash a handler at will must not fill the log.

Methods the Apache 5.3 proxy does not serve either answer gRPC UNIMPLEMENTED.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf import timestamp_pb2

from rmqnode import log
from rmqnode.grpc import auth, consumer, headers, producer, route, telemetry
from rmqnode.grpc.renewal import Renewals
from rmqnode.grpc.status import Code, GrpcError
from rmqnode.grpc.v2 import service_pb2 as pb
from rmqnode.grpc.v2 import service_pb2_grpc
from rmqnode.net.connection import CRASH_MESSAGE_LIMIT, raised_at
from rmqnode.validation import quote

if TYPE_CHECKING:
    from rmqnode.broker.controller import BrokerController

_log = log.get("rmqnode.grpc")

Request = TypeVar("Request")
Response = TypeVar("Response")
Handler = Callable[["MessagingService", Any, grpc.aio.ServicerContext], Awaitable[Response]]


def crashed(method: str, exc: Exception) -> GrpcError:
    """Log an unexpected exception as one line and return what the client is told."""
    message = quote(str(exc), CRASH_MESSAGE_LIMIT)
    _log.error("request.crashed", method=method, error=type(exc).__name__, message=message,
               at=raised_at(exc))
    return GrpcError(Code.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {message}")


class MessagingService(service_pb2_grpc.MessagingServiceServicer):
    """The gRPC endpoint of one broker (local mode: handlers call the broker in-process).

    `broker` is the BrokerController; `clients` the registry of gRPC clients (settings,
    Telemetry streams, broker registrations) that handlers and server commands share;
    `renewals` the push consumers' auto-renewed messages (its sweep runs between `start` and
    `stop`, with the server)."""

    def __init__(self, broker: BrokerController) -> None:
        self.broker = broker
        self.clients = telemetry.GrpcClients(broker)
        self.renewals = Renewals(self)
        producer.attach(self)  # transaction checks ride on the producers' Telemetry streams

    async def _unary(self, method: str, handler: Handler[Response], request: Any,
                     context: grpc.aio.ServicerContext,
                     response_type: Callable[..., Response]) -> Response:
        """Run a unary handler; its GrpcError (or a crash) becomes the response's Status."""
        try:
            headers.enter(context)
            auth.check(self, request)
            return await handler(self, request, context)
        except GrpcError as exc:
            _log.debug("request.failed", method=method, code=int(exc.code), message=exc.message)
            return response_type(status=exc.to_status())
        except Exception as exc:  # noqa: BLE001 - answered, logged once
            return response_type(status=crashed(method, exc).to_status())

    # -- route.py ------------------------------------------------------------------------------

    async def QueryRoute(self, request: pb.QueryRouteRequest,
                         context: grpc.aio.ServicerContext) -> pb.QueryRouteResponse:
        return await self._unary("QueryRoute", route.query_route, request, context,
                                 pb.QueryRouteResponse)

    async def QueryAssignment(self, request: pb.QueryAssignmentRequest,
                              context: grpc.aio.ServicerContext) -> pb.QueryAssignmentResponse:
        return await self._unary("QueryAssignment", route.query_assignment, request, context,
                                 pb.QueryAssignmentResponse)

    # -- telemetry.py --------------------------------------------------------------------------

    async def Telemetry(self, request_iterator: AsyncIterator[Any],
                        context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        """The bidi stream: settings handshake, then server commands until the client goes.
        Errors here end the stream with a gRPC status (telemetry.py decides which)."""
        async for command in telemetry.telemetry(self, request_iterator, context):
            yield command

    async def Heartbeat(self, request: pb.HeartbeatRequest,
                        context: grpc.aio.ServicerContext) -> pb.HeartbeatResponse:
        return await self._unary("Heartbeat", telemetry.heartbeat, request, context,
                                 pb.HeartbeatResponse)

    async def NotifyClientTermination(
            self, request: pb.NotifyClientTerminationRequest,
            context: grpc.aio.ServicerContext) -> pb.NotifyClientTerminationResponse:
        return await self._unary("NotifyClientTermination", telemetry.notify_client_termination,
                                 request, context, pb.NotifyClientTerminationResponse)

    # -- producer.py --------------------------------------------------------------------------

    async def SendMessage(self, request: pb.SendMessageRequest,
                          context: grpc.aio.ServicerContext) -> pb.SendMessageResponse:
        return await self._unary("SendMessage", producer.send_message, request, context,
                                 pb.SendMessageResponse)

    async def EndTransaction(self, request: pb.EndTransactionRequest,
                             context: grpc.aio.ServicerContext) -> pb.EndTransactionResponse:
        return await self._unary("EndTransaction", producer.end_transaction, request, context,
                                 pb.EndTransactionResponse)

    # -- consumer.py --------------------------------------------------------------------------

    async def ReceiveMessage(self, request: pb.ReceiveMessageRequest,
                             context: grpc.aio.ServicerContext
                             ) -> AsyncIterator[pb.ReceiveMessageResponse]:
        """consumer.receive_message yields the whole stream (status, messages, delivery
        timestamp). A GrpcError (or a crash) it raises before it yielded a status becomes
        that status, followed by the delivery timestamp as the Java proxy sends it; after a
        status went out, the stream just ends."""
        sent_status = False
        try:
            headers.enter(context)
            auth.check(self, request)
            async for response in consumer.receive_message(self, request, context):
                sent_status = sent_status or response.HasField("status")
                yield response
        except Exception as exc:  # noqa: BLE001 - answered in the stream, logged once
            error = exc if isinstance(exc, GrpcError) else crashed("ReceiveMessage", exc)
            if sent_status:
                return
            yield pb.ReceiveMessageResponse(status=error.to_status())
            now = timestamp_pb2.Timestamp()
            now.GetCurrentTime()
            yield pb.ReceiveMessageResponse(delivery_timestamp=now)

    async def AckMessage(self, request: pb.AckMessageRequest,
                         context: grpc.aio.ServicerContext) -> pb.AckMessageResponse:
        return await self._unary("AckMessage", consumer.ack_message, request, context,
                                 pb.AckMessageResponse)

    async def ChangeInvisibleDuration(
            self, request: pb.ChangeInvisibleDurationRequest,
            context: grpc.aio.ServicerContext) -> pb.ChangeInvisibleDurationResponse:
        return await self._unary("ChangeInvisibleDuration", consumer.change_invisible_duration,
                                 request, context, pb.ChangeInvisibleDurationResponse)

    async def ForwardMessageToDeadLetterQueue(
            self, request: pb.ForwardMessageToDeadLetterQueueRequest,
            context: grpc.aio.ServicerContext) -> pb.ForwardMessageToDeadLetterQueueResponse:
        return await self._unary("ForwardMessageToDeadLetterQueue",
                                 consumer.forward_message_to_dead_letter_queue, request, context,
                                 pb.ForwardMessageToDeadLetterQueueResponse)

    # -- not served ----------------------------------------------------------------------------

    async def RecallMessage(self, request: pb.RecallMessageRequest,
                            context: grpc.aio.ServicerContext) -> pb.RecallMessageResponse:
        """Optional in the protocol; the clients map 50100 to an UnsupportedException."""
        return await self._unary("RecallMessage", _not_implemented, request, context,
                                 pb.RecallMessageResponse)

    async def PullMessage(self, request: pb.PullMessageRequest,
                          context: grpc.aio.ServicerContext
                          ) -> AsyncIterator[pb.PullMessageResponse]:
        await _unimplemented("PullMessage", context)
        yield pb.PullMessageResponse()  # never reached: makes this an async generator

    async def UpdateOffset(self, request: pb.UpdateOffsetRequest,
                           context: grpc.aio.ServicerContext) -> pb.UpdateOffsetResponse:
        await _unimplemented("UpdateOffset", context)
        return pb.UpdateOffsetResponse()

    async def GetOffset(self, request: pb.GetOffsetRequest,
                        context: grpc.aio.ServicerContext) -> pb.GetOffsetResponse:
        await _unimplemented("GetOffset", context)
        return pb.GetOffsetResponse()

    async def QueryOffset(self, request: pb.QueryOffsetRequest,
                          context: grpc.aio.ServicerContext) -> pb.QueryOffsetResponse:
        await _unimplemented("QueryOffset", context)
        return pb.QueryOffsetResponse()

    async def SyncLiteSubscription(
            self, request: pb.SyncLiteSubscriptionRequest,
            context: grpc.aio.ServicerContext) -> pb.SyncLiteSubscriptionResponse:
        await _unimplemented("SyncLiteSubscription", context)
        return pb.SyncLiteSubscriptionResponse()


async def _not_implemented(svc: MessagingService, request: Any,
                           context: grpc.aio.ServicerContext) -> Any:
    raise GrpcError(Code.NOT_IMPLEMENTED, "recalling messages is not supported")


async def _unimplemented(method: str, context: grpc.aio.ServicerContext) -> None:
    """End the call with gRPC UNIMPLEMENTED (abort raises: nothing after it runs)."""
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented")


__all__ = ["MessagingService", "crashed"]

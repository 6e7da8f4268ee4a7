"""The plain ACL on the gRPC endpoint (RocketMQ 5.x proxy: AuthenticationInterceptor,
PlainAccessResource.parse for gRPC messages, AuthorizationHeader), with the broker's accounts.

A 5.x client signs the call, not the message: `authorization: MQv2-HMAC-SHA1
Credential=AK/..., SignedHeaders=x-mq-date-time, Signature=HEX` where the signature is
HMAC-SHA1 of the `x-mq-date-time` header with the secret key (hex, either case). Each request
message then needs, as in 5.x: a send PUB on its topic, a receive, ack, invisible-time change
or dead-letter forward SUB on the group and the topic, a route query PUB or SUB on the topic,
a consumer's heartbeat and termination SUB on its group, Settings PUB on the topics it
publishes or SUB on the group and topics it subscribes. The checks themselves are the
broker's (acl/validator.py), in the same order.

Refusals are statuses, as the spec's mapping has them: 40100 UNAUTHORIZED when the caller is
not known (no or unknown access key, a bad signature, a header that does not parse), 40300
FORBIDDEN when a permission is missing. (The Java proxy ends the call with gRPC
PERMISSION_DENIED instead; the clients raise the same kind of error for both.) The checks run
only with aclEnable=true: the Python client always sends an unsigned header, which is
ignored then.
"""

from __future__ import annotations

import base64
import hmac
from typing import TYPE_CHECKING, Any

from rmqnode.acl.addresses import remote_host
from rmqnode.acl.rules import ANY, PUB, SUB, retry_topic
from rmqnode.acl.signature import signature
from rmqnode.acl.validator import AclError
from rmqnode.grpc import headers
from rmqnode.grpc.status import Code, GrpcError
from rmqnode.grpc.v2 import definition_pb2 as defs
from rmqnode.grpc.v2 import service_pb2 as pb

if TYPE_CHECKING:
    from rmqnode.grpc.service import MessagingService

_CONSUMERS = (defs.PUSH_CONSUMER, defs.SIMPLE_CONSUMER)


class _Credentials:
    """AuthorizationHeader: the access key and the signature (as Base64), or why not."""

    def __init__(self, header: str | None) -> None:
        self.access_key: str | None = None
        self.signature: str | None = None
        if header is None:
            return
        method, _, rest = header.partition(" ")
        if not rest:
            raise GrpcError(Code.UNAUTHORIZED, "authorization header is incorrect")
        for item in rest.split(","):
            key, sep, value = item.strip().partition("=")
            if not sep:
                raise GrpcError(Code.UNAUTHORIZED,
                                "authorization keyValues length is incorrect, actual length=1")
            if key == "Credential":
                self.access_key = value.split("/")[0] or None  # empty: anonymous
            elif key == "Signature":
                try:
                    self.signature = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise GrpcError(Code.UNAUTHORIZED,
                                    "authorization signature is not hexadecimal") from None


def _needed(request: Any) -> dict[str, int] | None:
    """PlainAccessResource.parse(GeneratedMessageV3): what a request message needs."""
    needed: dict[str, int] = {}

    def group(resource: defs.Resource, perm: int) -> None:
        needed[retry_topic(resource.name)] = perm

    def topic(resource: defs.Resource, perm: int) -> None:
        needed[resource.name] = perm

    if isinstance(request, pb.SendMessageRequest):
        if not request.messages:
            raise GrpcError(Code.BAD_REQUEST, "SendMessageRequest, messageCount is zero")
        first = request.messages[0].topic
        if any(m.topic != first for m in request.messages):
            raise GrpcError(Code.BAD_REQUEST,
                            "SendMessageRequest, messages' topic is not consistent")
        topic(first, PUB)
    elif isinstance(request, pb.ReceiveMessageRequest):
        group(request.group, SUB)
        topic(request.message_queue.topic, SUB)
    elif isinstance(request, (pb.AckMessageRequest, pb.ChangeInvisibleDurationRequest,
                              pb.ForwardMessageToDeadLetterQueueRequest,
                              pb.QueryAssignmentRequest)):
        group(request.group, SUB)
        topic(request.topic, SUB)
    elif isinstance(request, pb.EndTransactionRequest):
        topic(request.topic, PUB)
    elif isinstance(request, pb.QueryRouteRequest):
        topic(request.topic, ANY)
    elif isinstance(request, pb.HeartbeatRequest):
        if request.client_type in _CONSUMERS:
            if not request.HasField("group"):
                raise GrpcError(Code.UNAUTHORIZED, "Consumer heartbeat doesn't have group")
            group(request.group, SUB)
    elif isinstance(request, pb.NotifyClientTerminationRequest):
        if request.HasField("group"):
            group(request.group, SUB)
    elif isinstance(request, defs.Settings):
        if request.HasField("publishing"):
            for resource in request.publishing.topics:
                topic(resource, PUB)
        if request.HasField("subscription"):
            group(request.subscription.group, SUB)
            for entry in request.subscription.subscriptions:
                topic(entry.topic, SUB)
    return needed or None


def check(svc: MessagingService, request: Any) -> None:
    """Refuse the call (GrpcError 40100 or 40300) unless the broker's ACL lets it through;
    nothing to do with aclEnable=false. `request` is the call's message (a Settings for
    the Telemetry stream); the credentials are in the call's headers (headers.current())."""
    acl = svc.broker.acl
    if acl is None:
        return
    call = headers.current()
    credentials = _Credentials(call.authorization)
    content = call.date_time.encode("utf-8")

    def signed_by(secret: str) -> bool:
        given = credentials.signature
        return given is not None and hmac.compare_digest(
            signature(content, secret).encode(), given.encode())

    host = remote_host(call.peer_address.replace("[", "").replace("]", ""))
    try:
        acl.validate(host, credentials.access_key, signed_by, 0, _needed(request))
    except AclError as exc:
        raise GrpcError(Code.FORBIDDEN if exc.authenticated else Code.UNAUTHORIZED,
                        exc.message) from None


__all__ = ["check"]

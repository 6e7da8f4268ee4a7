"""Names and addresses as gRPC requests carry them, checked where they enter (spec §2.2, §2.3).

Topics and groups follow rmqnode.validation (the broker's own rules), plus what the Java proxy
refuses on top: system topics (40002), system groups and groups over 120 characters (40003).
`Resource.resource_namespace` is ignored, as the Apache proxy ignores it: only `name` counts,
and responses echo the request's Resource unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from rmqnode import validation
from rmqnode.broker.topics import SYSTEM_TOPIC_PREFIX, SYSTEM_TOPICS
from rmqnode.errors import RemotingError
from rmqnode.grpc.status import Code, GrpcError
from rmqnode.grpc.v2 import definition_pb2 as pb

GROUP_MAX_LENGTH = 120  # the proxy's limit (the broker takes 255)
SYSTEM_GROUP_PREFIX = "CID_RMQ_SYS_"
ADDRESS_SCHEMES = (pb.IPv4, pb.IPv6, pb.DOMAIN_NAME)
MAX_ADDRESSES = 64  # ours: an access point lists a handful of proxies, never thousands


def _name(check: Callable[[str], str], name: str, code: Code) -> str:
    """`name` passed through a broker check, its RemotingError answered as `code`."""
    try:
        return check(name)
    except RemotingError as exc:
        raise GrpcError(code, exc.remark) from None


def topic(resource: pb.Resource) -> str:
    """The topic a request names; 40002 ILLEGAL_TOPIC when it is no valid, non-system name."""
    name = _name(validation.topic, resource.name, Code.ILLEGAL_TOPIC)
    if name in SYSTEM_TOPICS or name.startswith(SYSTEM_TOPIC_PREFIX):
        raise GrpcError(Code.ILLEGAL_TOPIC, f"topic {name} is a system topic")
    return name


def group(resource: pb.Resource) -> str:
    """The consumer group a request names; 40003 ILLEGAL_CONSUMER_GROUP otherwise."""
    name = _name(validation.group, resource.name, Code.ILLEGAL_CONSUMER_GROUP)
    if len(name) > GROUP_MAX_LENGTH:
        raise GrpcError(Code.ILLEGAL_CONSUMER_GROUP,
                        f"the group is longer than {GROUP_MAX_LENGTH} characters")
    if name.startswith(SYSTEM_GROUP_PREFIX):
        raise GrpcError(Code.ILLEGAL_CONSUMER_GROUP, f"group {name} is a system group")
    return name


def endpoints(value: pb.Endpoints) -> pb.Endpoints:
    """An access point as the client dialled it, echoed into routes: at least one address,
    each a host and a port in 1..65535, with a known scheme; 40001 ILLEGAL_ACCESS_POINT
    otherwise (a route pointing nowhere would leave the client retrying forever)."""
    if value.scheme not in ADDRESS_SCHEMES:
        raise GrpcError(Code.ILLEGAL_ACCESS_POINT, "endpoints have no address scheme")
    if not 0 < len(value.addresses) <= MAX_ADDRESSES:
        raise GrpcError(Code.ILLEGAL_ACCESS_POINT,
                        f"endpoints must list 1 to {MAX_ADDRESSES} addresses")
    for address in value.addresses:
        host = address.host
        if not host or len(host) > 255 or not host.isprintable() or host != host.strip():
            raise GrpcError(Code.ILLEGAL_ACCESS_POINT,
                            f"illegal host {validation.quote(host)} in endpoints")
        if not 0 < address.port <= 65535:
            raise GrpcError(Code.ILLEGAL_ACCESS_POINT,
                            f"illegal port {address.port} in endpoints")
    return value

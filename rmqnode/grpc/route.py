"""QueryRoute and QueryAssignment (spec §4.1, §4.5): this broker's queues as gRPC clients see
them.

The route lists one MessageQueue per queue of the topic on this broker, with the broker's
endpoints echoing what the client dialled (the address it can surely reach again, as the Java
proxy does in cluster mode). Queue ids are the broker's own: queue i is readable when
i < readQueueNums and writable when i < writeQueueNums, so the queues both readable and
writable come first and queue 0 is READ_WRITE whenever the topic is; Node 1.0.8 sends and
receives on queue 0 only. Routes never create topics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from rmqnode.broker.topics import TopicConfig
from rmqnode.grpc import resources
from rmqnode.grpc.status import OK, Code, GrpcError
from rmqnode.grpc.v2 import definition_pb2 as pb
from rmqnode.grpc.v2 import service_pb2
from rmqnode.net.codes import PERM_READ, PERM_WRITE

if TYPE_CHECKING:
    from rmqnode.grpc.service import MessagingService

# Topic attribute message.type -> what clients may send there (TopicMessageType).
ACCEPT_TYPES: dict[str, tuple[int, ...]] = {
    "NORMAL": (pb.NORMAL,), "FIFO": (pb.FIFO,), "DELAY": (pb.DELAY,),
    "TRANSACTION": (pb.TRANSACTION,),
    "MIXED": (pb.NORMAL, pb.FIFO, pb.DELAY, pb.TRANSACTION),
}


def accept_message_types(topic: TopicConfig) -> tuple[int, ...]:
    """The message types a topic takes; an attribute value we do not know takes none
    (MESSAGE_TYPE_UNSPECIFIED), so clients refuse to send rather than guess."""
    return ACCEPT_TYPES.get(topic.message_type, (pb.MESSAGE_TYPE_UNSPECIFIED,))


def find_topic(svc: MessagingService, name: str) -> TopicConfig:
    """The topic's config on this broker; 40402 TOPIC_NOT_FOUND when it has none."""
    topic = svc.broker.topics.table.get(name)
    if topic is None:
        raise GrpcError(Code.TOPIC_NOT_FOUND, f"topic {name} does not exist")
    return topic


def effective_perm(svc: MessagingService, topic: TopicConfig) -> int:
    """The topic's permission as this broker grants it (brokerPermission masks it)."""
    return topic.perm & svc.broker.config.brokerPermission


def _permission(readable: bool, writable: bool) -> int:
    return (pb.READ_WRITE if readable and writable else pb.READ if readable
            else pb.WRITE if writable else pb.NONE)


def broker_of(svc: MessagingService, endpoints: pb.Endpoints) -> pb.Broker:
    """This broker as routes name it: the master (id 0) at the endpoints the client used."""
    return pb.Broker(name=svc.broker.config.brokerName, id=0, endpoints=endpoints)


def route_queues(svc: MessagingService, resource: pb.Resource, topic: TopicConfig,
                 endpoints: pb.Endpoints) -> list[pb.MessageQueue]:
    """One MessageQueue per queue id of the topic here (§4.1). A topic that is neither
    readable nor writable still shows its queues, as NONE, so clients see why they fail."""
    perm = effective_perm(svc, topic)
    reads = topic.readQueueNums if perm & PERM_READ else 0
    writes = topic.writeQueueNums if perm & PERM_WRITE else 0
    count = max(reads, writes) or max(1, topic.readQueueNums, topic.writeQueueNums)
    broker = broker_of(svc, endpoints)
    accept = accept_message_types(topic)
    return [pb.MessageQueue(topic=resource, id=queue_id,
                            permission=_permission(queue_id < reads, queue_id < writes),
                            broker=broker, accept_message_types=accept)
            for queue_id in range(count)]


async def query_route(svc: MessagingService, request: service_pb2.QueryRouteRequest,
                      context: grpc.aio.ServicerContext) -> service_pb2.QueryRouteResponse:
    """QueryRoute: this broker's queues of the topic; 40402 for a topic it does not have."""
    name = resources.topic(request.topic)
    endpoints = resources.endpoints(request.endpoints)
    queues = route_queues(svc, request.topic, find_topic(svc, name), endpoints)
    return service_pb2.QueryRouteResponse(status=OK, message_queues=queues)


async def query_assignment(svc: MessagingService,
                           request: service_pb2.QueryAssignmentRequest,
                           context: grpc.aio.ServicerContext
                           ) -> service_pb2.QueryAssignmentResponse:
    """QueryAssignment for push consumers (§4.5): every member of a group gets the same
    answer, because POP balances on the broker. An orderly (FIFO) group gets each readable
    queue, so its client keeps one receive loop per queue; any other group one assignment of
    queue -1, meaning all queues of this broker."""
    name = resources.topic(request.topic)
    group = resources.group(request.group)
    endpoints = resources.endpoints(request.endpoints)
    topic = find_topic(svc, name)
    reads = topic.readQueueNums if effective_perm(svc, topic) & PERM_READ else 0
    if reads == 0:
        raise GrpcError(Code.FORBIDDEN, "no readable queue")
    config = svc.broker.groups.table.get(group)  # a lookup: assignments create no group
    orderly = bool(config and config.get("consumeMessageOrderly"))
    broker = broker_of(svc, endpoints)
    permission = _permission(True, bool(effective_perm(svc, topic) & PERM_WRITE))
    queue_ids = range(reads) if orderly else (-1,)
    assignments = [pb.Assignment(message_queue=pb.MessageQueue(
        topic=request.topic, id=queue_id, permission=permission, broker=broker))
        for queue_id in queue_ids]
    return service_pb2.QueryAssignmentResponse(status=OK, assignments=assignments)

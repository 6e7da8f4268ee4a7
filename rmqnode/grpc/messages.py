"""Stored messages as the RocketMQ 5.x gRPC protocol shows them (spec grpc-proxy.md §5.3).

A gRPC client never sees a remoting message: everything it reads (a received message, the
half message of a RecoverOrphanedTransactionCommand) is a `definition_pb2.Message` built
here, so that receive and transaction recovery agree on every field. The property keys that
are the broker's own (Java's MessageConst) stay out of `user_properties` and are also what a
gRPC producer may not set itself.
"""

from __future__ import annotations

import hashlib
import time

from google.protobuf.timestamp_pb2 import Timestamp

from rmqnode import log
from rmqnode.grpc.v2 import definition_pb2 as pb
from rmqnode.message import (DELAY, DLQ_ORIGIN_MESSAGE_ID, DLQ_ORIGIN_TOPIC, DLQ_PREFIX,
                             RETRY_PREFIX, TRAN_MSG, CompressionError, MessageExt)

_log = log.get("rmqnode.grpc")

SHARDING_KEY = "__SHARDINGKEY"
TRACE_CONTEXT = "TRACE_CONTEXT"
BORN_HOST = "__BORNHOST"
TIMER_DELIVER_MS = "TIMER_DELIVER_MS"
TIMER_DELAY_SEC = "TIMER_DELAY_SEC"

# MessageConst's reserved keys (spec codes.md, "Message property keys"): the broker's, never
# a user's. PROPERTY_TRANSIENT_PREFIX is a prefix, not a key, and is not in Java's set either.
SYSTEM_PROPERTY_KEYS = frozenset({
    "KEYS", "TAGS", "WAIT", "DELAY", "RETRY_TOPIC", "REAL_TOPIC", "REAL_QID", "TRAN_MSG",
    "PGROUP", "MIN_OFFSET", "MAX_OFFSET", "BUYER_ID", "ORIGIN_MESSAGE_ID", "TRANSFER_FLAG",
    "CORRECTION_FLAG", "MQ2_FLAG", "RECONSUME_TIME", "MSG_REGION", "TRACE_ON", "UNIQ_KEY",
    "EXTEND_UNIQ_INFO", "MAX_RECONSUME_TIMES", "CONSUME_START_TIME", "INNER_NUM", "INNER_BASE",
    "CHECK_IMMUNITY_TIME_IN_SECONDS", "TRAN_PREPARED_QUEUE_OFFSET", "__transactionId__",
    "TRANSACTION_CHECK_TIMES", "INSTANCE_ID", "CORRELATION_ID", "REPLY_TO_CLIENT", "TTL",
    "ARRIVE_TIME", "PUSH_REPLY_TIME", "CLUSTER", "MSG_TYPE", "POP_CK", "POP_CK_OFFSET",
    "1ST_POP_TIME", SHARDING_KEY, "PROPERTY_FORWARD_QUEUE_ID", "REDIRECT",
    "INNER_MULTI_DISPATCH", "INNER_MULTI_QUEUE_OFFSET", TRACE_CONTEXT, TIMER_DELAY_SEC,
    TIMER_DELIVER_MS, BORN_HOST, "BORN_TIMESTAMP", "TIMER_ENQUEUE_MS", "TIMER_DEQUEUE_MS",
    "TIMER_ROLL_TIMES", "TIMER_OUT_MS", "TIMER_DEL_UNIQKEY", "TIMER_DELAY_LEVEL",
    "TIMER_DELAY_MS", "__CRC32#", DLQ_ORIGIN_TOPIC, DLQ_ORIGIN_MESSAGE_ID,
})


def timestamp(ms: int) -> Timestamp:
    """A protobuf Timestamp from RocketMQ's epoch milliseconds (clients read it back as ms)."""
    stamp = Timestamp()
    stamp.FromMilliseconds(ms)
    return stamp


def resource(topic: str) -> pb.Resource:
    """A stored topic as a Resource, split as Java's NamespaceUtil splits `ns%name`: the
    %RETRY%/%DLQ% prefix stays on the name, the namespace goes into its own field."""
    prefix = next((p for p in (RETRY_PREFIX, DLQ_PREFIX) if topic.startswith(p)), "")
    namespace, sep, name = topic[len(prefix):].partition("%")
    if not sep:
        return pb.Resource(name=topic)
    return pb.Resource(resource_namespace=namespace, name=prefix + name)


def message_type(props: dict[str, str]) -> pb.MessageType.ValueType:
    """The type a stored message has for a 5.x client (GrpcConverter.buildMessageType): from
    its properties, whatever the producer said."""
    if props.get(TRAN_MSG) == "true":
        return pb.TRANSACTION
    if DELAY in props or TIMER_DELIVER_MS in props or TIMER_DELAY_SEC in props:
        return pb.DELAY
    if SHARDING_KEY in props:
        return pb.FIFO
    return pb.NORMAL


def _delivery_ms(props: dict[str, str]) -> int | None:
    """When a delayed message is (or was) due: TIMER_DELAY_SEC counts from now, as Java's
    converter reads it; a property that is not a number (any remoting producer may set one)
    leaves the field unset rather than failing the whole receive."""
    try:
        if TIMER_DELAY_SEC in props:
            return int(time.time() * 1000) + int(props[TIMER_DELAY_SEC]) * 1000
        if TIMER_DELIVER_MS in props:
            return int(props[TIMER_DELIVER_MS])
    except ValueError:
        pass
    return None


def _body(msg: MessageExt) -> bytes:
    """The body as the producer wrote it: 5.x clients only gunzip (and Node only that), while
    remoting producers compress with zlib, zstd or lz4, so the server inflates. A body that
    does not inflate goes out as stored; its digest still matches what is sent."""
    try:
        return msg.body_inflated()
    except CompressionError as exc:
        _log.warning("grpc.body_not_inflated", topic=msg.topic, offset=msg.commit_log_offset,
                     error=str(exc))
        return msg.body


def to_proto(msg: MessageExt, receipt_handle: str | None = None, *,
             topic: str | None = None) -> pb.Message:
    """`msg` as a gRPC Message (spec §5.3).

    receipt_handle: set on received messages (§5.4); left unset for a transaction recovery
    command. topic: the topic the client knows the message by, when it is not the stored one
    (a half message stored under the transaction half topic names its REAL_TOPIC); POP
    already returns revived messages under their original topic.
    """
    props = msg.properties
    body = _body(msg)
    sp = pb.SystemProperties(
        keys=msg.keys, message_id=msg.msg_id,
        body_digest=pb.Digest(type=pb.MD5, checksum=hashlib.md5(body).hexdigest().upper()),
        body_encoding=pb.IDENTITY, message_type=message_type(props),
        born_timestamp=timestamp(msg.born_timestamp),
        born_host=props.get(BORN_HOST) or msg.born_host_text,
        store_timestamp=timestamp(msg.store_timestamp), store_host=msg.store_host_text,
        queue_id=msg.queue_id, queue_offset=msg.queue_offset,
        delivery_attempt=msg.reconsume_times + 1)
    if msg.tags is not None:
        sp.tag = msg.tags
    delivery = _delivery_ms(props)
    if delivery is not None:
        sp.delivery_timestamp.CopyFrom(timestamp(delivery))
    if receipt_handle is not None:
        sp.receipt_handle = receipt_handle
    if SHARDING_KEY in props:
        sp.message_group = props[SHARDING_KEY]
    if TRACE_CONTEXT in props:
        sp.trace_context = props[TRACE_CONTEXT]
    if DLQ_ORIGIN_TOPIC in props and DLQ_ORIGIN_MESSAGE_ID in props:
        sp.dead_letter_queue.CopyFrom(pb.DeadLetterQueue(
            topic=props[DLQ_ORIGIN_TOPIC], message_id=props[DLQ_ORIGIN_MESSAGE_ID]))
    user = {k: v for k, v in props.items() if k not in SYSTEM_PROPERTY_KEYS}
    return pb.Message(topic=resource(topic or msg.topic), user_properties=user,
                      system_properties=sp, body=body)

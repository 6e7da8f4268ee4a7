"""SendMessage and EndTransaction (spec grpc-proxy.md §4.4, §4.9), and the transaction
checker's questions to gRPC producers (§4.2).

Local mode, as the Java proxy's: a gRPC send is checked the way the proxy checks it (§2.2,
§5.6), turned into the remoting message the proxy would build (§5.2), and stored through the
broker's own send path (SendProcessor: msgCheck, properties, half messages, put, stats,
flush). EndTransaction ends the half message through EndTransactionProcessor. Nothing here
writes the store by itself, so remoting and gRPC producers cannot drift apart.
"""

from __future__ import annotations

import asyncio
import functools
import time
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from rmqnode.broker.send import STORED_CODES, SendProcessor
from rmqnode.broker.topics import PERM_WRITE, TopicConfig
from rmqnode.broker.transaction import COMMIT, ROLLBACK, EndTransactionProcessor, park_half
from rmqnode.errors import RemotingError
from rmqnode.grpc import headers, resources
from rmqnode.grpc.messages import (BORN_HOST, SHARDING_KEY, SYSTEM_PROPERTY_KEYS,
                                   TIMER_DELIVER_MS, TRACE_CONTEXT, message_type, to_proto)
from rmqnode.grpc.status import OK, Code, GrpcError, from_remoting, from_remoting_error, status
from rmqnode.grpc.v2 import definition_pb2 as pb
from rmqnode.grpc.v2 import service_pb2 as spb
from rmqnode.message import (CHECK_IMMUNITY_TIME_IN_SECONDS, DELAY, DLQ_PREFIX, KEYS, PGROUP,
                             RECONSUME_TIME, RETRY_PREFIX, TAGS, TRAN_MSG,
                             TRANSACTION_PREPARED_TYPE, UNIQ_KEY, WAIT, MessageExt, host_bytes,
                             java_hash, wait_store_ok)
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode
from rmqnode.storage import store as st
from rmqnode.storage.records import decode_record
from rmqnode.storage.store import Message
from rmqnode.validation import quote

if TYPE_CHECKING:
    from rmqnode.grpc.service import MessagingService
    from rmqnode.grpc.telemetry import GrpcClient

BORN_TIMESTAMP = "BORN_TIMESTAMP"
# The Java proxy's limits (ProxyConfig): how far ahead a delivery may be, how long a producer
# may ask the checker to wait, user properties per message and their size with tag and keys,
# and the message group's UTF-8 length (maxMessageGroupSize: the group must stay below it).
MAX_DELAY_MS = 24 * 3600 * 1000
MAX_RECOVERY_SECONDS = 3600
MAX_USER_PROPERTIES = 128
MAX_PROPERTIES_SIZE = 16 * 1024
MAX_MESSAGE_GROUP_BYTES = 64
_TRANSACTION_RESOLUTIONS = {pb.COMMIT: COMMIT, pb.ROLLBACK: ROLLBACK}


@dataclass
class _Outgoing:
    """One checked message of a request: its remoting properties and body, ready to store."""
    message_id: str
    props: dict[str, str]
    body: bytes
    born_timestamp: int
    transactional: bool


# -- SendMessage ----------------------------------------------------------------------------

async def send_message(svc: MessagingService, request: spb.SendMessageRequest,
                       context: grpc.aio.ServicerContext) -> spb.SendMessageResponse:
    """Every message is checked before any is stored (a refusal refuses the request, as the
    proxy's does); then they go in request order to one queue, each with its own entry."""
    broker = svc.broker
    if not request.messages:
        raise GrpcError(Code.MESSAGE_CORRUPTED, "no message to send")
    topic = resources.topic(request.messages[0].topic)
    if any(m.topic.name != topic for m in request.messages):
        raise GrpcError(Code.MESSAGE_CORRUPTED, "the messages of one request must share a topic")
    config = broker.topics.table.get(topic)
    if config is None:
        raise GrpcError(Code.TOPIC_NOT_FOUND, f"topic {topic} not found")
    peer = headers.current().peer_address
    now = int(time.time() * 1000)
    outgoing = [_checked(m, topic, peer, now, broker.config.maxMessageSize,
                         broker.store.delay_levels) for m in request.messages]
    for message in outgoing:
        _check_type(config, message.props)
    if not config.perm & PERM_WRITE or config.writeQueueNums <= 0:
        raise GrpcError(Code.FORBIDDEN, f"no writable queue in topic {topic}")
    sender = SendProcessor(broker)
    groups = {m.props.get(SHARDING_KEY) for m in outgoing}
    group = groups.pop() if len(groups) == 1 else None
    queue_id = consistent_hash(java_hash(group), config.writeQueueNums) if group else -1
    try:
        _, _, queue_id = sender.checked_topic({"topic": topic, "queueId": str(queue_id)}, peer)
    except RemotingError as exc:
        raise from_remoting_error(exc) from None
    born_host = _host(peer)
    entries = [await _store(sender, topic, queue_id, born_host, m) for m in outgoing]
    codes = {e.status.code for e in entries}
    top = entries[0].status if len(codes) == 1 else status(Code.MULTIPLE_RESULTS)
    return spb.SendMessageResponse(status=top, entries=entries)


def _checked(msg: pb.Message, topic: str, peer: str, now: int, max_body: int,
             delay_levels: list[int]) -> _Outgoing:
    """The proxy's checks of one message (§2.2, §4.4), in its order, and the remoting
    properties it becomes (§5.2)."""
    sp = msg.system_properties
    body = _body(msg.body, sp.body_encoding, max_body)
    props = _user_properties(msg.user_properties, sp)
    if sp.HasField("tag"):
        _check_text(sp.tag, Code.ILLEGAL_MESSAGE_TAG, "tag", forbidden="|")
        if sp.tag:
            props[TAGS] = sp.tag
    for key in sp.keys:
        _check_text(key, Code.ILLEGAL_MESSAGE_KEY, "key")
    if sp.keys:
        props[KEYS] = " ".join(sp.keys)
    if sp.HasField("message_group"):
        _check_text(sp.message_group, Code.ILLEGAL_MESSAGE_GROUP, "message group")
        if len(sp.message_group.encode()) >= MAX_MESSAGE_GROUP_BYTES:
            raise GrpcError(Code.ILLEGAL_MESSAGE_GROUP, "message group exceeds "
                            f"{MAX_MESSAGE_GROUP_BYTES - 1} UTF-8 bytes")
        if sp.message_group:
            props[SHARDING_KEY] = sp.message_group
    if not sp.message_id.strip():
        raise GrpcError(Code.ILLEGAL_MESSAGE_ID, "message id is blank")
    _check_text(sp.message_id, Code.ILLEGAL_MESSAGE_ID, "message id")
    props[UNIQ_KEY] = sp.message_id
    transactional = sp.message_type == pb.TRANSACTION
    if transactional:
        props[TRAN_MSG] = "true"
        if sp.HasField("orphaned_transaction_recovery_duration"):
            seconds = sp.orphaned_transaction_recovery_duration.seconds
            if not 0 <= seconds <= MAX_RECOVERY_SECONDS:
                raise GrpcError(Code.BAD_REQUEST, "orphaned transaction recovery duration must "
                                f"be 0 to {MAX_RECOVERY_SECONDS} s, not {seconds} s")
            props[CHECK_IMMUNITY_TIME_IN_SECONDS] = str(seconds)
    if sp.HasField("delivery_timestamp"):
        props.update(_delay(sp.delivery_timestamp.ToMilliseconds(), now, delay_levels))
    if sp.HasField("delivery_attempt") and sp.delivery_attempt > 0:
        props[RECONSUME_TIME] = str(sp.delivery_attempt)
    if sp.HasField("trace_context") and sp.trace_context:
        _check_text(sp.trace_context, Code.BAD_REQUEST, "trace context")
        props[TRACE_CONTEXT] = sp.trace_context
    _check_text(sp.born_host, Code.BAD_REQUEST, "born host")
    props[BORN_HOST] = sp.born_host.strip() or peer.rpartition(":")[0].strip("[]")
    born = sp.born_timestamp.ToMilliseconds() if sp.HasField("born_timestamp") else now
    props[BORN_TIMESTAMP] = str(born)
    props[PGROUP] = topic  # a gRPC producer's group is its topic (transaction checks ask it)
    props[WAIT] = "true"  # the proxy builds a client Message, which waits for the store
    return _Outgoing(sp.message_id, props, body, born, transactional)


def _body(body: bytes, encoding: int, max_body: int) -> bytes:
    """The body to store: a gzipped one inflated (remoting consumers inflate zlib, never
    gzip, and gRPC receivers get IDENTITY), at most `max_body` bytes either way."""
    if not body:
        raise GrpcError(Code.MESSAGE_BODY_EMPTY, "message body is empty")
    too_large = GrpcError(Code.MESSAGE_BODY_TOO_LARGE,
                          f"message body exceeds the max size {max_body} bytes")
    if len(body) > max_body:
        raise too_large
    if encoding != pb.GZIP:
        return body
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        plain = inflater.decompress(body, max_body + 1)
    except zlib.error as exc:
        raise GrpcError(Code.MESSAGE_CORRUPTED, f"the GZIP body does not inflate: {exc}") from None
    if len(plain) > max_body:
        raise too_large
    if not inflater.eof:
        raise GrpcError(Code.MESSAGE_CORRUPTED, "the GZIP body is truncated")
    return plain


def _user_properties(user: dict[str, str], sp: pb.SystemProperties) -> dict[str, str]:
    """The producer's own properties: not a broker key, no control characters, at most 128,
    and with tag and keys at most 16 KiB. An empty name or value is refused too: the stored
    properties string could not hold it (Java's string2messageProperties drops it)."""
    if len(user) > MAX_USER_PROPERTIES:
        raise GrpcError(Code.MESSAGE_PROPERTIES_TOO_LARGE,
                        f"more than {MAX_USER_PROPERTIES} user properties")
    size = len(sp.tag.encode()) + sum(len(k.encode()) for k in sp.keys)
    for key, value in user.items():
        if key in SYSTEM_PROPERTY_KEYS:
            raise GrpcError(Code.ILLEGAL_MESSAGE_PROPERTY_KEY,
                            f"property key {quote(key)} is reserved")
        _check_text(key, Code.ILLEGAL_MESSAGE_PROPERTY_KEY, "property key")
        _check_text(value, Code.ILLEGAL_MESSAGE_PROPERTY_KEY, "property value")
        if not key or not value:
            raise GrpcError(Code.ILLEGAL_MESSAGE_PROPERTY_KEY,
                            f"property {quote(key)} has an empty name or value")
        size += len(key.encode()) + len(value.encode())
    if size > MAX_PROPERTIES_SIZE:
        raise GrpcError(Code.MESSAGE_PROPERTIES_TOO_LARGE, "user properties, tag and keys "
                        f"exceed {MAX_PROPERTIES_SIZE} bytes")
    return dict(user)


def _check_text(value: str, code: Code, what: str, forbidden: str = "") -> None:
    """Java's checks of a tag, key, group or property: not whitespace only when given, no
    ISO control character (they would also break the stored properties string, whose
    separators are \\x01 and \\x02), none of `forbidden`."""
    if value and value.isspace():
        raise GrpcError(code, f"{what} cannot be whitespace only")
    if any(c in forbidden or ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value):
        raise GrpcError(code, f"{what} {quote(value)} holds a control or reserved character")


def _delay(deliver_ms: int, now: int, delay_levels: list[int]) -> dict[str, str]:
    """TIMER_DELIVER_MS, and the delay level the store can honour it with: the shortest level
    at least as long as the wait, so a message may come late (up to the gap to the next level)
    but never early. The store has levels, not Java 5's timer wheel; a wait past the longest
    level is refused rather than delivered early. A time passed already delivers at once."""
    wait = deliver_ms - now
    if wait > MAX_DELAY_MS:
        raise GrpcError(Code.ILLEGAL_DELIVERY_TIME,
                        f"delivery time is more than {MAX_DELAY_MS // 1000} s ahead")
    props = {TIMER_DELIVER_MS: str(deliver_ms)}
    if wait > 0:
        level = next((i + 1 for i, ms in enumerate(delay_levels) if ms >= wait), None)
        if level is None:
            raise GrpcError(Code.ILLEGAL_DELIVERY_TIME, f"delivery time is {wait} ms ahead; "
                            f"this broker delays by at most {max(delay_levels, default=0)} ms "
                            "(its longest messageDelayLevel)")
        props[DELAY] = str(level)
    return props


def _check_type(config: TopicConfig, props: dict[str, str]) -> None:
    """§5.6: the type the properties make must be the topic's `message.type` (any for
    MIXED); retry and dead-letter topics take anything."""
    topic = config.topicName
    if topic.startswith((RETRY_PREFIX, DLQ_PREFIX)) or config.message_type == "MIXED":
        return
    actual = pb.MessageType.Name(message_type(props))
    if actual != config.message_type:
        raise GrpcError(Code.MESSAGE_PROPERTY_CONFLICT_WITH_TYPE, "TopicMessageType validate "
                        f"failed, the expected type is {config.message_type}, but actual type "
                        f"is {actual}")


def consistent_hash(key: int, buckets: int) -> int:
    """Guava's Hashing.consistentHash, which the Java proxy picks a FIFO message's queue with
    (from the message group's String.hashCode): the same group lands on the same queue as
    long as the count stays, and on the queue the Java proxy would choose."""
    state = key & 0xFFFFFFFFFFFFFFFF
    candidate = 0
    while True:
        state = (2862933555777941757 * state + 1) & 0xFFFFFFFFFFFFFFFF
        following = int((candidate + 1) / (((state >> 33) + 1) / 2.0 ** 31))
        if not 0 <= following < buckets:
            return candidate
        candidate = following


def _host(peer: str) -> bytes:
    """The record's born host: the client's address as the connection shows it."""
    try:
        return host_bytes(peer)
    except (OSError, ValueError):
        return host_bytes("0.0.0.0:0")


async def _store(sender: SendProcessor, topic: str, queue_id: int, born_host: bytes,
                 out: _Outgoing) -> spb.SendResultEntry:
    """Store one message through the broker's send path; its entry in the response."""
    common = Message(topic, queue_id, b"", born_timestamp=out.born_timestamp,
                     born_host=born_host,
                     sys_flag=TRANSACTION_PREPARED_TYPE if out.transactional else 0)
    message = sender.message(common, out.body, out.props, 0)
    if out.transactional:
        park_half(message)
    result = sender.put_nowait(topic, [message])
    result = await sender.broker.ha.wait_stored(result, wait_store_ok(message.properties))
    if not result.ok:
        code, remark = sender.refusal(result)
        return spb.SendResultEntry(status=status(from_remoting(code), remark),
                                   message_id=out.message_id)
    assert result.appended is not None
    return spb.SendResultEntry(
        status=OK if result.status == st.PUT_OK
        else status(from_remoting(STORED_CODES[result.status])),
        message_id=out.message_id, transaction_id=out.message_id if out.transactional else "",
        offset=result.appended.queue_offset)


# -- EndTransaction -------------------------------------------------------------------------

async def end_transaction(svc: MessagingService, request: spb.EndTransactionRequest,
                          context: grpc.aio.ServicerContext) -> spb.EndTransactionResponse:
    """Commit or roll back the half message the transaction id names (its UNIQ_KEY), found
    by id rather than by offsets kept 30 s as the Java proxy keeps them: a late answer, or
    one to a check, still ends it until the checker gives up on it."""
    topic = resources.topic(request.topic)
    transaction_id = request.transaction_id
    if not transaction_id.strip():
        raise GrpcError(Code.INVALID_TRANSACTION_ID, "transaction id is blank")
    kind = _TRANSACTION_RESOLUTIONS.get(request.resolution)
    if kind is None:
        return spb.EndTransactionResponse(status=OK)  # UNSPECIFIED: wait for a check
    half = svc.broker.transactions.latest_half(transaction_id)
    if half is None:
        raise GrpcError(Code.INTERNAL_SERVER_ERROR, "cannot found transaction data: "
                        f"{quote(transaction_id)} names no open half message")
    processor = EndTransactionProcessor(svc.broker)
    failure = processor.refusal(half, topic) or await processor.end(half, kind)
    if failure is not None:
        raise GrpcError(Code.INTERNAL_SERVER_ERROR, failure)
    return spb.EndTransactionResponse(status=OK)


# -- transaction checks ---------------------------------------------------------------------

def attach(svc: MessagingService) -> None:
    """Let the broker's transaction checker reach this endpoint's producers: its oneway
    CHECK_TRANSACTION_STATE to a gRPC producer's pseudo-connection (found, as a remoting
    producer is, in producer group = topic) becomes a Telemetry command. Called once, when
    the service is made."""
    svc.clients.on_broker_request(RequestCode.CHECK_TRANSACTION_STATE,
                                  functools.partial(_recover_orphan, svc))


def _recover_orphan(svc: MessagingService, client: GrpcClient, cmd: RemotingCommand) -> None:
    """RecoverOrphanedTransactionCommand{the half message as its producer sent it (the
    check's record, real topic), the transaction id} on the client's Telemetry stream; the
    client answers with EndTransaction(source=SERVER_CHECK). A oneway like the remoting
    check: a client gone meanwhile is asked again at the next check."""
    half = decode_record(cmd.body, 0)
    if not isinstance(half, MessageExt):  # the checker's own record: never, but typed so
        return
    command = spb.TelemetryCommand(
        recover_orphaned_transaction_command=spb.RecoverOrphanedTransactionCommand(
            message=to_proto(half), transaction_id=cmd.field("transactionId") or half.msg_id))
    task = asyncio.get_running_loop().create_task(
        svc.clients.send_command(client.client_id, command))
    _queuing.add(task)
    task.add_done_callback(_queuing.discard)


_queuing: set[asyncio.Task] = set()  # commands on their way to a stream (tasks need a holder)

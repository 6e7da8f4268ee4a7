"""SEND_MESSAGE (10), SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320) (SendMessageProcessor).

The V2 header is the V1 header with one-letter names. Whether a request is a batch is read from
its `batch`/`m` field, not its code: the C++ 1.x client sends batches as code 310 or 10 with
`batch` set to "1", which Java's Boolean.parseBoolean reads as false; we treat "1" as true, since
that is what the client means.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, NamedTuple

from rmqnode.broker.clients import ClientChannel
from rmqnode.broker.topics import PERM_INHERIT, PERM_READ, PERM_WRITE, TopicConfig
from rmqnode.broker.transaction import park_half
from rmqnode.config import SLAVE
from rmqnode.errors import FAQ, RemotingError
from rmqnode import validation
from rmqnode.message import (CLUSTER, COMPRESSED_FLAG, COMPRESSION_MASK, DELAY, DLQ_PREFIX,
                             MULTI_TAGS_FLAG, NEED_UNWRAP_FLAG, ORIGIN_MESSAGE_ID, POP_CK,
                             RETRY_PREFIX, RETRY_TOPIC, TRAN_MSG, TRANSACTION_MASK, WAIT,
                             batch_messages, decode_properties, host_bytes, wait_store_ok)
from rmqnode.net.codec import FLAG_ONEWAY, FLAG_RESPONSE, OUR_VERSION, RemotingCommand, encode
from rmqnode.net.codes import ResponseCode
from rmqnode.net.connection import Connection
from rmqnode.speedups import accelerate
from rmqnode.storage import store as st
from rmqnode.storage.commitlog import Appended
from rmqnode.storage.dispatch import DispatchBatch
from rmqnode.storage.javamap import properties_string
from rmqnode.storage.records import END_FILE_MIN_BLANK_LENGTH
from rmqnode.storage.store import Message
from rmqnode.validation import INT32

if TYPE_CHECKING:
    from rmqnode.broker.controller import BrokerController


class Names(NamedTuple):
    """A send header's field names in one header version: a V2 request's fields are read
    under their own names, with no renamed copy of them per send."""

    producerGroup: str
    topic: str
    defaultTopic: str
    defaultTopicQueueNums: str
    queueId: str
    sysFlag: str
    bornTimestamp: str
    flag: str
    properties: str
    reconsumeTimes: str
    unitMode: str
    maxReconsumeTimes: str
    batch: str
    bname: str


V1 = Names(*Names._fields)
V2 = Names(*"abcdefghijklmn")
V2_NAMES = dict(zip(V2, V1))

NOT_SENDABLE = {"SCHEDULE_TOPIC_XXXX", "RMQ_SYS_TRANS_HALF_TOPIC", "RMQ_SYS_TRANS_OP_HALF_TOPIC",
                "TRANS_CHECK_MAX_TIME_TOPIC", "SELF_TEST_TOPIC", "OFFSET_MOVED_EVENT"}
# The sysFlag bits a producer decides: compression, tags, transaction type. The IPv6 host bits
# describe the record's layout and come from the real addresses, never from the request.
CLIENT_SYS_FLAGS = (COMPRESSED_FLAG | MULTI_TAGS_FLAG | TRANSACTION_MASK | NEED_UNWRAP_FLAG
                    | COMPRESSION_MASK)
V3_4_9 = 121  # from this client version on, the header's maxReconsumeTimes counts

STORED_CODES = {st.PUT_OK: ResponseCode.SUCCESS,
                 st.FLUSH_DISK_TIMEOUT: ResponseCode.FLUSH_DISK_TIMEOUT,
                 st.FLUSH_SLAVE_TIMEOUT: ResponseCode.FLUSH_SLAVE_TIMEOUT,
                 st.SLAVE_NOT_AVAILABLE: ResponseCode.SLAVE_NOT_AVAILABLE}

_ILLEGAL = ("the message is illegal, maybe msg body or properties length not matched. "
            "msg body length limit {}k, msg properties length limit 32k.")


def header_names(ext: dict[str, str]) -> Names:
    """The names `ext`, a send header's fields, goes by."""
    return V2 if "b" in ext and "topic" not in ext else V1


def send_header(cmd: RemotingCommand) -> dict[str, str]:
    """The request's fields under their V1 names, whichever header version it used (the
    request's own dict for V1: read, never changed)."""
    ext = cmd.ext_fields or {}
    if header_names(ext) is V2:
        return {V2_NAMES.get(k, k): v for k, v in ext.items()}
    return ext


def born_host(conn: Connection) -> bytes:
    """The sender's address as records keep it, worked out once per connection."""
    host = conn.attrs.get("born_host")
    if host is None:
        host = conn.attrs["born_host"] = host_bytes(
            conn.peer if conn.peer != "?" else "0.0.0.0:0")
    return host  # type: ignore[return-value]


def header_message(h: dict[str, str], conn: Connection, topic: str, queue_id: int,
                   n: Names = V1) -> Message:
    """What the header (its fields named by `n`) says of a sent (or replied) message,
    without its body, properties and flag: the sender's flags, birth and reconsume count,
    the host it came from."""
    return _header_fields(h, topic, queue_id, born_host(conn), n)


def _header_fields(h: dict[str, str], topic: str, queue_id: int, host: bytes,
                   n: Names) -> Message:
    sys_flag = validation.int32(h.get(n.sysFlag), "sysFlag", 0)
    born = h.get(n.bornTimestamp)
    return Message(topic, queue_id, b"", {}, 0, sys_flag & CLIENT_SYS_FLAGS,
                   validation.integer(born, "bornTimestamp") if born
                   else int(time.time() * 1000), host,
                   validation.int32(h.get(n.reconsumeTimes), "reconsumeTimes", 0))


def completed(msg: Message, body: bytes, props: dict[str, str], flag: int,
              cluster: str) -> Message:
    """`msg`, what a header says, completed in place with the body, flag and `props`, which
    become the message's own: CLUSTER set to the broker's cluster, POP_CK dropped (a re-sent
    popped message must not look revived), written as Java's HashMap holds them, WAIT left
    out. Remoting and gRPC sends share it."""
    props[CLUSTER] = cluster
    props.pop(POP_CK, None)
    msg.body, msg.properties, msg.flag = body, props, flag
    msg.properties_string = _without_wait(props)
    return msg


def sent_message(h: dict[str, str], n: Names, topic: str, queue_id: int, body: bytes,
                 host: bytes, cluster: str) -> Message:
    """The message of a send that is not a batch, all of it from the request (header fields
    named by `n`, `host` the sender's): header_message, then completed() with the header's
    properties and flag. Per send the Python calls cost more than the work: the accelerator
    (csrc/message.c) builds the whole message in one; this is its definition."""
    msg = _header_fields(h, topic, queue_id, host, n)
    props = decode_properties(h.get(n.properties) or "")
    return completed(msg, body, props, validation.int32(h.get(n.flag), "flag", 0), cluster)


sent_message = accelerate(sent_message, Message=Message, CLIENT_SYS_FLAGS=CLIENT_SYS_FLAGS)


def stored_answer(code: int, opaque: int, serialize_type: int, msg_id: str, queue_id: int,
                  queue_offset: int) -> bytes:
    """The whole frame that answers a stored send (`opaque` the request's): its code (SUCCESS,
    or a flush's or slave's timeout), the message id(s), queue and offset. Every send is
    answered with one: the accelerator (csrc/frames.c) writes it without the RemotingCommand
    and its dict of fields; this is its definition."""
    return encode(RemotingCommand(code, opaque, FLAG_RESPONSE, None, {
        "msgId": msg_id, "queueId": str(queue_id), "queueOffset": str(queue_offset),
        "MSG_REGION": "DefaultRegion", "TRACE_ON": "true"}), serialize_type)


stored_answer = accelerate(stored_answer, OUR_VERSION=OUR_VERSION)


def stored_at_once(send: SendProcessor, cmd: RemotingCommand, topic: str, queue_id: int,
                   messages: list[Message]) -> RemotingCommand | bytes | None:
    """A send that waits for nothing (no flush, no slave, no registration of its topic),
    stored and answered. Per send the Python between the store's steps cost more than the
    steps: the accelerator (csrc/put.c) does a plain put of one message or a batch into the
    CommitLog's last file, its counts and its answer in one call; this is its definition."""
    return send._respond(cmd, send.put_nowait(topic, messages), queue_id)


stored_at_once = accelerate(stored_at_once, DELAY=DELAY, SLAVE=SLAVE,
                            END_FILE_MIN_BLANK_LENGTH=END_FILE_MIN_BLANK_LENGTH,
                            DispatchBatch=DispatchBatch)


def _without_wait(props: dict[str, str]) -> str | None:
    """What a 4.9.8 broker stores of a sent message's properties: all but WAIT, which only
    says whether to wait for the disk (9 bytes a message saved). WAIT is put back last in
    `props`, as Java does, so a delayed message, written again from all of them, keeps it
    there. None when there is no WAIT to leave out."""
    wait = props.pop(WAIT, None)
    if wait is None:
        return None
    stored = properties_string(props, len(props) + 1)
    props[WAIT] = wait
    return stored


def _delayed(props: dict[str, str]) -> bool:
    """Whether a message's DELAY asks for a delay, as Java's getDelayTimeLevel() > 0 reads it
    (text that is not a number fails a Java send too)."""
    level = props.get(DELAY)
    if level is None:
        return False
    try:
        return int(level) > 0
    except ValueError:
        return True


def handle_send(send: SendProcessor, cmd: RemotingCommand,
                conn: Connection) -> RemotingCommand | Awaitable[RemotingCommand] | None:
    """SEND_MESSAGE (10), SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320) as the
    dispatcher calls them: SendProcessor.handle. The accelerator (csrc/put.c) does the common
    send in one call, from the header (V1 or V2) to the answer's frame: a single message, or
    a batch handle would store as it is, to a configured, writable queue of a topic that
    passed validation before, from a connection whose address is known; a put that waits
    (SYNC_FLUSH, SYNC_MASTER) has its answer given by SendProcessor.answered. Whatever
    checked_topic would refuse, or not decide alone, is this definition's."""
    return send.handle(cmd, conn)


handle_send = accelerate(handle_send, VALID_TOPICS=validation.VALID_TOPICS,
                         NOT_SENDABLE=NOT_SENDABLE, V1=V1, V2=V2, random=random.random,
                         PutResult=st.PutResult, Appended=Appended, PUT_OK=st.PUT_OK)


class SendProcessor:
    def __init__(self, broker: BrokerController) -> None:
        self.broker = broker

    def handle(self, cmd: RemotingCommand,
               conn: Connection) -> RemotingCommand | Awaitable[RemotingCommand] | None:
        """Answered at once, or (SYNC_FLUSH) through conn.reply once the flush is done: no
        task per send on the hot path."""
        h = cmd.ext_fields or {}
        n = header_names(h)
        topic_config, registering, queue_id = self.checked_topic(h, conn.peer, n)
        topic = topic_config.topicName
        batch = h.get(n.batch)
        if batch and batch.lower() in ("true", "1"):
            common = header_message(h, conn, topic, queue_id, n)
            shared = decode_properties(h.get(n.properties) or "")
            try:
                messages = self._batch(common, cmd.body, shared)
            except ValueError as exc:
                return cmd.response(ResponseCode.MESSAGE_ILLEGAL, f"bad batch body: {exc}")
            if not messages:
                return cmd.response(ResponseCode.MESSAGE_ILLEGAL, "empty batch")
            if topic.startswith(RETRY_PREFIX):
                return cmd.response(ResponseCode.MESSAGE_ILLEGAL,
                                    "batch request does not support retry group " + topic)
            if common.sys_flag & TRANSACTION_MASK or _delayed(shared):
                # CommitLog.asyncPutMessages: a batch is neither a transaction nor delayed
                return cmd.response(*self.refusal(st.PutResult(
                    st.MESSAGE_ILLEGAL, remark="a batch cannot be transactional or delayed")))
        else:
            messages = [sent_message(h, n, topic, queue_id, cmd.body, born_host(conn),
                                     self.broker.config.brokerClusterName)]
            tran = messages[0].properties.get(TRAN_MSG)
            if tran is not None and tran.lower() == "true":
                park_half(messages[0])
                # The connection a half message came on belongs to a live producer of its
                # group: the check-back can reach it before its first heartbeat (30 s).
                self.broker.clients.register_producer(
                    validation.group(h.get(n.producerGroup)), ClientChannel(
                        conn, str(conn.attrs.get("client_id", conn.peer)), cmd.language,
                        cmd.version))
        if registering is None and not self.broker.ha.may_wait():
            return stored_at_once(self, cmd, topic, queue_id, messages)
        result = self.put_nowait(topic, messages)
        if registering is not None:
            return self._respond_registered(registering, cmd, result, messages, queue_id)
        return self.answered(cmd, conn, result, wait_store_ok(messages[0].properties), queue_id,
                             self._respond(cmd, result, queue_id))

    def answered(self, cmd: RemotingCommand, conn: Connection, result: st.PutResult,
                 wait_store: bool, queue_id: int,
                 answer: RemotingCommand | bytes | None) -> RemotingCommand | bytes | None:
        """`answer`, the answer to a put (`result`), now; or, where the put waits
        (SYNC_FLUSH, SYNC_MASTER), None and `answer` through conn.reply once the flush round
        or the slave's ack that covers it is done: no task or future per send. The answer is
        made before the wait: after a lone sender's fdatasync the CPU comes back cold, and
        what runs then is in the send's latency; a round that ends in a timeout makes its
        own answer. A stored send's answer is its frame (None for a oneway send)."""
        ha = self.broker.ha
        waits = ha.waits(result, wait_store)
        if not waits:
            return answer
        ha.wait(result, waits, lambda done: conn.reply_frame(answer) if done.status == st.PUT_OK
                else conn.reply(cmd, self._respond(cmd, done, queue_id)))
        return None

    def put_nowait(self, topic: str, messages: list[Message]) -> st.PutResult:
        """Store a send's messages (one queue) and count them in `topic`'s put stats (the
        topic sent to, a half message's too); flushing is the caller's to wait for. Remoting
        and gRPC sends share it."""
        result = self.broker.store.put_nowait(messages)
        if result.ok:
            self.broker.stats.put(topic, len(messages),
                                  result.appended.wrote_bytes)  # type: ignore[union-attr]
        return result

    def msg_check(self, h: dict[str, str], conn: Connection
                  ) -> tuple[TopicConfig, asyncio.Task | None, int]:
        """AbstractSendMessageProcessor.msgCheck, which sends and replies share."""
        return self.checked_topic(h, conn.peer)

    def checked_topic(self, h: dict[str, str], producer: str, n: Names = V1
                      ) -> tuple[TopicConfig, asyncio.Task | None, int]:
        """msgCheck of a header (its fields named by `n`) for a producer at `producer` (its
        address, for remarks): the topic's config (created from its default topic if need
        be, with its name-server registration under way, else None) and the queue to write,
        a random one for -1. A refusal raises Java's code and remark. A slave refuses first,
        as its store would (Java checks the topic before, and may create on a slave a topic
        its next sync then drops)."""
        cfg = self.broker.config
        if cfg.brokerRole == SLAVE:
            raise RemotingError(*self.refusal(st.PutResult(st.SERVICE_NOT_AVAILABLE)))
        topic = h.get(n.topic) or ""
        if not cfg.brokerPermission & PERM_WRITE:
            raise RemotingError(ResponseCode.NO_PERMISSION, f"the broker[{cfg.brokerIP1}] "
                                "sending message is forbidden")
        validation.topic(topic)
        if topic in NOT_SENDABLE:
            raise RemotingError(ResponseCode.NO_PERMISSION,
                                f"Sending message to topic[{topic}] is forbidden.")
        topic_config = self.broker.topics.table.get(topic)
        registering = None
        if topic_config is None:
            topic_config, registering = self.create_for_send(topic, h, n)
        if not topic_config.perm & PERM_WRITE:
            raise RemotingError(ResponseCode.NO_PERMISSION,
                                f"the topic[{topic}] sending message is forbidden")
        queue_id = validation.int32(h.get(n.queueId), "queueId", -1)
        if queue_id >= topic_config.writeQueueNums and queue_id >= topic_config.readQueueNums:
            raise RemotingError(ResponseCode.SYSTEM_ERROR, f"request queueId[{queue_id}] is "
                                f"illegal, {topic_config} Producer: {producer}")
        if queue_id < 0:
            nums = topic_config.writeQueueNums
            if nums <= 0:  # Java divides by it, and answers the ArithmeticException
                raise RemotingError(ResponseCode.SYSTEM_ERROR,
                                    f"the topic[{topic}] has no queue to write")
            queue_id = int(random.random() * nums)  # randrange's checks cost a send 2%
        return topic_config, registering, queue_id

    async def _respond_registered(self, registering: asyncio.Task, cmd: RemotingCommand,
                                  result: st.PutResult, messages: list[Message],
                                  queue_id: int) -> RemotingCommand:
        """A send that created its topic is answered once the name servers know the topic,
        as in Java: the producer may hand the topic to a consumer the moment it is acked."""
        await self.broker.registered(registering)
        result = await self.broker.ha.wait_stored(result, wait_store_ok(messages[0].properties))
        return self._respond(cmd, result, queue_id)

    async def send_back(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        """CONSUMER_SEND_MSG_BACK: a consumer failed a message; it comes back through
        %RETRY%<group> after the next delay level, or goes to %DLQ%<group> for good."""
        broker = self.broker
        group = validation.group(cmd.field("group"))
        config = broker.groups.find(group)
        if config is None:
            return cmd.response(ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST,
                                f"subscription group not exist, {group} {FAQ.strip()}")
        cfg = broker.config
        if not cfg.brokerPermission & PERM_WRITE:
            return cmd.response(ResponseCode.NO_PERMISSION, f"the broker[{cfg.brokerIP1}] "
                                "sending message is forbidden")
        retry_nums = int(config.get("retryQueueNums", 1))
        if retry_nums <= 0:  # the group wants no retries: Java answers success, storing nothing
            return cmd.response()
        # The retry topic exists once a group sent a message back, even one that goes to the
        # DLQ (createTopicInSendMessageBackMethod comes first in Java too).
        retry = broker.ensure_topic(RETRY_PREFIX + group, retry_nums, PERM_READ | PERM_WRITE)
        if not retry.perm & PERM_WRITE:
            return cmd.response(ResponseCode.NO_PERMISSION,
                                f"the topic[{retry.topicName}] sending message is forbidden")
        offset = cmd.int_field("offset")
        original = broker.store.message_at(offset)
        if original is None:
            return cmd.response(ResponseCode.SYSTEM_ERROR,
                                f"look message by offset failed, {offset}")
        max_times = cmd.int_field("maxReconsumeTimes", int(config.get("retryMaxTimes", 16))) \
            if cmd.version >= V3_4_9 else int(config.get("retryMaxTimes", 16))
        delay = cmd.int_field("delayLevel", 0)
        # The stored properties changed in asyncConsumerSendMsgBack's order, which is the
        # order the record keeps them in: a present key keeps its place.
        props = dict(original.properties)
        props.setdefault(RETRY_TOPIC, original.topic)
        props[WAIT] = "false"
        if original.reconsume_times >= max_times or delay < 0:
            # 4.9.8 makes the DLQ readable: a consumer may subscribe to it.
            dlq = broker.ensure_topic(DLQ_PREFIX + group, 1, PERM_READ | PERM_WRITE)
            if not dlq.perm & PERM_WRITE:
                return cmd.response(ResponseCode.NO_PERMISSION,
                                    f"the topic[{dlq.topicName}] sending message is forbidden")
            topic, queue_id = dlq.topicName, 0
            props[DELAY] = "0"  # setDelayTimeLevel(0): kept in the record, delays nothing
        else:
            # Java picks among the group's retryQueueNums, whatever the topic has since become.
            topic, queue_id = retry.topicName, random.randrange(retry_nums)
            props[DELAY] = str(delay or 3 + original.reconsume_times)
        # Java's getMsgId() of a message read by offset is its offset id, never the UNIQ_KEY;
        # the header's originMsgId is not used.
        props[ORIGIN_MESSAGE_ID] = props.get(ORIGIN_MESSAGE_ID) or original.offset_msg_id
        message = Message.copy_of(original, topic, queue_id, props,
                                  reconsume_times=min(original.reconsume_times + 1, INT32[1]),
                                  prepared_transaction_offset=0)
        result = await broker.store.put_message(message)
        if not result.ok:
            return cmd.response(ResponseCode.SYSTEM_ERROR, result.status)
        broker.stats.sent_back(props[RETRY_TOPIC], group)
        return cmd.response()

    def message(self, common: Message, body: bytes, props: dict[str, str],
                flag: int) -> Message:
        """completed() with this broker's cluster (a gRPC send's one message)."""
        return completed(common, body, props, flag, self.broker.config.brokerClusterName)

    def _batch(self, common: Message, body: bytes, shared: dict[str, str]) -> list[Message]:
        """The messages of a batch body as MessageExtBatchEncoder writes them, copies of
        `common`: each entry's properties as the producer wrote them, then the header's
        (`shared`) with CLUSTER, in Java's HashMap order and WAIT kept. A consumer reads both,
        the header's winning where a key repeats."""
        shared[CLUSTER] = self.broker.config.brokerClusterName
        return batch_messages(body, common, shared, properties_string(shared))

    def create_for_send(self, topic: str, h: dict[str, str], n: Names = V1
                        ) -> tuple[TopicConfig, asyncio.Task]:
        """A topic a producer sends to first: created from its default topic (TBW102) when
        that allows it; returns the config and the name-server registration under way."""
        topics = self.broker.topics
        default = topics.table.get(h.get(n.defaultTopic) or "")
        if default is not None and default.perm & PERM_INHERIT:
            nums = min(validation.integer(h.get(n.defaultTopicQueueNums),
                                          "defaultTopicQueueNums", 1, INT32[1], default=4),
                       default.writeQueueNums)
            created = TopicConfig(topic, nums, nums, default.perm & ~PERM_INHERIT)
        elif topic.startswith(RETRY_PREFIX):
            created = TopicConfig(topic, 1, 1, PERM_READ | PERM_WRITE)
        else:
            raise RemotingError(ResponseCode.TOPIC_NOT_EXIST,
                                f"topic[{topic}] not exist, apply first please!{FAQ}")
        return created, self.broker.create_topic(created)

    def _respond(self, cmd: RemotingCommand, result: st.PutResult,
                 queue_id: int) -> RemotingCommand | bytes | None:
        """The answer to a send: a stored one's whole frame (none for a oneway send), or a
        refusal with Java's code and remark."""
        code = STORED_CODES.get(result.status)
        if code is None:
            return cmd.response(*self.refusal(result))
        if cmd.flag & FLAG_ONEWAY:
            return None
        # stored: a timeout's code, but the send's fields all the same
        assert result.appended is not None
        return stored_answer(code, cmd.opaque, cmd.serialize_type, ",".join(result.msg_ids),
                             queue_id, result.appended.queue_offset)

    def refusal(self, result: st.PutResult) -> tuple[int, str]:
        """The response code and remark Java gives a send the store did not take; the gRPC
        endpoint words its failures with the same remarks."""
        status = result.status
        if status in (st.MESSAGE_ILLEGAL, st.PROPERTIES_SIZE_EXCEEDED):
            limit = self.broker.config.maxMessageSize // 1024
            return ResponseCode.MESSAGE_ILLEGAL, _ILLEGAL.format(limit) + (
                f" ({result.remark})" if result.remark else "")
        if status == st.CREATE_MAPEDFILE_FAILED:
            return (ResponseCode.SYSTEM_ERROR,
                    "create mapped file failed, server is busy or broken.")
        return (ResponseCode.SERVICE_NOT_AVAILABLE,
                "service not available now. It may be caused by one of the following "
                "reasons: the broker's disk is full, messages are put to the slave, "
                "message store has been shut down, etc.")

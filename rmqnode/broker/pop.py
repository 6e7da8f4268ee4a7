"""POP consumption (RocketMQ 5.x): POP_MESSAGE, ACK_MESSAGE, CHANGE_MESSAGE_INVISIBLETIME.

Unlike pull, a POP consumer does not own queues: the broker hands out messages from any
queue, commits the group's offset at once, and keeps a checkpoint; what is not acked within
the invisible time comes back through the group's POP retry topic (see revive.py). These
codes do not fit the binary header's short code, so POP always travels as JSON.

With `order=true` (FIFO groups) the broker works as Java's does: no checkpoint, no retry
topic, and a queue whose popped batch is still in flight hands out nothing more. The queue's
order info (order_info.py) records the batch; acks move the offset along it, and what was not
acked is popped again from the same offsets once invisible, with its reconsume times raised.
Such pops carry revive queue id 999 (ORDER_REVIVE_QID) in their extra info.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from typing import TYPE_CHECKING

from rmqnode import validation
from rmqnode.broker.clients import Subscription, check_filter
from rmqnode.broker.order_info import NOT_IN_BATCH
from rmqnode.broker.pull import get_messages
from rmqnode.broker.revive import CheckPoint
from rmqnode.broker.topics import PERM_READ
from rmqnode.errors import RemotingError
from rmqnode.message import POP_CK, RETRY_PREFIX, MessageExt, encode_properties
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode, ResponseCode
from rmqnode.net.connection import Connection
from rmqnode.net.popinfo import (ORDER_REVIVE_QID, ExtraInfo, offset_info_item,
                                 order_count_items, pop_retry_topic, retry_flag)
from rmqnode.storage import store as st
from rmqnode.storage.records import decode_record, reencode

if TYPE_CHECKING:
    from rmqnode.broker.controller import BrokerController
    from rmqnode.broker.topics import TopicConfig

MAX_POP_NUMS = 32
INIT_MODE_MIN = 0
_QUEUE_OFFSET = struct.Struct(">q")
POS_QUEUE_OFFSET = 20  # after totalSize, magic, bodyCRC, queueId, flag


def checked_retry_topic(topic: str, group: str) -> str:
    """The group's POP retry topic, refused up front when it is no valid topic name (a long
    group and topic): revive could never store the messages it brings back."""
    return validation.topic(pop_retry_topic(topic, group))


class PopHoldService:
    """POP requests with nothing to return, held per topic until a message arrives."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.waiting: dict[str, set[asyncio.Future[None]]] = {}

    def full(self, topic: str) -> bool:
        return len(self.waiting.get(topic, ())) >= self.limit

    def on_arrivals(self, arrived: dict[tuple[str, int], int]) -> None:
        """Queues' new ends after a reput: pops held on their topics pass again."""
        if not self.waiting:  # (after every reput: most of the time no pop waits at all)
            return
        for topic, _ in arrived:
            for fut in self.waiting.pop(topic, ()):
                if not fut.done():
                    fut.set_result(None)

    async def hold(self, topics: list[str], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        for topic in topics:
            self.waiting.setdefault(topic, set()).add(fut)
        timer = loop.call_later(timeout, lambda: fut.done() or fut.set_result(None))
        try:
            await fut
        finally:
            timer.cancel()
            for topic in topics:
                held = self.waiting.get(topic)
                if held is not None:
                    held.discard(fut)
                    if not held:
                        del self.waiting[topic]

    def release_all(self) -> None:
        for held in self.waiting.values():
            for fut in held:
                if not fut.done():
                    fut.set_result(None)
        self.waiting.clear()


class PopResult:
    """What one POP request collected across queues: the records, each one's extra info (the
    receipt a consumer acks it by) and the response code. Remoting answers carry the extra
    info as headers; the gRPC endpoint hands each message its own."""

    def __init__(self, max_num: int, pop_time: int, revive_qid: int) -> None:
        self.max_num = max_num
        self.pop_time = pop_time
        self.revive_qid = revive_qid
        self.code = ResponseCode.SUCCESS
        self.messages: list[bytes | memoryview] = []
        self.infos: list[ExtraInfo] = []
        self.rest = 0
        self.start_info: list[str] = []
        self.msg_info: list[str] = []
        self.order_count_info: list[str] = []
        # Orderly pops: when the first queue skipped for its batch in flight frees up, so a
        # held pop wakes then (Java's ConsumerOrderInfoLockManager); None when none was.
        self.unblocked_at: int | None = None

    @property
    def order(self) -> bool:
        return self.revive_qid == ORDER_REVIVE_QID

    @property
    def room(self) -> int:
        return self.max_num - len(self.messages)


class PopProcessor:
    def __init__(self, broker: BrokerController) -> None:
        self.broker = broker
        self.revive = broker.revive
        self.holds = PopHoldService(broker.config.popPollingSize)
        broker.store.arrival_listeners.append(self.holds.on_arrivals)
        self._ck_counter = 0

    def table(self) -> dict[int, object]:
        return {RequestCode.POP_MESSAGE: self.pop,
                RequestCode.ACK_MESSAGE: self.ack,
                RequestCode.CHANGE_MESSAGE_INVISIBLETIME: self.change_invisible_time}

    # -- POP_MESSAGE -----------------------------------------------------------------------

    async def pop(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        popped = await self.pop_messages(cmd, conn.peer)
        fields = {"popTime": popped.pop_time, "invisibleTime": cmd.int_field("invisibleTime"),
                  "reviveQid": popped.revive_qid, "restNum": popped.rest,
                  "startOffsetInfo": ";".join(popped.start_info),
                  "msgOffsetInfo": ";".join(popped.msg_info)}
        if popped.order:
            fields["orderCountInfo"] = ";".join(popped.order_count_info)
        remark = "FOUND" if popped.messages else st.NO_MESSAGE_IN_QUEUE
        return cmd.response(popped.code, remark, fields, b"".join(popped.messages))

    async def pop_messages(self, cmd: RemotingCommand, peer: str) -> PopResult:
        """A POP_MESSAGE request's work, shared by the remoting handler and the gRPC
        endpoint (which builds the same request, as Java's proxy in local mode): the checks
        (RemotingError with Java's code and remark), one pass, and when nothing came a hold
        of up to pollTime. `code` is SUCCESS, POLLING_TIMEOUT or POLLING_FULL."""
        broker = self.broker
        poll_ms = cmd.int_field("pollTime", 0)
        born = cmd.int_field("bornTime", 0)
        if born and poll_ms and int(time.time() * 1000) - born - poll_ms > 500:
            raise RemotingError(ResponseCode.POLLING_TIMEOUT,
                                f"the broker[{broker.config.brokerIP1}] pop message is timeout "
                                "too much")
        if not broker.config.brokerPermission & PERM_READ:
            raise RemotingError(ResponseCode.NO_PERMISSION,
                                f"the broker[{broker.config.brokerIP1}] pop message is forbidden")
        if cmd.int_field("maxMsgNums", None, *validation.INT32) > MAX_POP_NUMS:
            raise RemotingError(ResponseCode.INVALID_PARAMETER,
                                f"the broker[{broker.config.brokerIP1}] pop message's num is "
                                f"greater than {MAX_POP_NUMS}")
        topic = validation.topic(cmd.require("topic"))
        group = validation.group(cmd.require("consumerGroup"))
        topic_config = broker.topics.existing(topic)
        if not topic_config.perm & PERM_READ:
            raise RemotingError(ResponseCode.NO_PERMISSION,
                                f"the topic[{topic}] peeking message is forbidden")
        queue_id = cmd.int_field("queueId", None, *validation.INT32)
        if queue_id >= topic_config.readQueueNums:
            raise RemotingError(ResponseCode.INVALID_PARAMETER,
                                f"queueId[{queue_id}] is illegal, topic:[{topic}] "
                                f"topicConfig.readQueueNums:[{topic_config.readQueueNums}] "
                                f"consumer:[{peer}]")
        broker.groups.consumable(group)
        # 5.x: no `exp` is every message, whatever expType says
        exp = cmd.field("exp")
        sub = Subscription.parse(topic, exp, 0, cmd.field("expType") if exp else None)
        check_filter(sub, broker.config.enablePropertyFilter, registered=False)
        retry_topic = checked_retry_topic(topic, group)
        popped = await self._collect(cmd, topic_config, retry_topic, sub)
        if not popped.messages and poll_ms > 0:
            if self.holds.full(topic):
                popped.code = ResponseCode.POLLING_FULL
                return popped
            popped = await self._hold(cmd, topic_config, retry_topic, sub, popped, poll_ms)
        if popped.messages:
            broker.stats.got(topic, group, popped.messages)
        else:
            popped.code = ResponseCode.POLLING_TIMEOUT
        return popped

    async def _hold(self, cmd: RemotingCommand, topic_config: TopicConfig, retry_topic: str,
                    sub: Subscription, popped: PopResult, poll_ms: int) -> PopResult:
        """Hold an empty pop until a message arrives or pollTime passes, then pass again. An
        orderly pop also wakes when a queue it skipped frees up (its batch became visible
        again), and holds on for the rest of its time when another took that batch first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + poll_ms / 1000.0
        topics = [topic_config.topicName, retry_topic]
        while True:
            timeout = deadline - loop.time()
            if popped.unblocked_at is not None:
                timeout = min(timeout, (popped.unblocked_at - time.time() * 1000) / 1000.0)
            await self.holds.hold(topics, max(timeout, 0.0))
            popped = await self._collect(cmd, topic_config, retry_topic, sub)
            if popped.messages or not popped.order or loop.time() >= deadline:
                return popped

    async def _collect(self, cmd: RemotingCommand, topic_config: TopicConfig,
                       retry_topic: str, sub: Subscription) -> PopResult:
        """One pass over the retry topic and the topic's queues, as Java's processor makes:
        the retry topic first one time in five (popFromRetryProbability), else last. An
        orderly pop reads no retry topic: its messages come back in their own queue."""
        broker = self.broker
        if cmd.field("order", "false").lower() == "true":
            revive_qid = ORDER_REVIVE_QID
        else:
            self._ck_counter += 1
            revive_qid = self._ck_counter % broker.config.reviveQueueNum
        popped = PopResult(cmd.int_field("maxMsgNums"), int(time.time() * 1000), revive_qid)
        rand = random.randrange(100)
        retry_first = rand < broker.config.popFromRetryProbability
        queue_id = cmd.int_field("queueId")
        n = topic_config.readQueueNums
        queues = [queue_id] if queue_id >= 0 else [(rand + i) % n for i in range(n)]
        sources = [(topic_config.topicName, q) for q in queues]
        retry = ([(retry_topic, 0)] if retry_topic in broker.topics.table and not popped.order
                 else [])
        sources = retry + sources if retry_first else sources + retry
        for topic, qid in sources:
            await self._pop_queue(cmd, topic, qid, popped, sub)
        return popped

    async def _pop_queue(self, cmd: RemotingCommand, topic: str, queue_id: int,
                         popped: PopResult, sub: Subscription) -> None:
        """Pops what `sub` selects from one queue; the retry topic's messages all come back."""
        broker, store = self.broker, self.broker.store
        group = cmd.require("consumerGroup")
        offset = broker.offsets.query(group, topic, queue_id)
        if offset < 0:
            offset = self._init_offset(group, topic, queue_id, cmd.int_field("initMode", 0))
        if popped.order:
            until = broker.order_info.blocked_until(
                cmd.field("attemptId"), topic, group, queue_id, cmd.int_field("invisibleTime"),
                int(time.time() * 1000))
            if until is not None:
                popped.rest += max(store.max_offset(topic, queue_id) - offset, 0)
                popped.unblocked_at = min(until, popped.unblocked_at or until)
                return
        if popped.room <= 0:
            popped.rest += max(store.max_offset(topic, queue_id) - offset, 0)
            return
        if topic != cmd.field("topic"):
            sub = Subscription(topic)
        result = get_messages(store, topic, queue_id, offset, popped.room, sub)
        if result.status in (st.OFFSET_TOO_SMALL, st.OFFSET_OVERFLOW_BADLY,
                             st.OFFSET_FOUND_NULL):
            offset = result.next_begin_offset  # the stored offset is out of range: correct it
            broker.offsets.commit(group, topic, queue_id, offset)
            result = get_messages(store, topic, queue_id, offset, popped.room, sub)
        # The store may hand back an empty record for an entry whose commit log bytes are
        # gone (deleted files); like Java's null getMessage, such an entry is skipped.
        messages = [m for m in result.messages if len(m) >= POS_QUEUE_OFFSET + 8]
        if messages:
            offsets = [_QUEUE_OFFSET.unpack_from(m, POS_QUEUE_OFFSET)[0] for m in messages]
            invisible, broker_name = cmd.int_field("invisibleTime"), broker.config.brokerName
            if popped.order:
                messages = self._order_popped(cmd, topic, queue_id, popped, messages, offsets)
            else:
                ck = CheckPoint(topic, group, queue_id, offset, popped.pop_time, invisible,
                                offsets, broker_name)
                if not await self.revive.add_checkpoint(popped.revive_qid, ck):
                    popped.rest += result.max_offset - offset
                    return
            popped.start_info.append(offset_info_item(topic, queue_id, offset))
            popped.msg_info.append(offset_info_item(topic, queue_id,
                                                    ",".join(map(str, offsets))))
            infos = [ExtraInfo(offset, popped.pop_time, invisible, popped.revive_qid,
                               retry_flag(topic), broker_name, queue_id, o)
                     for o in offsets]
            popped.infos.extend(infos)
            if topic == cmd.field("topic"):
                popped.messages.extend(messages)
            else:
                popped.messages.extend(self._as_original(m, cmd.require("topic"), info)
                                       for m, info in zip(messages, infos))
        # An orderly pop leaves the offset at its batch: acks move it (filtered-out messages
        # with no batch are passed over, as by any pop).
        if result.next_begin_offset > offset and not (popped.order and messages):
            broker.offsets.commit(group, topic, queue_id, result.next_begin_offset)
        popped.rest += max(result.max_offset - result.next_begin_offset, 0)

    def _order_popped(self, cmd: RemotingCommand, topic: str, queue_id: int, popped: PopResult,
                      messages: list[memoryview], offsets: list[int]) -> list[bytes | memoryview]:
        """Record an orderly batch in the queue's order info; the messages delivered before
        come back with their delivery count as reconsume times (set in the message, where
        gRPC and every client read it, besides orderCountInfo, where Java's client does)."""
        counts = self.broker.order_info.update(
            cmd.field("attemptId"), topic, cmd.require("consumerGroup"), queue_id,
            popped.pop_time, cmd.int_field("invisibleTime"), offsets, popped.pop_time)
        popped.order_count_info.extend(order_count_items(topic, queue_id, counts))
        return [self._redelivered(m, counts[o]) if counts[o] else m
                for m, o in zip(messages, offsets)]

    @staticmethod
    def _redelivered(raw: memoryview, reconsume_times: int) -> bytes:
        msg = decode_record(raw, 0)
        assert isinstance(msg, MessageExt)
        return bytes(reencode(msg, reconsume_times=reconsume_times))

    def _init_offset(self, group: str, topic: str, queue_id: int, init_mode: int) -> int:
        """A group's first POP of a queue: from the start (initMode MIN, and retry topics),
        else from the last message, as Java's getInitOffset - except that a queue whose
        first message is still stored is read from 0 (initPopOffsetByCheckMsgInMem, on by
        default: Java asks whether message 0 is in memory, our mapped store always has it).
        5.x gRPC consumers pop with MAX, and would otherwise miss what was sent before
        their first receive."""
        store = self.broker.store
        if (init_mode == INIT_MODE_MIN or topic.startswith(RETRY_PREFIX)
                or store.min_offset(topic, queue_id) <= 0):
            offset = store.min_offset(topic, queue_id)
        else:
            offset = max(store.max_offset(topic, queue_id) - 1, 0)
        self.broker.offsets.commit(group, topic, queue_id, offset)
        return offset

    @staticmethod
    def _as_original(raw: memoryview, topic: str, info: ExtraInfo) -> bytes:
        """A revived message is delivered under its original topic, carrying its extra info
        (POP_CK) since the client cannot derive it from the retry topic's headers."""
        msg = decode_record(raw, 0)
        assert isinstance(msg, MessageExt)
        props = dict(msg.properties)
        props.setdefault(POP_CK, str(info))
        return bytes(reencode(msg, topic=topic, properties=encode_properties(props)))

    # -- ACK_MESSAGE and CHANGE_MESSAGE_INVISIBLETIME -----------------------------------------

    def _acked_message(self, cmd: RemotingCommand, upper_inclusive: bool) -> tuple[str, int, int,
                                                                                  ExtraInfo]:
        """Check an ack's topic, queue and offset as Java does; its extra info parsed."""
        topic = validation.topic(cmd.require("topic"))
        checked_retry_topic(topic, validation.group(cmd.require("consumerGroup")))
        topic_config = self.broker.topics.existing(topic)
        queue_id = cmd.int_field("queueId", None, *validation.INT32)
        offset = cmd.int_field("offset")
        if not 0 <= queue_id < topic_config.readQueueNums:
            raise RemotingError(ResponseCode.MESSAGE_ILLEGAL,
                                f"queueId[{queue_id}] is illegal, topic:[{topic}] "
                                f"topicConfig.readQueueNums:[{topic_config.readQueueNums}]")
        store = self.broker.store
        low, high = store.min_offset(topic, queue_id), store.max_offset(topic, queue_id)
        if offset < low or offset > high or (offset == high and not upper_inclusive):
            raise RemotingError(ResponseCode.NO_MESSAGE,
                                f"offset is illegal, key:{topic}@{queue_id}, commit:{offset}, "
                                f"store:{low}~{high}")
        try:
            info = ExtraInfo.parse(cmd.require("extraInfo"))
        except ValueError as exc:
            raise RemotingError(ResponseCode.INVALID_PARAMETER, str(exc)) from None
        if not info.is_order and not 0 <= info.revive_qid < self.broker.config.reviveQueueNum:
            raise RemotingError(ResponseCode.INVALID_PARAMETER,
                                f"reviveQid {info.revive_qid} is illegal")
        return topic, queue_id, offset, info

    async def ack(self, cmd: RemotingCommand,
                  _conn: Connection | None = None) -> RemotingCommand:
        """ACK_MESSAGE; the gRPC endpoint builds the same request and calls it without a
        connection (none is read)."""
        topic, queue_id, offset, info = self._acked_message(cmd, upper_inclusive=True)
        if info.is_order:
            return self._ack_orderly(cmd, topic, queue_id, offset, info)
        key = (topic, cmd.require("consumerGroup"), queue_id, info.ck_queue_offset,
               info.pop_time)
        if not await self.revive.ack(info.revive_qid, key, info.broker_name, [offset]):
            return cmd.response(ResponseCode.SYSTEM_ERROR, "ack could not be stored")
        return cmd.response()

    async def change_invisible_time(self, cmd: RemotingCommand,
                                    _conn: Connection | None = None) -> RemotingCommand:
        """A new one-message checkpoint from now, then an ack of the old one (Java's order:
        a crash in between re-delivers rather than loses). Called by the gRPC endpoint too,
        without a connection."""
        topic, queue_id, offset, info = self._acked_message(cmd, upper_inclusive=False)
        group, invisible = cmd.require("consumerGroup"), cmd.int_field("invisibleTime")
        now = int(time.time() * 1000)
        if info.is_order:
            return self._change_orderly(cmd, topic, queue_id, offset, info, now + invisible)
        # A checkpoint is known by (topic, group, queue, start offset, pop time): one made in
        # the millisecond of the handle's own would take its key, and the ack of the old one
        # below would cancel it, the message never to come back (a client that nacks right
        # after a change does this more often than not). Java has the same key; a later pop
        # time than the handle's is all a client can tell.
        now = max(now, info.pop_time + 1)
        ck = CheckPoint(topic, group, queue_id, offset, now, invisible, [offset],
                        info.broker_name)
        if not await self.revive.add_checkpoint(info.revive_qid, ck):
            return cmd.response(ResponseCode.SYSTEM_ERROR, "checkpoint could not be stored")
        old = (topic, group, queue_id, info.ck_queue_offset, info.pop_time)
        if not await self.revive.ack(info.revive_qid, old, info.broker_name, [offset]):
            return cmd.response(ResponseCode.SYSTEM_ERROR, "ack could not be stored")
        return cmd.response(fields={"popTime": now, "invisibleTime": invisible,
                                    "reviveQid": info.revive_qid})


    # -- the same for orderly pops ---------------------------------------------------------------

    def _ack_orderly(self, cmd: RemotingCommand, topic: str, queue_id: int, offset: int,
                     info: ExtraInfo) -> RemotingCommand:
        """Java's ackOrderly: the offset moves to the batch's first message not acked (past
        the batch when all are), and pops held on the queue wake when it frees up. An ack
        below the committed offset, or of an older pop of the queue, changes nothing."""
        group = cmd.require("consumerGroup")
        offsets, order_info = self.broker.offsets, self.broker.order_info
        committed = offsets.query(group, topic, queue_id)
        if offset < committed:
            return cmd.response()
        next_offset = order_info.commit_and_next(topic, group, queue_id, offset, info.pop_time)
        if next_offset == NOT_IN_BATCH:
            return cmd.response(ResponseCode.MESSAGE_ILLEGAL,
                                f"offset is illegal, key:{topic}@{group}@{queue_id}, "
                                f"old:{committed}, commit:{offset}, next:{next_offset}")
        if next_offset >= 0:
            offsets.commit(group, topic, queue_id, next_offset)
            self._wake_if_free(topic, group, queue_id, info.invisible_time)
        return cmd.response()

    def _change_orderly(self, cmd: RemotingCommand, topic: str, queue_id: int, offset: int,
                        info: ExtraInfo, next_visible: int) -> RemotingCommand:
        """Java's order branch of CHANGE_MESSAGE_INVISIBLETIME: the message's next visible
        time in the order info, and an answer with the pop's own popTime (the new handle
        still acks this batch). For a message already committed the handle's own values
        come back: nothing is in flight to change."""
        group = cmd.require("consumerGroup")
        invisible = info.invisible_time
        if offset >= self.broker.offsets.query(group, topic, queue_id) and \
                self.broker.order_info.update_next_visible(topic, group, queue_id, offset,
                                                           info.pop_time, next_visible):
            invisible = next_visible - info.pop_time
            self._wake_if_free(topic, group, queue_id, invisible)
        return cmd.response(fields={"popTime": info.pop_time, "invisibleTime": invisible,
                                    "reviveQid": ORDER_REVIVE_QID})

    def _wake_if_free(self, topic: str, group: str, queue_id: int, invisible: int) -> None:
        """Held orderly pops of the topic pass again when the queue hands out again."""
        if self.broker.order_info.blocked_until(None, topic, group, queue_id, invisible,
                                                int(time.time() * 1000)) is None:
            end = self.broker.store.max_offset(topic, queue_id)
            self.holds.on_arrivals({(topic, queue_id): end})

"""PULL_MESSAGE (11) and LITE_PULL_MESSAGE (361) with long polling (PullMessageProcessor,
PullRequestHoldService).

A pull that finds nothing new is held until a message reaches its queue or its
suspendTimeoutMillis passes, then re-run once and answered whatever it finds.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from rmqnode import validation
from rmqnode.broker.clients import SUB_ALL, Subscription, check_filter
from rmqnode.broker.sql92 import Selector
from rmqnode.broker.topics import PERM_READ
from rmqnode.config import MASTER_ID
from rmqnode.errors import FAQ
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import ResponseCode
from rmqnode.net.connection import Connection
from rmqnode.storage import store as st
from rmqnode.storage.records import Blank, CorruptRecord, decode_record

if TYPE_CHECKING:
    from rmqnode.broker.controller import BrokerController

FLAG_COMMIT_OFFSET = 0x1
FLAG_SUSPEND = 0x2
FLAG_SUBSCRIPTION = 0x4

# StoreUtil.TOTAL_PHYSICAL_MEMORY_SIZE: what accessMessageInMemoryMaxRatio is a share of.
TOTAL_PHYSICAL_MEMORY = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")

# Entries a property-filtered read looks at, at most, before it answers with what it has
# (DefaultMessageStore's maxFilterMessageCount: 16000 bytes of consume queue).
FILTER_SCAN_LIMIT = 16000 // 20

STATUS_CODES = {
    st.FOUND: ResponseCode.SUCCESS,
    st.NO_MATCHED_MESSAGE: ResponseCode.PULL_RETRY_IMMEDIATELY,
    st.OFFSET_FOUND_NULL: ResponseCode.PULL_NOT_FOUND,
    st.OFFSET_OVERFLOW_BADLY: ResponseCode.PULL_OFFSET_MOVED,
    st.OFFSET_OVERFLOW_ONE: ResponseCode.PULL_NOT_FOUND,
    st.OFFSET_TOO_SMALL: ResponseCode.PULL_OFFSET_MOVED,
}


def get_messages(store: st.MessageStore, topic: str, queue_id: int, offset: int, max_num: int,
                 sub: Subscription) -> st.GetResult:
    """The store's read through a subscription's filter: tags by their codes in the consume
    queue (nothing more to do for `*`), a SQL92 selector by each message's properties
    (ExpressionMessageFilter.isMatchedByCommitLog). Tag subscriptions take the store's path
    unchanged, so they cost what they did before property filters existed."""
    if sub.selector is None:
        match = None if sub.sub_string == SUB_ALL else sub.matches
        return store.get_messages(topic, queue_id, offset, max_num, match)
    return _select(store, topic, queue_id, offset, max_num, sub.selector)


def _selected(selector: Selector, view: memoryview) -> bool:
    try:
        record = decode_record(view, 0, read_body=False)
    except CorruptRecord:
        return False
    return record is not None and not isinstance(record, Blank) and \
        selector.matches(record.properties)


def _select(store: st.MessageStore, topic: str, queue_id: int, offset: int, max_num: int,
            selector: Selector) -> st.GetResult:
    """Reads on until `max_num` messages match, the queue ends or FILTER_SCAN_LIMIT entries
    were looked at; skipped entries still advance nextBeginOffset, and a read that matched
    nothing is NO_MATCHED_MESSAGE, as Java's."""
    first = result = store.get_messages(topic, queue_id, offset, max_num)
    kept: list[memoryview] = []
    end = offset
    while result.status == st.FOUND:
        kept += [view for view in result.messages if _selected(selector, view)]
        end = result.next_begin_offset
        if len(kept) >= max_num or end - offset >= FILTER_SCAN_LIMIT:
            break
        result = store.get_messages(topic, queue_id, end, max_num - len(kept))
    if first.status != st.FOUND:
        return first
    return st.GetResult(st.FOUND if kept else st.NO_MATCHED_MESSAGE, end, result.min_offset,
                        result.max_offset, kept)


def suggest_broker_id(store: st.MessageStore, group: dict, topic: str, queue_id: int,
                      result: st.GetResult, slave_read_enable: bool, memory_ratio: int) -> int:
    """PullMessageProcessor's suggestWhichBrokerId: without slaveReadEnable the master; with
    it, the group's whichBrokerWhenConsumeSlowly when the pull read further back from the
    CommitLog's end than accessMessageInMemoryMaxRatio percent of the machine's memory
    (DefaultMessageStore's suggestPullingFromSlave: those bytes are likely off the page
    cache, and a slave serves them without slowing the master), else the group's brokerId.
    Computed from the last entry read, only when it can change the answer."""
    if not slave_read_enable:
        return MASTER_ID
    slow = False
    if result.status in (st.FOUND, st.NO_MATCHED_MESSAGE):
        cq = store.find_queue(topic, queue_id)
        last = cq.entry(result.next_begin_offset - 1) if cq is not None else None
        if last is not None:
            behind = store.commitlog.max_offset - last[0]
            slow = behind > TOTAL_PHYSICAL_MEMORY * memory_ratio // 100
    return int(group.get("whichBrokerWhenConsumeSlowly", 1) if slow
               else group.get("brokerId", MASTER_ID))


class PullHoldService:
    """Held pulls per queue, woken by the store's reput step when messages arrive. A pull
    leaves the table however its hold ends (woken, timed out, or cancelled when its
    connection closes): a held pull must not outlive the client that sent it."""

    def __init__(self) -> None:
        # (topic, queue id) -> {the held pull's future: the offset it waits beyond}
        self.waiting: dict[tuple[str, int], dict[asyncio.Future[None], int]] = {}

    def on_arrivals(self, arrived: dict[tuple[str, int], int]) -> None:
        """Queues' new ends after a reput: pulls held beyond their old ends pass again."""
        waiting = self.waiting
        if not waiting:  # (after every reput: most of the time no pull waits at all)
            return
        for key, max_offset in arrived.items():
            held = waiting.get(key)
            if held:
                for fut, offset in held.items():
                    if max_offset > offset and not fut.done():
                        fut.set_result(None)  # its hold() takes it out of the table

    async def hold(self, topic: str, queue_id: int, offset: int, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        key = (topic, queue_id)
        held = self.waiting.setdefault(key, {})
        held[fut] = offset
        timer = loop.call_later(timeout, lambda: fut.done() or fut.set_result(None))
        try:
            await fut
        finally:
            timer.cancel()
            del held[fut]
            if not held and self.waiting.get(key) is held:
                del self.waiting[key]

    def release_all(self) -> None:
        for held in self.waiting.values():
            for fut in held:
                if not fut.done():
                    fut.set_result(None)
        self.waiting.clear()


class PullProcessor:
    def __init__(self, broker: BrokerController) -> None:
        self.broker = broker
        self.holds = PullHoldService()
        broker.store.arrival_listeners.append(self.holds.on_arrivals)

    async def handle(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        response = self.process(cmd, allow_suspend=True)
        if response is not None:
            return response
        # Nothing new: hold the request, then answer with whatever is there.
        cfg = self.broker.config
        timeout = (cmd.int_field("suspendTimeoutMillis", 15000) if cfg.longPollingEnable
                   else cfg.shortPollingTimeMills) / 1000.0
        await self.holds.hold(cmd.require("topic"), cmd.int_field("queueId"),
                              cmd.int_field("queueOffset"), timeout)
        response = self.process(cmd, allow_suspend=False)
        assert response is not None
        return response

    def _subscription(self, cmd: RemotingCommand, group: str, topic: str,
                      sys_flag: int) -> Subscription | RemotingCommand:
        """The pull's own subscription (FLAG_SUBSCRIPTION) or the one the group's heartbeats
        registered, with PullMessageProcessor's answers when there is none to use."""
        if sys_flag & FLAG_SUBSCRIPTION:
            sub = Subscription.parse(topic, cmd.field("subscription"),
                                     cmd.int_field("subVersion", 0), cmd.field("expressionType"))
            check_filter(sub, self.broker.config.enablePropertyFilter, registered=False)
            return sub
        info = self.broker.clients.consumers.get(group)
        if info is None:
            return cmd.response(ResponseCode.SUBSCRIPTION_NOT_EXIST,
                                "the consumer's group info not exist" + FAQ)
        sub = info.subscriptions.get(topic)
        if sub is None:
            return cmd.response(ResponseCode.SUBSCRIPTION_NOT_EXIST,
                                "the consumer's subscription not exist" + FAQ)
        if sub.sub_version < cmd.int_field("subVersion", 0):
            return cmd.response(ResponseCode.SUBSCRIPTION_NOT_LATEST,
                                "the consumer's subscription not latest")
        check_filter(sub, self.broker.config.enablePropertyFilter, registered=True)
        return sub

    def process(self, cmd: RemotingCommand, allow_suspend: bool) -> RemotingCommand | None:
        """The answer, or None when the pull should be held for new messages."""
        broker = self.broker
        if not broker.config.brokerPermission & PERM_READ:
            return cmd.response(ResponseCode.NO_PERMISSION,
                                f"the broker[{broker.config.brokerIP1}] pulling message is "
                                "forbidden")
        group = validation.group(cmd.require("consumerGroup"))
        topic = validation.topic(cmd.require("topic"))
        queue_id = cmd.int_field("queueId", None, *validation.INT32)
        offset = cmd.int_field("queueOffset")
        sys_flag = cmd.int_field("sysFlag", 0, *validation.INT32)
        group_config = broker.groups.consumable(group)
        topic_config = broker.topics.existing(topic)
        if not topic_config.perm & PERM_READ:
            return cmd.response(ResponseCode.NO_PERMISSION,
                                f"the topic[{topic}] pulling message is forbidden")
        if not 0 <= queue_id < topic_config.readQueueNums:
            return cmd.response(ResponseCode.SYSTEM_ERROR,
                                f"queueId[{queue_id}] is illegal, topic:[{topic}] "
                                f"topicConfig.readQueueNums:[{topic_config.readQueueNums}] "
                                f"consumer:[{cmd.field('consumerGroup')}]")
        sub = self._subscription(cmd, group, topic, sys_flag)
        if isinstance(sub, RemotingCommand):
            return sub
        if allow_suspend and sys_flag & FLAG_COMMIT_OFFSET and not broker.is_slave:
            broker.offsets.commit(group, topic, queue_id, cmd.int_field("commitOffset"))

        result = get_messages(broker.store, topic, queue_id, offset,
                              max(1, cmd.int_field("maxMsgNums", 32, *validation.INT32)), sub)
        if result.status == st.NO_MESSAGE_IN_QUEUE:
            code = ResponseCode.PULL_OFFSET_MOVED if offset else ResponseCode.PULL_NOT_FOUND
        else:
            code = STATUS_CODES[result.status]
        if code == ResponseCode.PULL_NOT_FOUND and allow_suspend and sys_flag & FLAG_SUSPEND:
            return None
        cfg = broker.config
        suggest = suggest_broker_id(broker.store, group_config, topic, queue_id, result,
                                    cfg.slaveReadEnable, cfg.accessMessageInMemoryMaxRatio)
        next_begin = result.next_begin_offset
        if broker.is_slave and not cfg.offsetCheckInSlave:
            # A slave leaves a consumer's offset as it is (nextOffsetCorrection): it may only
            # be behind its master; the master corrects offsets.
            if result.status not in (st.FOUND, st.NO_MATCHED_MESSAGE):
                next_begin = offset
            if code == ResponseCode.PULL_OFFSET_MOVED:
                code = ResponseCode.PULL_RETRY_IMMEDIATELY
                suggest = int(group_config.get("brokerId", MASTER_ID))
        body = b"".join(result.messages) if result.messages else b""
        if result.messages:
            broker.stats.got(topic, group, result.messages)
        return cmd.response(code, result.status, {
            "suggestWhichBrokerId": suggest, "nextBeginOffset": next_begin,
            "minOffset": result.min_offset, "maxOffset": result.max_offset}, body)

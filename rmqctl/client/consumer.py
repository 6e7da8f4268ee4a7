"""A pull consumer for a group: joins the group with heartbeats, takes its share of the
queues (RocketMQ's default AllocateMessageQueueAveragely), pulls with long polling and
commits offsets to the brokers."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import dataclass

from rmqnode.errors import RemotingError
from rmqnode.message import ORIGIN_MESSAGE_ID, RETRY_PREFIX, RETRY_TOPIC, MessageExt
from rmqnode.net import fastjson
from rmqnode.net.client import RemotingClient
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode, ResponseCode
from rmqnode.storage.records import Blank, decode_record
from rmqctl.client.namesrv import NameServerClient
from rmqctl.client.producer import MessageQueue, TopicRoute, topic_route
from rmqctl.positions import Kind, Position, parse_position

PULL_FLAG_COMMIT = 0x1
PULL_FLAG_SUSPEND = 0x2
PULL_FLAG_SUBSCRIPTION = 0x4


def allocate(queues: list[MessageQueue], members: list[str], me: str) -> list[MessageQueue]:
    """AllocateMessageQueueAveragely: sorted queues split into contiguous shares, the first
    (queues mod members) members taking one more."""
    queues, members = sorted(queues), sorted(members)
    if me not in members or not queues:
        return []
    index, n, m = members.index(me), len(members), len(queues)
    size = m // n + (1 if index < m % n else 0)
    start = index * (m // n) + min(index, m % n)
    return queues[start:start + size]


def parse_messages(body: bytes) -> list[MessageExt]:
    out, pos = [], 0
    while pos < len(body):
        rec = decode_record(body, pos)
        if rec is None or isinstance(rec, Blank):
            break
        out.append(rec)
        pos += rec.store_size
    return out


@dataclass(frozen=True)
class Stop:
    """Where a queue's reading ends: before `offset`, or at the first message stored at or
    after `timestamp` (ms)."""
    offset: int | None
    timestamp: int | None

    def before(self, msg: MessageExt) -> bool:
        """Whether `msg` lies at or past the stop (is not to be read)."""
        return (self.offset is not None and msg.queue_offset >= self.offset) or \
            (self.timestamp is not None and msg.store_timestamp >= self.timestamp)

    def passed(self, offset: int) -> bool:
        """Whether reading from `offset` on reads nothing before the stop."""
        return self.offset is not None and offset >= self.offset

    def wait_ms(self, follow_ms: int) -> int:
        """How long a pull of a caught-up queue may wait for new messages: not past the stop
        time, after which nothing new comes before it."""
        if self.timestamp is None:
            return follow_ms
        return max(0, min(follow_ms, self.timestamp - int(time.time() * 1000)))

    def expired(self) -> bool:
        """A stop time passed: a caught-up queue gets nothing more stored before it."""
        return self.timestamp is not None and time.time() * 1000 >= self.timestamp


@dataclass
class PullResult:
    code: int
    next_offset: int
    min_offset: int
    max_offset: int
    messages: list[MessageExt]


class GroupConsumer:
    def __init__(self, remoting: RemotingClient, namesrv: NameServerClient, group: str,
                 topic: str, expression: str = "*", broadcast: bool = False,
                 timeout: float = 5.0, retry: bool = False, expression_type: str = "TAG") -> None:
        """With `retry`, the group's %RETRY% topic is subscribed too, as clustering clients
        do, so messages sent back (send_back) come round again. `expression_type` SQL92 makes
        `expression` a property filter the brokers evaluate (MessageSelector.bySql)."""
        self.remoting = remoting
        self.namesrv = namesrv
        self.group = group
        self.topic = topic
        self.expression = expression or "*"
        self.expression_type = expression_type
        self.broadcast = broadcast
        self.timeout = timeout
        self.client_id = f"{socket.gethostname()}@rmqctl-{os.getpid()}-{id(self) % 100000}"
        self.route: TopicRoute | None = None
        self.retry_topic = RETRY_PREFIX + group if retry and not broadcast else None
        self.retry_route: TopicRoute | None = None
        self.changed = asyncio.Event()  # the broker said the group's members changed
        # Offset resets (RESET_CONSUMER_CLIENT_OFFSET): the queues this member reads, the new
        # offsets not yet taken up by a pull, each queue's pull in flight and last batch.
        self._reading: set[MessageQueue] = set()
        self._resets: dict[MessageQueue, int] = {}
        self._in_flight: dict[MessageQueue, asyncio.Future] = {}
        self._batches: dict[MessageQueue, list[MessageExt]] = {}
        remoting.dispatcher.register(RequestCode.NOTIFY_CONSUMER_IDS_CHANGED, self._notified)
        remoting.dispatcher.register(RequestCode.RESET_CONSUMER_CLIENT_OFFSET, self._reset)

    def _notified(self, cmd: RemotingCommand, conn) -> None:
        if cmd.field("consumerGroup") == self.group:
            self.changed.set()

    def _reset(self, cmd: RemotingCommand, conn) -> None:
        """A broker moved the group's offsets (`rmqctl offset reset`, mqadmin
        resetOffsetByTime): as Java's MQClientInstance.resetOffset, each queue being read
        drops what was pulled and not handed out yet, the pull in flight is abandoned, the
        next pull starts at the new offset, and the old position is never committed."""
        if cmd.field("group") != self.group or not cmd.body:
            return
        try:
            table = fastjson.loads(cmd.body).get("offsetTable", {})
            moved = {MessageQueue(k["topic"], k["brokerName"], int(k["queueId"])): int(v)
                     for k, v in ((key.as_dict(), value) for key, value in table.items())}
        except (AttributeError, KeyError, TypeError, ValueError):
            return  # not a ResetOffsetBody: nothing to act on (Java logs and goes on)
        for mq, offset in moved.items():
            if mq.topic != cmd.field("topic") or mq not in self._reading:
                continue
            self._resets[mq] = offset
            # The reader iterates this very list: emptied, it hands out nothing more.
            self._batches.pop(mq, []).clear()
            pulling = self._in_flight.get(mq)
            if pulling is not None:
                pulling.cancel()

    async def join(self) -> list[MessageQueue]:
        """Heartbeat to every broker of the topic, then take this member's queues; call again
        to rebalance (Java clients do every 20 s and when the broker notifies them)."""
        self.changed.clear()
        self.route = await topic_route(self.namesrv, self.topic)
        await self.check_filter()
        subscriptions = [{"subString": self.expression, "topic": self.topic, "subVersion": 0,
                          "expressionType": self.expression_type}]
        if self.retry_topic:
            subscriptions.append({"subString": "*", "topic": self.retry_topic,
                                  "subVersion": 0, "expressionType": "TAG"})
        body = fastjson.dumpb({"clientID": self.client_id, "consumerDataSet": [{
            "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET", "consumeType": "CONSUME_ACTIVELY",
            "groupName": self.group,
            "messageModel": "BROADCASTING" if self.broadcast else "CLUSTERING",
            "subscriptionDataSet": subscriptions, "unitMode": False}],
            "producerDataSet": []})
        for addr in set(self.route.addrs.values()):
            await self._ok(addr, RemotingCommand.request(RequestCode.HEART_BEAT, body=body))
        queues = self.route.read_queues
        if self.broadcast:
            return list(queues)
        addr = next(iter(self.route.addrs.values()))
        resp = await self._ok(addr, RemotingCommand.request(
            RequestCode.GET_CONSUMER_LIST_BY_GROUP, {"consumerGroup": self.group}))
        members = fastjson.loads(resp.body).get("consumerIdList", [])
        mine = allocate(queues, members, self.client_id)
        if self.retry_topic:
            self.retry_route = await self._retry_route()
            if self.retry_route is not None:
                mine += allocate(self.retry_route.read_queues, members, self.client_id)
        return mine

    async def check_filter(self) -> None:
        """CHECK_CLIENT_CONFIG to the topic's brokers, as Java's push consumer does at start
        with a SQL92 subscription (checkClientInBroker): a bad expression, or a broker without
        enablePropertyFilter, fails here with the broker's remark, not as pulls that fail."""
        if self.expression_type == "TAG":
            return
        assert self.route is not None
        body = fastjson.dumpb({"clientId": self.client_id, "group": self.group,
                               "subscriptionData": {
                                   "classFilterMode": False, "codeSet": [],
                                   "expressionType": self.expression_type,
                                   "subString": self.expression, "subVersion": 0,
                                   "tagsSet": [], "topic": self.topic}})
        for addr in set(self.route.addrs.values()):
            await self._ok(addr, RemotingCommand.request(RequestCode.CHECK_CLIENT_CONFIG,
                                                         body=body))

    async def _retry_route(self) -> TopicRoute | None:
        """The retry topic's route; the broker creates the topic on the first heartbeat and
        registers it at once, so a just-joined member may have to ask twice."""
        assert self.retry_topic is not None
        for _ in range(10):
            try:
                return await topic_route(self.namesrv, self.retry_topic)
            except RemotingError as exc:
                if exc.code != ResponseCode.TOPIC_NOT_EXIST:
                    raise
            await asyncio.sleep(0.1)
        return None

    async def leave(self) -> None:
        if self.route is None:
            return
        for addr in set(self.route.addrs.values()):
            try:
                await self.remoting.invoke(addr, RemotingCommand.request(
                    RequestCode.UNREGISTER_CLIENT, {"clientID": self.client_id,
                                                    "consumerGroup": self.group}), 2.0)
            except Exception:  # noqa: BLE001 - leaving is best effort, as in every client
                pass

    def addr(self, mq: MessageQueue) -> str:
        assert self.route is not None
        if mq.topic == self.retry_topic and self.retry_route is not None:
            return self.retry_route.addrs[mq.broker_name]
        return self.route.addrs[mq.broker_name]

    async def _ok(self, addr: str, cmd: RemotingCommand) -> RemotingCommand:
        resp = await self.remoting.invoke(addr, cmd, self.timeout)
        if resp.code != ResponseCode.SUCCESS:
            raise RemotingError(resp.code, resp.remark or "")
        return resp

    async def _offset_query(self, code: int, mq: MessageQueue, **extra: object) -> int:
        resp = await self._ok(self.addr(mq), RemotingCommand.request(
            code, {"topic": mq.topic, "queueId": mq.queue_id, **extra}))
        return int(resp.field("offset") or 0)

    async def bounds(self, mq: MessageQueue) -> tuple[int, int]:
        """The queue's first offset and the offset after its last message."""
        return (await self._offset_query(RequestCode.GET_MIN_OFFSET, mq),
                await self._offset_query(RequestCode.GET_MAX_OFFSET, mq))

    async def offset_at(self, mq: MessageQueue, timestamp: int) -> int:
        """SEARCH_OFFSET_BY_TIMESTAMP, as Java's searchOffset: the first message stored at
        or after `timestamp` (rmqnode; the max offset when there is none)."""
        return await self._offset_query(RequestCode.SEARCH_OFFSET_BY_TIMESTAMP, mq,
                                        timestamp=timestamp)

    async def start_offset(self, mq: MessageQueue, where: Position | str | None) -> int:
        """Where to start: the group's committed offset by default, else a position
        (rmqctl.positions; a string is parsed as one), clamped to what the queue holds. A
        reader (re)starting here also forgets a reset not taken up yet: the broker's
        committed offset has it."""
        self._reading.add(mq)
        self._resets.pop(mq, None)
        low, high = await self.bounds(mq)
        if where is None:
            resp = await self.remoting.invoke(self.addr(mq), RemotingCommand.request(
                RequestCode.QUERY_CONSUMER_OFFSET, {"consumerGroup": self.group,
                                                    "topic": mq.topic, "queueId": mq.queue_id}),
                self.timeout)
            return int(resp.field("offset")) if resp.code == ResponseCode.SUCCESS else high
        if isinstance(where, str):
            where = parse_position(where, int(time.time() * 1000))
        return min(max(await self._place(mq, where, low, high), low), high)

    async def stop_at(self, mq: MessageQueue, where: Position) -> Stop:
        """Where reading `mq` stops: before an offset, or at the first message stored at or
        after a time. A time is watched message by message, not searched: exact whatever
        the broker's search answers (Java 4.9.8's is the nearest message, which may lie
        before the time), and a time still ahead has no offset yet."""
        if where.kind is Kind.TIME:
            return Stop(None, where.value)
        low, high = await self.bounds(mq)
        return Stop(await self._place(mq, where, low, high), None)

    async def _place(self, mq: MessageQueue, where: Position, low: int, high: int) -> int:
        if where.kind is Kind.TIME:
            return await self.offset_at(mq, where.value)
        return {Kind.OFFSET: where.value, Kind.FIRST: low, Kind.END: high,
                Kind.BEFORE_END: max(low, high - where.value),
                Kind.AFTER_FIRST: low + where.value}[where.kind]

    async def pull(self, mq: MessageQueue, offset: int, max_num: int = 32,
                   suspend_ms: int = 15000, commit_offset: int | None = None) -> PullResult:
        """Messages from `offset` on, or from where an offset reset put the queue: then
        nothing is committed with the pull, and a pull the reset overtook is made again."""
        self._reading.add(mq)
        while True:
            if mq in self._resets:
                offset, commit_offset = self._resets.pop(mq), None
            pulling = self._in_flight[mq] = asyncio.ensure_future(
                self._pull(mq, offset, max_num, suspend_ms, commit_offset))
            try:
                await asyncio.wait({pulling})
            finally:
                self._in_flight.pop(mq, None)
                pulling.cancel()
            if not pulling.cancelled() and mq not in self._resets:
                result = pulling.result()
                self._batches[mq] = result.messages
                return result

    async def _pull(self, mq: MessageQueue, offset: int, max_num: int, suspend_ms: int,
                    commit_offset: int | None) -> PullResult:
        retrying = mq.topic == self.retry_topic
        expression = "*" if retrying else self.expression
        kind = "TAG" if retrying else self.expression_type
        flags = PULL_FLAG_SUBSCRIPTION | (PULL_FLAG_SUSPEND if suspend_ms else 0)
        if commit_offset is not None and not self.broadcast:
            flags |= PULL_FLAG_COMMIT
        resp = await self.remoting.invoke(self.addr(mq), RemotingCommand.request(
            RequestCode.PULL_MESSAGE, {
                "consumerGroup": self.group, "topic": mq.topic, "queueId": mq.queue_id,
                "queueOffset": offset, "maxMsgNums": max_num, "sysFlag": flags,
                "commitOffset": commit_offset or 0, "suspendTimeoutMillis": suspend_ms,
                "subscription": expression, "subVersion": 0, "expressionType": kind}),
            self.timeout + suspend_ms / 1000.0)
        messages = parse_messages(resp.body) if resp.code == ResponseCode.SUCCESS else []
        if kind == "TAG" and expression != "*":  # the broker filters by hash; check the tag
            wanted = {t.strip() for t in expression.split("||")}
            messages = [m for m in messages if m.tags in wanted]
        return PullResult(resp.code, int(resp.field("nextBeginOffset") or offset),
                          int(resp.field("minOffset") or 0), int(resp.field("maxOffset") or 0),
                          messages)

    async def send_back(self, msg: MessageExt, max_reconsume_times: int = 16) -> None:
        """CONSUMER_SEND_MSG_BACK, as Java's consumers do with a message they failed: it comes
        back through %RETRY%<group> after the next delay level, or, once retried
        `max_reconsume_times` times, goes to %DLQ%<group>. Sent to the broker that stored it."""
        await self._ok(msg.store_host_text, RemotingCommand.request(
            RequestCode.CONSUMER_SEND_MSG_BACK, {
                "offset": msg.commit_log_offset, "group": self.group, "delayLevel": 0,
                "originMsgId": msg.properties.get(ORIGIN_MESSAGE_ID, msg.msg_id),
                "originTopic": msg.properties.get(RETRY_TOPIC, msg.topic), "unitMode": False,
                "maxReconsumeTimes": max_reconsume_times}))

    async def commit(self, mq: MessageQueue, offset: int) -> None:
        """UPDATE_CONSUMER_OFFSET, unless a reset moved the queue since its last pull: what
        was pulled before it must not overwrite it."""
        if self.broadcast or mq in self._resets:
            return
        await self.remoting.invoke_oneway(self.addr(mq), RemotingCommand.request(
            RequestCode.UPDATE_CONSUMER_OFFSET, {"consumerGroup": self.group, "topic": mq.topic,
                                                 "queueId": mq.queue_id,
                                                 "commitOffset": offset}))

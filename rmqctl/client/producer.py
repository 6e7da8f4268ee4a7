"""A producer: routes from the name servers, queue selection, retries on another broker.

    async with Session("127.0.0.1:9876") as s:
        result = await s.producer().send("Orders", b"hello", tags="TagA", keys=["o-1"])
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from rmqnode.broker.reply import MESSAGE_TYPE, REPLY_MESSAGE_FLAG
from rmqnode.errors import ConnectionLost, RemotingError, RemotingTimeout
from rmqnode.message import (DELAY, KEYS, NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR, TAGS,
                             UNIQ_KEY, WAIT, BatchEntry, UniqueIdGenerator,
                             compress as compress_body, encode_batch, encode_properties,
                             java_hash)
from rmqnode.net.client import RemotingClient
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import PERM_READ, PERM_WRITE, RequestCode, ResponseCode
from rmqnode.validation import quote
from rmqctl.client.namesrv import NameServerClient

ROUTE_TTL = 30.0
RETRY_CODES = {ResponseCode.SYSTEM_ERROR, ResponseCode.SYSTEM_BUSY, ResponseCode.TOPIC_NOT_EXIST,
               ResponseCode.NO_PERMISSION, ResponseCode.SERVICE_NOT_AVAILABLE}
SEPARATORS = (NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR)
SENT_CODES = {ResponseCode.SUCCESS: "SEND_OK",  # stored: SendStatus as Java's client names it
              ResponseCode.FLUSH_DISK_TIMEOUT: "FLUSH_DISK_TIMEOUT",
              ResponseCode.FLUSH_SLAVE_TIMEOUT: "FLUSH_SLAVE_TIMEOUT",
              ResponseCode.SLAVE_NOT_AVAILABLE: "SLAVE_NOT_AVAILABLE"}


@dataclass(frozen=True, order=True)
class MessageQueue:
    topic: str
    broker_name: str
    queue_id: int


@dataclass
class TopicRoute:
    write_queues: list[MessageQueue]
    read_queues: list[MessageQueue]
    addrs: dict[str, str]  # broker name -> master address
    fetched: float = field(default_factory=time.monotonic)


async def topic_route(namesrv: NameServerClient, topic: str) -> TopicRoute:
    data = await namesrv.topic_route(topic)
    addrs = {b["brokerName"]: b["brokerAddrs"].get("0") for b in data.get("brokerDatas", [])
             if b.get("brokerAddrs", {}).get("0")}
    write, read = [], []
    for q in sorted(data.get("queueDatas", []), key=lambda q: q["brokerName"]):
        name = q["brokerName"]
        if name not in addrs:
            continue
        if q["perm"] & PERM_WRITE:
            write += [MessageQueue(topic, name, i) for i in range(q["writeQueueNums"])]
        if q["perm"] & PERM_READ:
            read += [MessageQueue(topic, name, i) for i in range(q["readQueueNums"])]
    return TopicRoute(write, read, addrs)


@dataclass
class SendResult:
    msg_id: str          # the UNIQ_KEY (what Java's SendResult.getMsgId() returns)
    offset_msg_id: str   # the broker's offset id
    queue: MessageQueue
    queue_offset: int
    status: str = "SEND_OK"


@dataclass
class Outgoing:
    """A message with its own tags, keys and properties: what a batch holds when its
    messages differ (a batch of plain bodies shares the batch's)."""
    body: bytes
    tags: str | None = None
    keys: list[str] | None = None
    props: dict[str, str] | None = None
    delay_level: int = 0


def request_code(properties: dict[str, str], batch: bool) -> int:
    """MQClientAPIImpl.sendMessage's choice: a reply (MSG_TYPE "reply", see
    rmqctl.client.requester) goes as SEND_REPLY_MESSAGE_V2, for the broker to push it to its
    requester."""
    if batch:
        return RequestCode.SEND_BATCH_MESSAGE
    if properties.get(MESSAGE_TYPE) == REPLY_MESSAGE_FLAG:
        return RequestCode.SEND_REPLY_MESSAGE_V2
    return RequestCode.SEND_MESSAGE_V2


class Producer:
    def __init__(self, remoting: RemotingClient, namesrv: NameServerClient,
                 group: str = "RMQCTL_PRODUCER", timeout: float = 3.0, retries: int = 2) -> None:
        self.remoting = remoting
        self.namesrv = namesrv
        self.group = group
        self.timeout = timeout
        self.retries = retries
        self.ids = UniqueIdGenerator()
        self._routes: dict[str, TopicRoute] = {}
        # A random first queue, as Java's sendWhichQueue starts: scripts that send one message
        # per process would otherwise all write queue 0.
        self._round_robin = itertools.count(random.randrange(1 << 31))

    async def route(self, topic: str) -> TopicRoute:
        """The topic's route; for a topic nobody created yet, TBW102's (the broker creates
        the topic on first send, as with every RocketMQ producer)."""
        cached = self._routes.get(topic)
        if cached is not None and time.monotonic() - cached.fetched < ROUTE_TTL:
            return cached
        try:
            route = await topic_route(self.namesrv, topic)
        except RemotingError as exc:
            if exc.code != ResponseCode.TOPIC_NOT_EXIST:
                raise
            template = await topic_route(self.namesrv, "TBW102")
            queues = [MessageQueue(topic, q.broker_name, q.queue_id)
                      for q in template.write_queues if q.queue_id < 4]
            route = TopicRoute(queues, list(queues), template.addrs, time.monotonic() - 25)
        if not route.write_queues:
            raise RemotingError(ResponseCode.TOPIC_NOT_EXIST,
                                f"No route info of this topic: {topic}")
        self._routes[topic] = route
        return route

    def _pick(self, route: TopicRoute, sharding_key: str | None, avoid: str | None
              ) -> MessageQueue:
        queues = route.write_queues
        if sharding_key is not None:
            return queues[abs(java_hash(sharding_key)) % len(queues)]
        for _ in range(len(queues)):
            q = queues[next(self._round_robin) % len(queues)]
            if q.broker_name != avoid:
                return q
        return queues[next(self._round_robin) % len(queues)]

    def _properties(self, tags: str | None, keys: list[str] | None,
                    props: dict[str, str] | None, delay_level: int) -> dict[str, str]:
        """The message's properties. A name or value (tags and keys are properties too)
        holding \\x01 or \\x02, the stored form's separators, would read back as other
        properties: refused."""
        out = dict(props or {})
        if tags:
            out[TAGS] = tags
        if keys:
            out[KEYS] = " ".join(keys)
        for name, value in out.items():
            if not name or any(sep in name or sep in value for sep in SEPARATORS):
                raise ValueError(f"property {quote(name)}: an empty name, or \\x01 or \\x02 "
                                 "(RocketMQ's property separators) in its name or value")
        if delay_level:
            out[DELAY] = str(delay_level)
        out[WAIT] = "true"
        out[UNIQ_KEY] = self.ids.next()
        return out

    async def send(self, topic: str, body: bytes, tags: str | None = None,
                   keys: list[str] | None = None, props: dict[str, str] | None = None,
                   delay_level: int = 0, sharding_key: str | None = None,
                   oneway: bool = False, compression: str | None = None,
                   queue: MessageQueue | None = None) -> SendResult:
        """`queue`: that queue, as Java's send(msg, mq), instead of one picked by round robin
        or `sharding_key`."""
        properties = self._properties(tags, keys, props, delay_level)
        sys_flag = 0
        if compression:
            body, sys_flag = compress_body(body, compression)
        return await self._send(topic, body, properties, sys_flag, sharding_key, oneway, False,
                                queue)

    async def send_batch(self, topic: str, bodies: Sequence[bytes | Outgoing],
                         tags: str | None = None, keys: list[str] | None = None,
                         props: dict[str, str] | None = None, sharding_key: str | None = None,
                         queue: MessageQueue | None = None) -> list[SendResult]:
        """One SEND_BATCH_MESSAGE; every message keeps its own id and queue offset. A batch
        has no delay level (Java's MessageBatch refuses one)."""
        if any(isinstance(b, Outgoing) and b.delay_level for b in bodies):
            raise ValueError("a batch cannot hold delayed messages (RocketMQ batches have no "
                             "delay level)")
        entries = [BatchEntry(b.body, self._properties(b.tags, b.keys, b.props, 0))
                   if isinstance(b, Outgoing) else
                   BatchEntry(b, self._properties(tags, keys, props, 0)) for b in bodies]
        first = await self._send(topic, encode_batch(entries), {WAIT: "true"}, 0, sharding_key,
                                 False, True, queue)
        offset_ids = first.offset_msg_id.split(",")
        return [SendResult(e.properties[UNIQ_KEY], offset_ids[i] if i < len(offset_ids) else "",
                           first.queue, first.queue_offset + i) for i, e in enumerate(entries)]

    async def _send(self, topic: str, body: bytes, properties: dict[str, str], sys_flag: int,
                    sharding_key: str | None, oneway: bool, batch: bool,
                    fixed: MessageQueue | None = None) -> SendResult:
        avoid = None
        last_error: Exception | None = None
        for _ in range(1 + (0 if oneway else self.retries)):
            route = await self.route(topic)
            queue = fixed or self._pick(route, sharding_key, avoid)
            addr = route.addrs.get(queue.broker_name)
            if addr is None:  # the fixed queue's broker left the route
                raise ConnectionLost(f"{queue.broker_name} is no longer in {topic}'s route")
            cmd = RemotingCommand.request(
                request_code(properties, batch),
                {"a": self.group, "b": topic, "c": "TBW102", "d": 4, "e": queue.queue_id,
                 "f": sys_flag, "g": int(time.time() * 1000), "h": 0,
                 "i": encode_properties(properties), "j": 0, "k": False, "m": batch},
                body, oneway=oneway)
            try:
                if oneway:
                    await self.remoting.invoke_oneway(addr, cmd)
                    return SendResult(properties.get(UNIQ_KEY, ""), "", queue, -1, "SEND_OK")
                resp = await self.remoting.invoke(addr, cmd, self.timeout)
            except (ConnectionLost, RemotingTimeout) as exc:
                last_error, avoid = exc, queue.broker_name
                self._routes.pop(topic, None)
                continue
            if resp.code in SENT_CODES:
                status = SENT_CODES[resp.code]
                return SendResult(properties.get(UNIQ_KEY, ""), resp.field("msgId") or "",
                                  MessageQueue(topic, queue.broker_name,
                                               int(resp.field("queueId") or queue.queue_id)),
                                  int(resp.field("queueOffset") or -1), status)
            last_error = RemotingError(resp.code, resp.remark or "")
            if resp.code not in RETRY_CODES:
                break
            avoid = queue.broker_name
        assert last_error is not None
        raise last_error

"""A POP consumer (RocketMQ 5.x over remoting): the broker picks the queues and keeps the
offsets; the consumer acks each message, or lets it come back after its invisible time."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rmqnode.errors import RemotingError
from rmqnode.message import POP_CK, MessageExt
from rmqnode.net.client import RemotingClient
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode, ResponseCode
from rmqnode.net.popinfo import NORMAL, ExtraInfo, parse_offset_info, real_topic
from rmqctl.client.consumer import parse_messages
from rmqctl.client.namesrv import NameServerClient
from rmqctl.client.producer import topic_route

INIT_MODE = {"first": 0, "last": 1}  # ConsumeInitMode MIN / MAX


@dataclass
class Popped:
    """A popped message and what it takes to ack it."""
    message: MessageExt
    info: ExtraInfo
    broker_addr: str


class PopConsumer:
    def __init__(self, remoting: RemotingClient, namesrv: NameServerClient, group: str,
                 timeout: float = 5.0) -> None:
        self.remoting = remoting
        self.namesrv = namesrv
        self.group = group
        self.timeout = timeout

    async def pop(self, topic: str, max_num: int = 32, invisible_ms: int = 60_000,
                  poll_ms: int = 0, expression: str = "*", init: str = "first",
                  queue_id: int = -1, expression_type: str = "TAG") -> list[Popped]:
        """One POP from every broker of the topic (each holds up to `poll_ms` when empty),
        filtered by tags or (expression_type SQL92) by the broker's SQL92 evaluation."""
        route = await topic_route(self.namesrv, topic)
        popped: list[Popped] = []
        for name, addr in sorted(route.addrs.items()):
            cmd = RemotingCommand.request(RequestCode.POP_MESSAGE, {
                "consumerGroup": self.group, "topic": topic, "queueId": queue_id,
                "maxMsgNums": max_num, "invisibleTime": invisible_ms, "pollTime": poll_ms,
                "bornTime": int(time.time() * 1000), "initMode": INIT_MODE[init],
                "expType": expression_type, "exp": expression or "*", "order": False})
            resp = await self.remoting.invoke(addr, cmd, self.timeout + poll_ms / 1000.0)
            if resp.code in (ResponseCode.POLLING_TIMEOUT, ResponseCode.POLLING_FULL):
                continue
            if resp.code != ResponseCode.SUCCESS:
                raise RemotingError(resp.code, resp.remark or "")
            popped += self._parse(resp, name, addr)
        return popped

    def _parse(self, resp: RemotingCommand, broker_name: str, addr: str) -> list[Popped]:
        """Each message's extra info: ready-made on revived messages (POP_CK), otherwise
        built from the response's startOffsetInfo, as Java's client does."""
        starts = parse_offset_info(resp.field("startOffsetInfo"))
        pop_time, invisible = resp.int_field("popTime"), resp.int_field("invisibleTime")
        revive_qid = resp.int_field("reviveQid")
        out = []
        for msg in parse_messages(resp.body):
            ck = msg.properties.get(POP_CK)
            if ck:
                info = ExtraInfo.parse(ck)
            else:
                info = ExtraInfo(int(starts[f"{NORMAL}@{msg.queue_id}"]), pop_time, invisible,
                                 revive_qid, NORMAL, broker_name, msg.queue_id,
                                 msg.queue_offset)
            out.append(Popped(msg, info, addr))
        return out

    def _fields(self, p: Popped) -> dict[str, object]:
        return {"consumerGroup": self.group,
                "topic": real_topic(p.message.topic, self.group, p.info.retry),
                "queueId": p.info.queue_id, "extraInfo": str(p.info),
                "offset": p.info.queue_offset}

    async def _ok(self, addr: str, cmd: RemotingCommand) -> RemotingCommand:
        resp = await self.remoting.invoke(addr, cmd, self.timeout)
        if resp.code != ResponseCode.SUCCESS:
            raise RemotingError(resp.code, resp.remark or "")
        return resp

    async def ack(self, p: Popped) -> None:
        await self._ok(p.broker_addr, RemotingCommand.request(RequestCode.ACK_MESSAGE,
                                                              self._fields(p)))

    async def change_invisible_time(self, p: Popped, invisible_ms: int) -> Popped:
        """Hide the message for `invisible_ms` from now; the returned handle acks it."""
        resp = await self._ok(p.broker_addr, RemotingCommand.request(
            RequestCode.CHANGE_MESSAGE_INVISIBLETIME,
            self._fields(p) | {"invisibleTime": invisible_ms}))
        i = p.info
        info = ExtraInfo(i.queue_offset, resp.int_field("popTime"),
                         resp.int_field("invisibleTime"), resp.int_field("reviveQid"), i.retry,
                         i.broker_name, i.queue_id, i.queue_offset)
        return Popped(p.message, info, p.broker_addr)

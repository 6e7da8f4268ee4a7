"""Request-reply as the Java 4.9.8 client does it: DefaultMQProducerImpl.request (the
requester), ClientRemotingProcessor.receiveReplyMessage (the reply the broker pushes to it)
and MessageUtil.createReplyMessage (what a replier sends back).

    requester = Requester(producer)
    reply = await requester.request("Orders", b"price?", timeout=3.0)
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid

from rmqnode.broker.reply import (CORRELATION_ID, MESSAGE_TTL, MESSAGE_TYPE,
                                  REPLY_MESSAGE_ARRIVE_TIME, REPLY_MESSAGE_FLAG, REPLY_TO_CLIENT,
                                  reply_topic)
from rmqnode.errors import RemotingError, RemotingTimeout
from rmqnode.message import CLUSTER, COMPRESSED_FLAG, MessageExt, decode_properties, decompress, \
    host_bytes
from rmqnode.net import fastjson
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode, ResponseCode
from rmqctl.client.producer import Producer, SendResult

CLIENT_INNER_PRODUCER = "CLIENT_INNER_PRODUCER"  # MixAll: every Java client's heartbeat has it


def is_request(msg: MessageExt) -> bool:
    """Whether a consumed message asks for a reply that createReplyMessage can build: it
    names its requester, and the broker stamped its cluster (the reply topic's prefix)."""
    return REPLY_TO_CLIENT in msg.properties and CLUSTER in msg.properties


def reply_properties(request: MessageExt) -> tuple[str, dict[str, str]]:
    """MessageUtil.createReplyMessage: the reply's topic and properties for `request`."""
    props = request.properties
    reply = {MESSAGE_TYPE: REPLY_MESSAGE_FLAG}
    for key in (CORRELATION_ID, REPLY_TO_CLIENT, MESSAGE_TTL):
        if key in props:
            reply[key] = props[key]
    return reply_topic(props[CLUSTER]), reply


async def send_reply(producer: Producer, request: MessageExt, body: bytes) -> SendResult:
    """Answer `request` with `body`: the producer sends it as SEND_REPLY_MESSAGE_V2, since
    its MSG_TYPE says it is a reply."""
    topic, props = reply_properties(request)
    return await producer.send(topic, body, props=props)


class Requester:
    """Sends requests through `producer` and waits for their replies, which the broker
    pushes on the same connections (PUSH_REPLY_MESSAGE_TO_CLIENT), matched by correlation id
    as Java's RequestFutureHolder matches them."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.client_id = f"{socket.gethostname()}@rmqctl-{os.getpid()}-requester"
        self._waiting: dict[str, asyncio.Future[MessageExt]] = {}
        producer.remoting.dispatcher.register(RequestCode.PUSH_REPLY_MESSAGE_TO_CLIENT,
                                              self._receive)

    async def announce(self, topic: str) -> None:
        """HEART_BEAT with this client id and producer group to every broker of `topic`:
        a broker finds the requester for a reply among the producers it heard from."""
        route = await self.producer.route(topic)
        body = fastjson.dumpb({"clientID": self.client_id, "consumerDataSet": [],
                               "producerDataSet": [{"groupName": self.producer.group},
                                                   {"groupName": CLIENT_INNER_PRODUCER}]})
        for addr in sorted(set(route.addrs.values())):
            resp = await self.producer.remoting.invoke(
                addr, RemotingCommand.request(RequestCode.HEART_BEAT, body=body),
                self.producer.timeout)
            if resp.code != ResponseCode.SUCCESS:
                raise RemotingError(resp.code, resp.remark or "")

    async def request(self, topic: str, body: bytes, timeout: float, tags: str | None = None,
                      keys: list[str] | None = None,
                      props: dict[str, str] | None = None) -> MessageExt:
        """Send a request (prepareSendRequest's properties) and return its reply; raises
        RemotingTimeout when none came within `timeout` seconds of the start."""
        correlation_id = str(uuid.uuid4())
        fut: asyncio.Future[MessageExt] = asyncio.get_running_loop().create_future()
        self._waiting[correlation_id] = fut
        started = time.monotonic()
        try:
            await self.announce(topic)
            await self.producer.send(topic, body, tags=tags, keys=keys, props={
                **(props or {}), CORRELATION_ID: correlation_id,
                REPLY_TO_CLIENT: self.client_id, MESSAGE_TTL: str(int(timeout * 1000))})
            left = timeout - (time.monotonic() - started)
            try:
                return await asyncio.wait_for(fut, max(left, 0.0))
            except asyncio.TimeoutError:
                raise RemotingTimeout(f"no reply to request {correlation_id} on {topic} within "
                                      f"{timeout:g} s") from None
        finally:
            self._waiting.pop(correlation_id, None)

    def _receive(self, cmd: RemotingCommand, conn: object) -> RemotingCommand:
        """receiveReplyMessage: the pushed reply as a message (body inflated), handed to the
        request waiting for its correlation id; one nobody waits for is dropped (Java logs
        it). SUCCESS unless the push cannot be read."""
        try:
            msg = self._reply_message(cmd)
        except (RemotingError, ValueError, OSError):
            return cmd.response(ResponseCode.SYSTEM_ERROR, "process reply message fail")
        waiting = self._waiting.get(msg.properties.get(CORRELATION_ID, ""))
        if waiting is not None and not waiting.done():
            waiting.set_result(msg)
        return cmd.response()

    @staticmethod
    def _reply_message(cmd: RemotingCommand) -> MessageExt:
        sys_flag = cmd.int_field("sysFlag", 0)
        body = cmd.body
        if sys_flag & COMPRESSED_FLAG:
            body = decompress(body, sys_flag)
        props = decode_properties(cmd.field("properties") or "")
        props[REPLY_MESSAGE_ARRIVE_TIME] = str(int(time.time() * 1000))
        return MessageExt(
            topic=cmd.field("topic") or "", queue_id=cmd.int_field("queueId", 0),
            queue_offset=0, commit_log_offset=0, store_size=0, body_crc=0,
            flag=cmd.int_field("flag", 0), sys_flag=0,
            born_timestamp=cmd.int_field("bornTimestamp", 0),
            born_host=host_bytes(cmd.field("bornHost") or "0.0.0.0:0"),
            store_timestamp=cmd.int_field("storeTimestamp", 0),
            store_host=host_bytes(cmd.field("storeHost") or "0.0.0.0:0"),
            reconsume_times=cmd.int_field("reconsumeTimes", 0),
            prepared_transaction_offset=0, body=body, properties=props)

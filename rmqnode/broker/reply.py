"""SEND_REPLY_MESSAGE (324) and SEND_REPLY_MESSAGE_V2 (325) (ReplyMessageProcessor).

Request-reply: a requester sends an ordinary message carrying CORRELATION_ID, REPLY_TO_CLIENT
(its client id) and TTL; a consumer answers it with a reply message to `<cluster>_REPLY_TOPIC`
(MessageUtil.createReplyMessage), which Java clients send with these codes. The broker pushes
the reply at once to the requester's connection (PUSH_REPLY_MESSAGE_TO_CLIENT, 326), found by
its client id among the producers that sent heartbeats, and stores it too unless
storeReplyMessageEnable is false. The replier's answer says whether the push got through: a
requester that is gone is SYSTEM_ERROR with Java's remark, even when the reply was stored.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

from rmqnode import log, validation
from rmqnode.broker.send import header_message, send_header
from rmqnode.errors import ConnectionLost, RemotingTimeout
from rmqnode.message import (MSG_REGION, TRACE_ON, decode_properties, encode_properties,
                             host_text)
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode, ResponseCode
from rmqnode.net.connection import Connection, Handler
from rmqnode.storage.store import Message
from rmqnode.validation import INT32

if TYPE_CHECKING:
    from rmqnode.broker.controller import BrokerController
    from rmqnode.broker.send import SendProcessor

# MessageConst / MixAll (4.9.8): the properties of a request and of its reply.
CORRELATION_ID = "CORRELATION_ID"
REPLY_TO_CLIENT = "REPLY_TO_CLIENT"
MESSAGE_TTL = "TTL"
MESSAGE_TYPE = "MSG_TYPE"
REPLY_MESSAGE_FLAG = "reply"
PUSH_REPLY_TIME = "PUSH_REPLY_TIME"
REPLY_MESSAGE_ARRIVE_TIME = "ARRIVE_TIME"
REPLY_TOPIC_POSTFIX = "REPLY_TOPIC"

# Broker2Client.callClient's timeout: how long a replier waits at most for the requester.
PUSH_TIMEOUT = 10.0

_log = log.get("rmqnode.broker")


def reply_topic(cluster: str) -> str:
    """MixAll.getReplyTopic: where replies to requests stored in `cluster` go."""
    return f"{cluster}_{REPLY_TOPIC_POSTFIX}"


class ReplyProcessor:
    def __init__(self, broker: BrokerController, sender: SendProcessor) -> None:
        self.broker = broker
        self.sender = sender

    def table(self) -> dict[int, Handler]:
        return {RequestCode.SEND_REPLY_MESSAGE: self.handle,
                RequestCode.SEND_REPLY_MESSAGE_V2: self.handle}

    async def handle(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        """Checked as a send is (msgCheck), pushed, then stored: Java's order, so the
        requester has its reply before the disk has it. Unlike Java, the stored copy keeps
        the sysFlag the replier sent, so a compressed reply body reads back inflated."""
        h = send_header(cmd)
        topic_config, registering, queue_id = self.sender.msg_check(h, conn)
        if registering is not None:
            await self.broker.registered(registering)
        message = dataclasses.replace(
            header_message(h, conn, topic_config.topicName, queue_id), body=cmd.body,
            properties=decode_properties(h.get("properties") or ""),
            flag=validation.integer(h.get("flag"), "flag", *INT32, default=0))
        remark = await self._push(h, conn, message)
        fields = {MSG_REGION: "DefaultRegion", TRACE_ON: "true"}
        if remark is None:
            # Java's "0" ids when nothing is stored: the client's decoder needs numbers.
            fields |= {"msgId": "0", "queueId": str(queue_id), "queueOffset": "0"}
        if self.broker.config.storeReplyMessageEnable:
            result = await self.broker.store.put_message(message)
            if result.ok:
                assert result.appended is not None
                self.broker.stats.put(message.topic, 1, result.appended.wrote_bytes)
                fields |= {"msgId": ",".join(result.msg_ids), "queueId": str(queue_id),
                           "queueOffset": str(result.appended.queue_offset)}
            else:  # the answer is the push's: Java only logs a reply it could not store
                _log.warning("reply.store_failed", topic=message.topic, status=result.status,
                             remark=result.remark)
        response = cmd.response(ResponseCode.SUCCESS if remark is None
                                else ResponseCode.SYSTEM_ERROR, remark)
        response.ext_fields = fields
        return response

    async def _push(self, h: dict[str, str], conn: Connection, message: Message) -> str | None:
        """PUSH_REPLY_MESSAGE_TO_CLIENT to the requester named by REPLY_TO_CLIENT; None when
        it answered SUCCESS, else the remark Java gives the replier."""
        # Read before anything else, so that a bad one is refused whoever the requester is.
        queue_nums = validation.integer(h.get("defaultTopicQueueNums"), "defaultTopicQueueNums",
                                        *INT32, default=4)
        now = str(int(time.time() * 1000))
        push = RemotingCommand.request(RequestCode.PUSH_REPLY_MESSAGE_TO_CLIENT, {
            "producerGroup": h.get("producerGroup"), "topic": message.topic,
            "defaultTopic": h.get("defaultTopic"),
            "defaultTopicQueueNums": queue_nums,
            "queueId": message.queue_id, "sysFlag": message.sys_flag,
            "bornTimestamp": message.born_timestamp, "flag": message.flag,
            "properties": encode_properties({**message.properties, PUSH_REPLY_TIME: now}),
            "reconsumeTimes": message.reconsume_times,
            "unitMode": (h.get("unitMode") or "false").lower() == "true",
            "bornHost": host_text(message.born_host), "storeHost": self.broker.addr,
            "storeTimestamp": now}, message.body)
        sender_id = message.properties.get(REPLY_TO_CLIENT)
        if sender_id is None:
            _log.warning("reply.no_requester", peer=conn.peer)
            return f"reply message properties[{REPLY_TO_CLIENT}] is null"
        target = self.find_channel(sender_id)
        if target is None:
            _log.warning("reply.requester_gone", client=validation.quote(sender_id))
            return f"push reply message fail, channel of <{sender_id}> not found."
        failed = f"push reply message to {sender_id}fail."  # sic: Java's remark
        try:
            answer = await target.request(push, PUSH_TIMEOUT)
        except (ConnectionLost, RemotingTimeout) as exc:
            _log.warning("reply.push_failed", client=validation.quote(sender_id), error=exc)
            return failed
        if answer.code != ResponseCode.SUCCESS:
            _log.warning("reply.push_refused", client=validation.quote(sender_id),
                         code=answer.code, remark=answer.remark)
            return failed
        return None

    def find_channel(self, client_id: str) -> Connection | None:
        """ProducerManager.findChannel: the open connection whose heartbeats named this
        client id with a producer group, the most recently heard from if there are several
        (Java keeps the last one registered)."""
        found = [c for channels in self.broker.clients.producers.values()
                 for c in channels.values() if c.client_id == client_id and c.conn.is_open]
        return max(found, key=lambda c: c.last_update).conn if found else None

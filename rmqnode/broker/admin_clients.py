"""Admin requests a broker relays to one consumer (AdminBrokerProcessor.callConsumer):
GET_CONSUMER_RUNNING_INFO (mqadmin consumerStatus) and CONSUME_MESSAGE_DIRECTLY (mqadmin
consumeMessage -d, which also sends the message). The broker knows the consumer's connection
from its heartbeats; the client's answer comes back as it was given, or Java's error when the
client is not online, too old, or does not answer in time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rmqnode import validation
from rmqnode.errors import ConnectionLost, RemotingError, RemotingTimeout
from rmqnode.message import decode_offset_msg_id
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode, ResponseCode
from rmqnode.net.connection import Connection, Handler

if TYPE_CHECKING:
    from rmqnode.broker.clients import ClientChannel
    from rmqnode.broker.controller import BrokerController

CALL_CLIENT_TIMEOUT = 10.0  # Broker2Client.callClient
# MQVersion.Version.V3_1_8_SNAPSHOT.ordinal(): older clients cannot answer these requests.
MIN_CLIENT_VERSION = 77


class ClientCallProcessor:
    def __init__(self, broker: BrokerController) -> None:
        self.broker = broker

    def table(self) -> dict[int, Handler]:
        return {RequestCode.GET_CONSUMER_RUNNING_INFO: self.running_info,
                RequestCode.CONSUME_MESSAGE_DIRECTLY: self.consume_directly}

    async def running_info(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        """The consumer's ConsumerRunningInfo (its properties, subscriptions, per-queue
        process state and consume TPS; with jstackEnable its threads), from the consumer."""
        return await self._call(RequestCode.GET_CONSUMER_RUNNING_INFO, cmd, cmd.body)

    async def consume_directly(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        """Hand the consumer one stored message, by its offset message id, to consume now;
        the header tells the client which broker holds it."""
        msg_id = cmd.require("msgId")
        try:
            _, offset = decode_offset_msg_id(msg_id)
        except ValueError as exc:
            raise RemotingError(ResponseCode.SYSTEM_ERROR, str(exc)) from None
        raw = self.broker.store.raw_message(offset)
        if raw is None:
            raise RemotingError(ResponseCode.SYSTEM_ERROR, "can not find message by the id "
                                f"{validation.quote(msg_id)}")
        cmd.ext_fields = (cmd.ext_fields or {}) | {"brokerName": self.broker.config.brokerName}
        return await self._call(RequestCode.CONSUME_MESSAGE_DIRECTLY, cmd, raw)

    def _channel(self, group: str, client_id: str) -> ClientChannel | None:
        info = self.broker.clients.consumers.get(group)
        if info is None:
            return None
        return next((c for c in info.channels.values()
                     if c.client_id == client_id and c.conn.is_open), None)

    async def _call(self, code: int, cmd: RemotingCommand, body: bytes) -> RemotingCommand:
        group, client_id = cmd.require("consumerGroup"), cmd.require("clientId")
        channel = self._channel(group, client_id)
        if channel is None:
            return cmd.response(ResponseCode.SYSTEM_ERROR,
                                f"The Consumer <{group}> <{client_id}> not online")
        if channel.version < MIN_CLIENT_VERSION:
            return cmd.response(ResponseCode.SYSTEM_ERROR, f"The Consumer <{client_id}> Version "
                                f"<{channel.version}> too low to finish, please upgrade it "
                                "to V3_1_8_SNAPSHOT")
        ask = RemotingCommand.request(code, dict(cmd.ext_fields or {}), body)
        try:
            answer = await channel.conn.request(ask, timeout=CALL_CLIENT_TIMEOUT)
        except RemotingTimeout as exc:
            return cmd.response(ResponseCode.CONSUME_MSG_TIMEOUT,
                                f"consumer <{group}> <{client_id}> Timeout: {exc}")
        except ConnectionLost as exc:
            return cmd.response(ResponseCode.SYSTEM_ERROR,
                                f"invoke consumer <{group}> <{client_id}> Exception: {exc}")
        return cmd.response(answer.code, answer.remark, answer.ext_fields, answer.body)

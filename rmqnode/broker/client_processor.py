"""Client management and offsets (ClientManageProcessor, ConsumerManageProcessor,
RebalanceLockManager): HEART_BEAT, UNREGISTER_CLIENT, GET_CONSUMER_LIST_BY_GROUP,
QUERY/UPDATE_CONSUMER_OFFSET, LOCK/UNLOCK_BATCH_MQ, CHECK_CLIENT_CONFIG."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rmqnode import log, validation
from rmqnode.broker.clients import (CONSUME_FROM, CONSUME_TYPES, MESSAGE_MODELS, ClientChannel,
                                    Subscription, compile_filter, enum_name, is_tag_type,
                                    unsupported)
from rmqnode.broker.sql92 import FilterError
from rmqnode.broker.topics import PERM_READ, PERM_WRITE
from rmqnode.errors import RemotingError
from rmqnode.message import RETRY_PREFIX
from rmqnode.net import fastjson
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode, ResponseCode
from rmqnode.net.connection import Connection, Handler

if TYPE_CHECKING:
    from rmqnode.broker.controller import BrokerController

_log = log.get("rmqnode.broker")

LOCK_TTL = 60.0


def body_json(cmd: RemotingCommand) -> dict[str, Any]:
    try:
        data = fastjson.loads(cmd.body) if cmd.body else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise RemotingError(ResponseCode.SYSTEM_ERROR, f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RemotingError(ResponseCode.SYSTEM_ERROR, "body is not a JSON object")
    return data


def objects(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """A body's list of JSON objects (consumerDataSet, mqSet, ...); absent is empty."""
    items = data.get(key) or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise RemotingError(ResponseCode.SYSTEM_ERROR, f"{key} is not a list of objects")
    return items


def text(data: dict[str, Any], key: str, limit: int = 255) -> str:
    """A string field of a body (a client id, a broker name), at most `limit` characters."""
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise RemotingError(ResponseCode.SYSTEM_ERROR, f"{key} is not a string of at most "
                            f"{limit} characters: {validation.quote(value)}")
    return value


def number(data: dict[str, Any], key: str, lo: int, hi: int) -> int:
    """A number field of a body: a JSON number, or a decimal string as the C++ client sends
    some (subVersion), within [lo, hi]; absent is 0."""
    value = data.get(key) or 0
    if isinstance(value, str):
        return validation.integer(value, key, lo, hi)
    if type(value) is not int or not lo <= value <= hi:
        raise RemotingError(ResponseCode.SYSTEM_ERROR, f"{key} is not a whole number in "
                            f"[{lo}, {hi}]: {validation.quote(value)}")
    return value


def subscription(data: dict[str, Any]) -> Subscription:
    """SubscriptionData from a heartbeat, its topic a valid name and its fields typed."""
    version = number(data, "subVersion", *validation.INT64)
    return Subscription.parse(validation.topic(data.get("topic")),
                              text(data, "subString", 64 * 1024), version,
                              text(data, "expressionType") or None)


def mq_key(mq: dict[str, Any]) -> tuple[str, str, int]:
    return (validation.topic(mq.get("topic")), text(mq, "brokerName"),
            number(mq, "queueId", 0, validation.INT32[1]))


class ClientProcessor:
    def __init__(self, broker: BrokerController) -> None:
        self.broker = broker
        self.locks: dict[str, dict[tuple[str, str, int], tuple[str, float]]] = {}

    def table(self) -> dict[int, Handler]:
        rc = RequestCode
        return {rc.HEART_BEAT: self.heartbeat, rc.UNREGISTER_CLIENT: self.unregister,
                rc.GET_CONSUMER_LIST_BY_GROUP: self.consumer_list,
                rc.QUERY_CONSUMER_OFFSET: self.query_offset,
                rc.UPDATE_CONSUMER_OFFSET: self.update_offset,
                rc.LOCK_BATCH_MQ: self.lock, rc.UNLOCK_BATCH_MQ: self.unlock,
                rc.CHECK_CLIENT_CONFIG: self.check_client_config}

    # -- membership --------------------------------------------------------------------

    def heartbeat(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        data = body_json(cmd)
        client_id = text(data, "clientID")
        consumers = [(validation.group(c.get("groupName")),
                      [subscription(s) for s in objects(c, "subscriptionDataSet")], c)
                     for c in objects(data, "consumerDataSet")]
        producers = [validation.group(p.get("groupName")) for p in objects(data, "producerDataSet")]
        clients = self.broker.clients
        conn.attrs["client_id"] = client_id
        for group, subs, consumer in consumers:
            config = self.broker.groups.find(group)
            if config is None:
                continue
            self.broker.ensure_topic(RETRY_PREFIX + group, int(config.get("retryQueueNums", 1)),
                                     PERM_READ | PERM_WRITE)
            changed = clients.register_consumer(
                group, ClientChannel(conn, client_id, cmd.language, cmd.version),
                enum_name(consumer.get("consumeType"), CONSUME_TYPES, "CONSUME_PASSIVELY"),
                enum_name(consumer.get("messageModel"), MESSAGE_MODELS, "CLUSTERING"),
                enum_name(consumer.get("consumeFromWhere"), CONSUME_FROM,
                          "CONSUME_FROM_LAST_OFFSET"), subs)
            if changed and config.get("notifyConsumerIdsChangedEnable", True):
                self.broker.notify_consumers_changed(group)
        for group in producers:
            clients.register_producer(group,
                                      ClientChannel(conn, client_id, cmd.language, cmd.version))
        return cmd.response()

    def unregister(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        changed = self.broker.clients.unregister(conn, cmd.field("producerGroup"),
                                                 cmd.field("consumerGroup"))
        for group in changed:
            self.broker.notify_consumers_changed(group)
        return cmd.response(fields={})

    def consumer_list(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        group = cmd.require("consumerGroup")
        info = self.broker.clients.consumers.get(group)
        if info is None or not info.channels:
            return cmd.response(ResponseCode.SYSTEM_ERROR, f"no consumer for this group, {group}")
        return cmd.response(fields={},
                            body=fastjson.dumpb({"consumerIdList": info.client_ids()}))

    def check_client_config(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        """ClientManageProcessor.checkClientConfig: a Java consumer with a property filter asks
        every broker before it starts, so a bad expression fails its start with the parser's
        message (SUBSCRIPTION_PARSE_FAILED) instead of pulls that find no filter data."""
        data = body_json(cmd)
        sub = data.get("subscriptionData") or {}
        if not isinstance(sub, dict):
            raise RemotingError(ResponseCode.SYSTEM_ERROR, "subscriptionData is not an object")
        kind = text(sub, "expressionType")
        if is_tag_type(kind):
            return cmd.response()
        if not self.broker.config.enablePropertyFilter:
            return cmd.response(ResponseCode.SYSTEM_ERROR, unsupported(kind))
        try:
            compile_filter(kind, text(sub, "subString", 64 * 1024))
        except FilterError as exc:
            return cmd.response(ResponseCode.SUBSCRIPTION_PARSE_FAILED, str(exc) or None)
        return cmd.response()

    # -- offsets -----------------------------------------------------------------------

    def query_offset(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        group, topic = cmd.require("consumerGroup"), cmd.require("topic")
        queue_id = cmd.int_field("queueId", lo=0, hi=validation.INT32[1])
        offset = self.broker.offsets.query(group, topic, queue_id)
        if offset >= 0:
            return cmd.response(fields={"offset": offset})
        # A group new to a queue whose first message is still there starts at 0, whatever
        # consumeFromWhere says: that is how Java brokers answer.
        if self.broker.store.min_offset(topic, queue_id) <= 0 and \
                cmd.bool_field("setZeroIfNotFound", True):
            return cmd.response(fields={"offset": 0})
        return cmd.response(ResponseCode.QUERY_NOT_FOUND,
                            "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first")

    def update_offset(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        self.broker.offsets.commit(cmd.require("consumerGroup"), cmd.require("topic"),
                                   cmd.int_field("queueId", lo=0, hi=validation.INT32[1]),
                                   cmd.int_field("commitOffset"))
        return cmd.response(fields={})

    # -- orderly locks -----------------------------------------------------------------

    def lock(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        data = body_json(cmd)
        group, client = validation.group(data.get("consumerGroup")), text(data, "clientId")
        keys = [mq_key(mq) for mq in objects(data, "mqSet")]
        table = self.locks.setdefault(group, {})
        now = time.monotonic()
        granted = []
        for key in keys:
            owner = table.get(key)
            if owner is None or owner[0] == client or now - owner[1] > LOCK_TTL:
                table[key] = (client, now)
                granted.append({"brokerName": key[1], "queueId": key[2], "topic": key[0]})
        return cmd.response(body=fastjson.dumpb({"lockOKMQSet": granted}))

    def unlock(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        data = body_json(cmd)
        group, client = validation.group(data.get("consumerGroup")), text(data, "clientId")
        table = self.locks.get(group, {})
        for key in [mq_key(mq) for mq in objects(data, "mqSet")]:
            owner = table.get(key)
            if owner is not None and owner[0] == client:
                del table[key]
        return cmd.response()

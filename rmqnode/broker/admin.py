"""Broker admin requests (AdminBrokerProcessor), as mqadmin and rmqctl send them: topics,
subscription groups, connections, config changes, stats, offset resets. Runtime info and the
config listing are in runtime.py, consume progress in consume_stats.py, requests relayed to
a consumer in admin_clients.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rmqnode import log, validation
from rmqnode.broker.consume_stats import mq_key
from rmqnode.broker.groups import checked_group
from rmqnode.broker.client_processor import body_json
from rmqnode.broker.topics import MESSAGE_TYPE, MESSAGE_TYPES, TopicConfig
from rmqnode.config import ConfigError, check, field_names, read_properties
from rmqnode.errors import ConnectionLost, RemotingError, RemotingTimeout
from rmqnode.net import fastjson
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode, ResponseCode
from rmqnode.net.connection import Connection, Handler
from rmqnode.net.fastjson import ObjectKey

if TYPE_CHECKING:
    from rmqnode.broker.controller import BrokerController
    from rmqnode.storage.store import MessageStore

_log = log.get("rmqnode.broker")

# The settings UPDATE_BROKER_CONFIG may change: those the broker reads each time it uses them.
# Others (identity, ports, paths, file sizes, flush type) are fixed once the store and the
# server are up; Java accepts some of them and then misbehaves (a ghost broker in routes).
RUNTIME_KEYS = frozenset({
    "brokerPermission", "autoCreateSubscriptionGroup", "namesrvAddr",
    "registerBrokerTimeoutMills", "messageIndexEnable", "syncFlushTimeout", "maxMessageSize",
    "fileReservedTime", "deleteWhen", "diskMaxUsedSpaceRatio", "diskSpaceWarningLevelRatio",
    "longPollingEnable", "shortPollingTimeMills", "popFromRetryProbability", "reviveInterval",
    "transactionTimeOut", "transactionCheckMax", "transactionCheckInterval",
    "storeReplyMessageEnable", "enablePropertyFilter", "slaveReadEnable",
    "accessMessageInMemoryMaxRatio", "offsetCheckInSlave"})


def _json(obj: object) -> bytes:
    return fastjson.dumpb(obj)


_FROM_SLAVE = ("Can't modify topic or subscription group from slave broker, please execute it "
               "from master broker.")


class AdminProcessor:
    def __init__(self, broker: BrokerController) -> None:
        self.broker = broker

    def table(self) -> dict[int, Handler]:
        rc = RequestCode
        return {rc.UPDATE_AND_CREATE_TOPIC: self.update_topic,
                rc.DELETE_TOPIC_IN_BROKER: self.delete_topic,
                rc.GET_ALL_TOPIC_CONFIG: self.all_topics,
                rc.GET_TOPIC_STATS_INFO: self.topic_stats,
                rc.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: self.update_group,
                rc.DELETE_SUBSCRIPTIONGROUP: self.delete_group,
                rc.GET_ALL_SUBSCRIPTIONGROUP_CONFIG: self.all_groups,
                rc.GET_ALL_CONSUMER_OFFSET: self.all_offsets,
                rc.GET_ALL_DELAY_OFFSET: self.all_delay_offsets,
                rc.GET_CONSUMER_CONNECTION_LIST: self.consumer_connections,
                rc.GET_PRODUCER_CONNECTION_LIST: self.producer_connections,
                rc.QUERY_TOPIC_CONSUME_BY_WHO: self.consumed_by,
                rc.UPDATE_BROKER_CONFIG: self.update_config,
                rc.INVOKE_BROKER_TO_RESET_OFFSET: self.reset_offset,
                rc.VIEW_BROKER_STATS_DATA: self.stats_data,
                rc.INVOKE_BROKER_TO_GET_CONSUMER_STATUS: self.consumer_status,
                rc.DELETE_EXPIRED_COMMITLOG: self.delete_expired}

    # -- topics --------------------------------------------------------------------------

    def _refuse_on_slave(self) -> None:
        """validateSlave: a slave's topics and groups are its master's copies (slave_sync)."""
        if self.broker.is_slave:
            raise RemotingError(ResponseCode.SYSTEM_ERROR, _FROM_SLAVE)

    async def update_topic(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        """Answered once the name servers know the topic, as in Java, so that a script can
        use the topic the moment its creation returns."""
        self._refuse_on_slave()
        topic = self._topic(cmd)
        int32 = validation.INT32
        filter_type = cmd.field("topicFilterType") or "SINGLE_TAG"
        if filter_type not in ("SINGLE_TAG", "MULTI_TAG"):
            return cmd.response(ResponseCode.SYSTEM_ERROR, "topicFilterType must be SINGLE_TAG "
                                f"or MULTI_TAG, not {validation.quote(filter_type)}")
        current = self.broker.topics.table.get(topic)
        attributes = altered_attributes(cmd.field("attributes"),
                                        None if current is None else current.attributes)
        await self.broker.registered(self.broker.create_topic(TopicConfig(
            topic, cmd.int_field("readQueueNums", lo=0, hi=int32[1]),
            cmd.int_field("writeQueueNums", lo=0, hi=int32[1]), cmd.int_field("perm", lo=0, hi=7),
            filter_type, cmd.int_field("topicSysFlag", 0, *int32), cmd.bool_field("order"),
            attributes)))
        # Java leaves its default remark on this success; mqadmin users see the same.
        return cmd.response(ResponseCode.SUCCESS, "not set any response code")

    def _topic(self, cmd: RemotingCommand) -> str:
        """The topic of a create or delete: a valid name, not one of the broker's own."""
        topic = validation.topic(cmd.field("topic"))
        if self.broker.topics.is_system(topic) or topic == self.broker.config.brokerClusterName:
            raise RemotingError(ResponseCode.SYSTEM_ERROR,
                                f"The topic[{topic}] is conflict with system topic.")
        return topic

    def delete_topic(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        self._refuse_on_slave()
        topic = self._topic(cmd)
        broker = self.broker
        if broker.topics.table.pop(topic, None) is not None:
            broker.topics.data_version.next()
            broker.topics.persist()
        broker.offsets.remove_topic(topic)
        broker.store.delete_topic(topic)
        broker.spawn_register()
        return cmd.response()

    def all_topics(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        topics = self.broker.topics
        return cmd.response(body=_json({"dataVersion": topics.data_version.to_json(),
                                        "topicConfigTable": {n: t.to_json() for n, t in
                                                             topics.table.items()}}))

    def topic_stats(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        topic = cmd.require("topic")
        config = self.broker.topics.table.get(topic)
        if config is None:
            return cmd.response(ResponseCode.TOPIC_NOT_EXIST, f"topic[{topic}] not exist")
        store = self.broker.store
        table = {}
        for queue_id in range(config.writeQueueNums):
            high = store.max_offset(topic, queue_id)
            entry = store.find_queue(topic, queue_id)
            last = entry.entry(high - 1) if entry is not None and high > 0 else None
            table[self._mq(topic, queue_id)] = {
                "lastUpdateTimestamp": (store.store_time(last[0]) or 0) if last else 0,
                "maxOffset": high, "minOffset": store.min_offset(topic, queue_id)}
        return cmd.response(body=_json({"offsetTable": table}))

    def _mq(self, topic: str, queue_id: int) -> ObjectKey:
        return mq_key(self.broker.config.brokerName, topic, queue_id)

    # -- groups and connections ------------------------------------------------------------

    def update_group(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        self._refuse_on_slave()
        config = checked_group(body_json(cmd))
        self.broker.groups.update(config)
        self.broker.groups.persist()
        return cmd.response()

    def delete_group(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        self._refuse_on_slave()
        group = validation.group(cmd.field("groupName"))
        self.broker.groups.delete(group)
        self.broker.groups.persist()
        if cmd.bool_field("cleanOffset"):
            self.broker.offsets.remove_group(group)
        return cmd.response()

    def all_groups(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        groups = self.broker.groups
        return cmd.response(body=_json({"dataVersion": groups.data_version.to_json(),
                                        "subscriptionGroupTable": groups.table}))

    def all_offsets(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        """consumerOffset.json's content, as a slave copies it (SlaveSynchronize)."""
        return cmd.response(body=_json(self.broker.offsets.encode()))

    def all_delay_offsets(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        """delayOffset.json's content, as a slave copies it (SlaveSynchronize)."""
        return cmd.response(body=_json(self.broker.schedule.offsets.encode()))

    def consumer_connections(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        group = cmd.require("consumerGroup")
        info = self.broker.clients.consumers.get(group)
        if info is None or not info.channels:
            return cmd.response(ResponseCode.CONSUMER_NOT_ONLINE,
                                f"the consumer group[{group}] not online")
        return cmd.response(body=_json({
            "connectionSet": [c.to_json() for c in info.channels.values()],
            "consumeFromWhere": info.consume_from_where, "consumeType": info.consume_type,
            "messageModel": info.message_model,
            "subscriptionTable": {t: s.to_json() for t, s in info.subscriptions.items()}}))

    def producer_connections(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        group = cmd.require("producerGroup")
        channels = self.broker.clients.producers.get(group)
        if not channels:
            return cmd.response(ResponseCode.SYSTEM_ERROR, f"the producer group[{group}] not exist")
        return cmd.response(body=_json({"connectionSet": [c.to_json()
                                                          for c in channels.values()]}))

    def consumed_by(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        topic = cmd.require("topic")
        groups = set(self.broker.offsets.groups_of_topic(topic))
        groups |= {g for g, info in self.broker.clients.consumers.items()
                   if topic in info.subscriptions}
        return cmd.response(body=_json({"groupList": sorted(groups)}))

    # -- broker ----------------------------------------------------------------------------

    def update_config(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        """All or nothing: every key known and changeable at run time, every value valid, or
        nothing changes and the answer names the first offender."""
        try:
            props = read_properties(cmd.body.decode("utf-8"))
        except UnicodeDecodeError:
            return cmd.response(ResponseCode.SYSTEM_ERROR, "the config body is not UTF-8")
        config = self.broker.config
        unknown = sorted(k for k in props if k not in field_names(config))
        if unknown:
            return cmd.response(ResponseCode.SYSTEM_ERROR, "unknown broker config key(s): "
                                + ", ".join(validation.quote(k) for k in unknown[:5]))
        fixed = sorted(k for k in props if k not in RUNTIME_KEYS)
        if fixed:
            return cmd.response(ResponseCode.NO_PERMISSION, "Can not update config in black "
                                f"list: {', '.join(fixed)} cannot change while the broker runs; "
                                "set it in broker.conf and restart.")
        try:
            values = check(config, props, "UPDATE_BROKER_CONFIG")
        except ConfigError as exc:
            return cmd.response(ResponseCode.SYSTEM_ERROR, str(exc))
        permission = config.brokerPermission
        for name, value in values.items():
            setattr(config, name, value)
        _log.info("broker.config_updated", peer=conn.peer, keys=",".join(sorted(values)))
        if config.brokerPermission != permission:  # routes change: tell the name servers now
            self.broker.topics.data_version.next()
            self.broker.spawn_register()
        return cmd.response()

    def stats_data(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        """VIEW_BROKER_STATS_DATA: one item's last minute, hour and day."""
        name, key = cmd.require("statsName"), cmd.require("statsKey")
        data = self.broker.stats.data(name, key)
        if data is None:
            return cmd.response(ResponseCode.SYSTEM_ERROR,
                                f"The stats <{name}> <{key}> not exist")
        return cmd.response(body=_json(data))

    def delete_expired(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        self.broker.store.delete_expired_files()
        return cmd.response()

    # -- offsets -------------------------------------------------------------------------

    async def consumer_status(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        """Ask every live member of a group (GET_CONSUMER_STATUS_FROM_CLIENT) for its offsets
        on a topic; `clientAddr` narrows it to one member. Members that do not answer within
        5 s are left out, as Java does."""
        topic, group = cmd.require("topic"), cmd.require("group")
        only = cmd.field("clientAddr")
        info = self.broker.clients.consumers.get(group)
        if info is None or not info.channels:
            return cmd.response(ResponseCode.SYSTEM_ERROR,
                                f"No Any Consumer online in the consumer group: [{group}]")
        table = {}
        for channel in list(info.channels.values()):
            if only and channel.conn.peer != only:
                continue
            ask = RemotingCommand.request(RequestCode.GET_CONSUMER_STATUS_FROM_CLIENT,
                                          {"topic": topic, "group": group,
                                           "clientAddr": channel.conn.peer})
            try:
                answer = await channel.conn.request(ask, timeout=5.0)
            except (ConnectionLost, RemotingTimeout):
                continue
            if answer.code == ResponseCode.SUCCESS and answer.body:
                status = fastjson.loads(answer.body).get("messageQueueTable", {})
                table[channel.client_id] = status
        return cmd.response(body=_json({"consumerTable": table}))

    def reset_offset(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        """Move a group's offsets on a topic to a time (-1: the end) or, with `offset`, to
        that offset (clamped to what each queue holds), on every queue or on `queueId`; tell
        live members (RESET_CONSUMER_CLIENT_OFFSET) and store the new offsets here too, so a
        group with nobody online moves as well. Besides Java's offsetTable the answer lists
        the members told (`notified`), which Java's readers of ResetOffsetBody ignore."""
        broker = self.broker
        topic, group = validation.topic(cmd.field("topic")), validation.group(cmd.field("group"))
        if broker.groups.find(group, auto_create=False) is None and \
                group not in broker.clients.consumers:
            return cmd.response(ResponseCode.SYSTEM_ERROR,
                                f"THe consumer group <{group}> not exist")
        config = broker.topics.table.get(topic)
        if config is None:
            return cmd.response(ResponseCode.SYSTEM_ERROR, f"[reset-offset] topic[{topic}] "
                                f"not exist, please check topic name")
        timestamp = cmd.int_field("timestamp")
        only_queue = cmd.int_field("queueId", -1, -1, validation.INT32[1])
        exact = cmd.int_field("offset", lo=0) if cmd.field("offset") is not None else None
        offsets = {}
        for queue_id in range(config.readQueueNums):
            if only_queue >= 0 and queue_id != only_queue:
                continue
            offsets[queue_id] = reset_target(broker.store, topic, queue_id, timestamp, exact)
            broker.offsets.commit(group, topic, queue_id, offsets[queue_id])
            broker.order_info.clear_block(topic, group, queue_id)  # as resetPopOffset
        broker.offsets.persist()
        table = {self._mq(topic, q): o for q, o in offsets.items()}
        info = broker.clients.consumers.get(group)
        notified = []
        for channel in [c for c in info.channels.values() if c.conn.is_open] if info else []:
            body = (_json({"offsetTable": [{"brokerName": broker.config.brokerName,
                                            "offset": o, "queueId": q, "topic": topic}
                                           for q, o in offsets.items()]})
                    if channel.language == "CPP" else _json({"offsetTable": table}))
            channel.conn.oneway(RemotingCommand.request(
                RequestCode.RESET_CONSUMER_CLIENT_OFFSET,
                {"topic": topic, "group": group, "timestamp": timestamp,
                 "isForce": cmd.bool_field("isForce", True)}, body))
            notified.append(channel.client_id)
        return cmd.response(body=_json({"offsetTable": table, "notified": notified}))


def altered_attributes(change: str | None, current: dict[str, str] | None) -> dict[str, str]:
    """A topic's attributes after a 5.x UPDATE_AND_CREATE_TOPIC's `attributes` field
    (AttributeParser + AttributeUtil.alterCurrentAttributes): `+key=value` sets, `-key`
    removes (not on a topic being created, `current` None), comma separated; no field keeps
    what the topic has. The only attribute is message.type, one of MESSAGE_TYPES. A wrong
    change raises Java's SYSTEM_ERROR and remark, and changes nothing."""
    attributes = dict(current or {})
    if not change:
        return attributes
    seen: set[str] = set()
    for item in change.split(","):
        key, equal, value = item.partition("=")
        if equal and not key.startswith("+") or not equal and not key.startswith("-"):
            raise RemotingError(ResponseCode.SYSTEM_ERROR,
                                f"{'add/alter' if equal else 'delete'} attribute format is "
                                f"wrong: {validation.quote(key)}")
        name = key[1:]
        if not name:
            raise RemotingError(ResponseCode.SYSTEM_ERROR, "kv string format wrong.")
        if name in seen:
            raise RemotingError(ResponseCode.SYSTEM_ERROR,
                                f"key duplication: {validation.quote(name)}")
        seen.add(name)
        if name != MESSAGE_TYPE:
            raise RemotingError(ResponseCode.SYSTEM_ERROR,
                                f"unsupported key: {validation.quote(name)}")
        if not equal:
            if current is None:
                raise RemotingError(ResponseCode.SYSTEM_ERROR, "only add attribute is supported "
                                    f"while creating topic. key: {name}")
            if attributes.pop(name, None) is None:
                raise RemotingError(ResponseCode.SYSTEM_ERROR,
                                    f"attempt to delete a nonexistent key: {name}")
        elif value not in MESSAGE_TYPES:
            raise RemotingError(ResponseCode.SYSTEM_ERROR,
                                f"value is not in set: [{', '.join(MESSAGE_TYPES)}]")
        else:
            attributes[name] = value
    return attributes


def reset_target(store: MessageStore, topic: str, queue_id: int, timestamp: int,
                 offset: int | None = None) -> int:
    """Where a reset puts one queue: `offset` clamped to [min, max] of the queue; without
    it, the first offset stored at or after `timestamp`, or the end for a negative one.
    The same on a stopped node's store (rmqctl offset reset --offline)."""
    if offset is not None:
        return min(max(offset, store.min_offset(topic, queue_id)),
                   store.max_offset(topic, queue_id))
    if timestamp < 0:
        return store.max_offset(topic, queue_id)
    return store.offset_by_time(topic, queue_id, timestamp)

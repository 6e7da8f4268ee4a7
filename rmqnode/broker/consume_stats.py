"""How far consumer groups got (GET_CONSUME_STATS for one group, GET_BROKER_CONSUME_STATS
for every group of the broker): what mqadmin consumerProgress and brokerConsumeStats print.

Per queue: the broker's max offset, the group's committed offset and the store time of the
last message it consumed; per topic, the group's consume TPS over the last minute, counted
from what pulls and pops returned (BrokerStatsManager's GROUP_GET_NUMS), as Java counts it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rmqnode.net import fastjson
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode
from rmqnode.net.connection import Connection, Handler
from rmqnode.net.fastjson import ObjectKey

if TYPE_CHECKING:
    from rmqnode.broker.controller import BrokerController


def mq_key(broker_name: str, topic: str, queue_id: int) -> ObjectKey:
    """A MessageQueue as the key of a JSON map, written as Java's fastjson writes it."""
    return ObjectKey.of({"brokerName": broker_name, "queueId": queue_id, "topic": topic})


class ConsumeStatsProcessor:
    def __init__(self, broker: BrokerController) -> None:
        self.broker = broker

    def table(self) -> dict[int, Handler]:
        return {RequestCode.GET_CONSUME_STATS: self.consume_stats,
                RequestCode.GET_BROKER_CONSUME_STATS: self.broker_consume_stats}

    def consume_stats(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        """ConsumeStats of one group, on `topic` or every topic it committed offsets on;
        Java counts the queues a consumer reads (readQueueNums) and adds up the TPS."""
        group = cmd.require("consumerGroup")
        topic = cmd.field("topic")
        table: dict[ObjectKey, dict[str, int]] = {}
        tps = 0.0
        for config in self._topics(group, [topic] if topic else None):
            table |= self._offsets(group, config.topicName, config.readQueueNums)
            tps += self.broker.stats.consume_tps(config.topicName, group)
        return cmd.response(body=fastjson.dumpb({"consumeTps": tps, "offsetTable": table}))

    def broker_consume_stats(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        """ConsumeStatsList: for every subscription group, one ConsumeStats per topic it
        committed offsets on (only ordered topics with `isOrder`), over writeQueueNums as
        Java counts them, and the lag of them all (totalDiff)."""
        only_order = cmd.bool_field("isOrder")
        groups: list[dict[str, list[dict[str, Any]]]] = []
        total_diff = 0
        for group in list(self.broker.groups.table):
            stats = []
            for config in self._topics(group, None):
                if only_order and not config.order:
                    continue
                offsets = self._offsets(group, config.topicName, config.writeQueueNums)
                total_diff += sum(o["brokerOffset"] - o["consumerOffset"]
                                  for o in offsets.values())
                stats.append({"consumeTps": self.broker.stats.consume_tps(config.topicName,
                                                                          group),
                              "offsetTable": offsets})
            groups.append({group: stats})
        return cmd.response(body=fastjson.dumpb({
            "brokerAddr": self.broker.addr, "consumeStatsList": groups,
            "totalDiff": total_diff}))

    def _topics(self, group: str, topics: list[str] | None) -> list:
        """The configs of `topics` (default: those the group committed offsets on) that
        exist; a group online with subscriptions is shown only the topics it subscribes."""
        broker = self.broker
        info = broker.clients.consumers.get(group)
        subscribed = info.subscriptions if info is not None and info.subscriptions else None
        found = []
        for topic in topics if topics is not None else broker.offsets.topics_of_group(group):
            config = broker.topics.table.get(topic)
            if config is not None and (subscribed is None or topic in subscribed):
                found.append(config)
        return found

    def _offsets(self, group: str, topic: str, queues: int) -> dict[ObjectKey, dict[str, int]]:
        """OffsetWrapper per queue: offsets never below 0, lastTimestamp that of the last
        message the group consumed (0 when there is none)."""
        broker, store = self.broker, self.broker.store
        table = {}
        for queue_id in range(queues):
            committed = max(broker.offsets.query(group, topic, queue_id), 0)
            entry = store.find_queue(topic, queue_id)
            last = entry.entry(committed - 1) if entry is not None and committed > 0 else None
            table[mq_key(broker.config.brokerName, topic, queue_id)] = {
                "brokerOffset": store.max_offset(topic, queue_id),
                "consumerOffset": committed,
                "lastTimestamp": (store.store_time(last[0]) or 0) if last else 0}
        return table

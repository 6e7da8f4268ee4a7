"""The name server's route tables (RocketMQ's RouteInfoManager), as a plain class.

No sockets here: the processor passes in an opaque `channel` per registration so that a closed
connection can drop its broker, and the caller supplies the clock, which keeps expiry testable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rmqnode.net.fastjson import UnquotedKey

MASTER_ID = 0
PERM_WRITE = 2


@dataclass
class QueueData:
    brokerName: str
    readQueueNums: int
    writeQueueNums: int
    perm: int
    topicSysFlag: int = 0

    def to_json(self) -> dict[str, object]:
        return {"brokerName": self.brokerName, "perm": self.perm,
                "readQueueNums": self.readQueueNums, "topicSysFlag": self.topicSysFlag,
                "writeQueueNums": self.writeQueueNums}


@dataclass
class BrokerData:
    cluster: str
    brokerName: str
    brokerAddrs: dict[int, str] = field(default_factory=dict)

    def to_json(self, quoted_ids: bool) -> dict[str, object]:
        addrs = {(str(k) if quoted_ids else UnquotedKey(k)): v
                 for k, v in sorted(self.brokerAddrs.items())}
        return {"brokerAddrs": addrs, "brokerName": self.brokerName, "cluster": self.cluster}


@dataclass
class BrokerLiveInfo:
    brokerName: str
    last_update: float
    timeout: float
    data_version: dict[str, object]
    channel: object
    ha_server_addr: str


class RouteInfoManager:
    def __init__(self, broker_timeout: float = 120.0) -> None:
        self.broker_timeout = broker_timeout
        self.cluster_addr_table: dict[str, dict[str, None]] = {}  # ordered sets of brokerNames
        self.broker_addr_table: dict[str, BrokerData] = {}
        self.topic_queue_table: dict[str, dict[str, QueueData]] = {}
        self.broker_live_table: dict[str, BrokerLiveInfo] = {}

    # -- registration ------------------------------------------------------------------------

    def register_broker(self, cluster: str, broker_addr: str, broker_name: str, broker_id: int,
                        ha_server_addr: str, data_version: dict[str, object],
                        topic_configs: dict[str, dict[str, object]] | None, channel: object,
                        now: float, timeout: float | None = None) -> tuple[str | None, str | None]:
        """Record a broker and, for a master whose table changed, its topics' queues.

        `topic_configs` must be checked already (processor: fields.registration), so that
        nothing here can fail half-way. An address belongs to one broker name: one registered
        under another name before leaves it, or that name would keep it without liveness and
        never expire. `timeout` (a 5.x broker's own) may shorten the expiry, never lengthen it.
        Returns (haServerAddr, masterAddr) of this broker's master, which slaves need.
        """
        previous = self.broker_live_table.get(broker_addr)
        if previous is not None and previous.brokerName != broker_name:
            self._release(previous.brokerName, broker_addr)
        self.cluster_addr_table.setdefault(cluster, {})[broker_name] = None
        broker = self.broker_addr_table.get(broker_name)
        first = broker is None
        if broker is None:
            broker = self.broker_addr_table[broker_name] = BrokerData(cluster, broker_name)
        # A slave promoted to master (or the reverse) keeps its address under a new id.
        for other_id in [i for i, a in broker.brokerAddrs.items()
                         if a == broker_addr and i != broker_id]:
            del broker.brokerAddrs[other_id]
        first = broker.brokerAddrs.get(broker_id) is None or first
        broker.brokerAddrs[broker_id] = broker_addr

        if topic_configs is not None and broker_id == MASTER_ID:
            live = self.broker_live_table.get(broker_addr)
            if first or live is None or live.data_version != data_version:
                for topic, cfg in topic_configs.items():
                    self._update_queue_data(broker_name, topic, cfg)

        self.broker_live_table[broker_addr] = BrokerLiveInfo(
            broker_name, now, min(timeout or self.broker_timeout, self.broker_timeout),
            data_version, channel, ha_server_addr)

        if broker_id != MASTER_ID:
            master_addr = broker.brokerAddrs.get(MASTER_ID)
            if master_addr is not None:
                master = self.broker_live_table.get(master_addr)
                if master is not None:
                    return master.ha_server_addr, master_addr
        return None, None

    def _update_queue_data(self, broker_name: str, topic: str, cfg: Mapping[str, Any]) -> None:
        """Java's TopicConfig defaults for the fields a broker left out."""
        queue = QueueData(broker_name, cfg.get("readQueueNums", 16), cfg.get("writeQueueNums", 16),
                          cfg.get("perm", 6), cfg.get("topicSysFlag", 0))
        self.topic_queue_table.setdefault(topic, {})[broker_name] = queue

    def data_version_changed(self, broker_addr: str, data_version: dict[str, object],
                             now: float) -> bool:
        """QUERY_DATA_VERSION: also counts as a sign of life."""
        live = self.broker_live_table.get(broker_addr)
        if live is None:
            return True
        live.last_update = now
        return live.data_version != data_version

    def unregister_broker(self, broker_addr: str, broker_name: str, broker_id: int) -> None:
        """UNREGISTER_BROKER. Only the address registered under that name and id leaves (Java
        drops the liveness of any address named, and a broker without it never expires)."""
        broker = self.broker_addr_table.get(broker_name)
        if broker is not None and broker.brokerAddrs.get(broker_id) == broker_addr:
            self.broker_live_table.pop(broker_addr, None)
            self._release(broker_name, broker_addr)

    def _release(self, broker_name: str, broker_addr: str) -> None:
        """Take `broker_addr` out of `broker_name`, which is forgotten if no address is left."""
        broker = self.broker_addr_table.get(broker_name)
        if broker is not None:
            for broker_id in [i for i, a in broker.brokerAddrs.items() if a == broker_addr]:
                del broker.brokerAddrs[broker_id]
        self._forget_if_empty(broker_name)

    def _forget_if_empty(self, broker_name: str) -> None:
        """A broker name with no address left leaves every cluster that listed it (one that
        re-registered under another cluster is in both) and every topic route."""
        broker = self.broker_addr_table.get(broker_name)
        if broker is None or broker.brokerAddrs:
            return
        del self.broker_addr_table[broker_name]
        for cluster in list(self.cluster_addr_table):
            names = self.cluster_addr_table[cluster]
            names.pop(broker_name, None)
            if not names:
                del self.cluster_addr_table[cluster]
        for topic in list(self.topic_queue_table):
            queues = self.topic_queue_table[topic]
            queues.pop(broker_name, None)
            if not queues:
                del self.topic_queue_table[topic]

    def channel_closed(self, channel: object) -> list[str]:
        """Unregister every broker that registered over this connection; returns their addrs."""
        gone = [addr for addr, live in self.broker_live_table.items() if live.channel is channel]
        for addr in gone:
            self._drop(addr)
        return gone

    def expire(self, now: float) -> list[tuple[str, object]]:
        """Drop brokers silent past their timeout; returns (addr, channel) so callers can close."""
        dead = [(addr, live.channel) for addr, live in self.broker_live_table.items()
                if live.last_update + live.timeout < now]
        for addr, _ in dead:
            self._drop(addr)
        return dead

    def _drop(self, broker_addr: str) -> None:
        live = self.broker_live_table.pop(broker_addr)
        self._release(live.brokerName, broker_addr)

    # -- queries -----------------------------------------------------------------------------

    def topic_route(self, topic: str, quoted_ids: bool,
                    order_topic_conf: str | None = None) -> dict[str, object] | None:
        """TopicRouteData as the Java name server writes it, or None for an unknown topic."""
        queues = self.topic_queue_table.get(topic)
        if not queues:
            return None
        brokers = [self.broker_addr_table[name].to_json(quoted_ids)
                   for name in queues if name in self.broker_addr_table]
        if not brokers:
            return None
        route: dict[str, object] = {"brokerDatas": brokers, "filterServerTable": {}}
        if order_topic_conf:
            route["orderTopicConf"] = order_topic_conf
        route["queueDatas"] = [q.to_json() for q in queues.values()]
        return route

    def cluster_info(self) -> dict[str, object]:
        return {
            "brokerAddrTable": {name: b.to_json(quoted_ids=False)
                                for name, b in self.broker_addr_table.items()},
            "clusterAddrTable": {c: list(names) for c, names in self.cluster_addr_table.items()},
        }

    def all_topics(self) -> list[str]:
        return list(self.topic_queue_table)

    def topics_of_cluster(self, cluster: str) -> list[str]:
        names = self.cluster_addr_table.get(cluster, {})
        return [t for t, queues in self.topic_queue_table.items()
                if any(name in names for name in queues)]

    def system_topics(self) -> tuple[list[str], str | None]:
        """Cluster and broker names (each broker creates a topic named after them)."""
        topics = list(self.cluster_addr_table)
        for names in self.cluster_addr_table.values():
            topics.extend(names)
        addr = next((a for b in self.broker_addr_table.values()
                     for a in b.brokerAddrs.values()), None)
        return topics, addr

    def delete_topic(self, topic: str, cluster: str | None = None) -> None:
        queues = self.topic_queue_table.get(topic)
        if queues is None:
            return
        if cluster:
            for name in self.cluster_addr_table.get(cluster, {}):
                queues.pop(name, None)
        else:
            queues.clear()
        if not queues:
            del self.topic_queue_table[topic]

    def change_write_perm(self, broker_name: str, grant: bool) -> int:
        """WIPE/ADD_WRITE_PERM_OF_BROKER: returns how many topics were touched."""
        count = 0
        for queues in self.topic_queue_table.values():
            queue = queues.get(broker_name)
            if queue is not None:
                queue.perm = queue.perm | PERM_WRITE if grant else queue.perm & ~PERM_WRITE
                count += 1
        return count

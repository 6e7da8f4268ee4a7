"""Topic configs (TopicConfigManager): system topics, persistence in topics.json, data version.

topics.json keeps Java's shape, `{"dataVersion":{...},"topicConfigTable":{name:TopicConfig}}`,
so a store directory can move between a Java broker and rmqnode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rmqnode.broker.configfile import JsonConfigFile
from rmqnode.config import BrokerConfig
from rmqnode.errors import FAQ, RemotingError
from rmqnode.net.codes import PERM_INHERIT, PERM_READ, PERM_WRITE, ResponseCode
from rmqnode.validation import TOPIC_MAX_LENGTH, is_name

AUTO_CREATE_TOPIC_KEY = "TBW102"
SELF_TEST_TOPIC = "SELF_TEST_TOPIC"
BENCHMARK_TOPIC = "BenchmarkTest"
OFFSET_MOVED_EVENT = "OFFSET_MOVED_EVENT"
SCHEDULE_TOPIC = "SCHEDULE_TOPIC_XXXX"
TRACE_TOPIC = "RMQ_SYS_TRACE_TOPIC"  # msgTraceTopicName by default
DELAY_LEVELS = 18
MESSAGE_TYPE = "message.type"  # the 5.x topic attribute the gRPC clients' sends are checked on
MESSAGE_TYPES = ("NORMAL", "FIFO", "DELAY", "TRANSACTION", "MIXED")
# TopicValidator's SYSTEM_TOPIC_SET and prefix: topics no admin request may create or delete.
SYSTEM_TOPICS = frozenset({AUTO_CREATE_TOPIC_KEY, SCHEDULE_TOPIC, BENCHMARK_TOPIC,
                           "RMQ_SYS_TRANS_HALF_TOPIC", TRACE_TOPIC,
                           "RMQ_SYS_TRANS_OP_HALF_TOPIC", "TRANS_CHECK_MAX_TIME_TOPIC",
                           SELF_TEST_TOPIC, OFFSET_MOVED_EVENT})
SYSTEM_TOPIC_PREFIX = "rmq_sys_"


@dataclass
class TopicConfig:
    topicName: str
    readQueueNums: int = 16
    writeQueueNums: int = 16
    perm: int = PERM_READ | PERM_WRITE
    topicFilterType: str = "SINGLE_TAG"
    topicSysFlag: int = 0
    order: bool = False
    # RocketMQ 5.x topic attributes (`message.type`: NORMAL, FIFO, DELAY, TRANSACTION, MIXED);
    # written only when set, so a 4.9.8 broker's topics.json and routes stay as they were.
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def message_type(self) -> str:
        """What the 5.x clients may send here (TopicMessageType; absent means NORMAL)."""
        return self.attributes.get(MESSAGE_TYPE, "NORMAL")

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"order": self.order, "perm": self.perm,
                                  "readQueueNums": self.readQueueNums,
                                  "topicFilterType": self.topicFilterType,
                                  "topicName": self.topicName,
                                  "topicSysFlag": self.topicSysFlag,
                                  "writeQueueNums": self.writeQueueNums}
        if self.attributes:
            out["attributes"] = dict(self.attributes)
        return out

    @classmethod
    def from_json(cls, data: dict[str, object]) -> TopicConfig:
        attributes = data.get("attributes") or {}
        if not isinstance(attributes, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()):
            raise ValueError("attributes is not an object of strings")
        return cls(topicName=str(data["topicName"]),
                   readQueueNums=int(data.get("readQueueNums", 16)),  # type: ignore[arg-type]
                   writeQueueNums=int(data.get("writeQueueNums", 16)),  # type: ignore[arg-type]
                   perm=int(data.get("perm", 6)),  # type: ignore[arg-type]
                   topicFilterType=str(data.get("topicFilterType", "SINGLE_TAG")),
                   topicSysFlag=int(data.get("topicSysFlag", 0)),  # type: ignore[arg-type]
                   order=bool(data.get("order", False)), attributes=dict(attributes))


class DataVersion:
    """Bumped on every change so the name server knows when to re-read a broker's topics."""

    def __init__(self, counter: int = 0, timestamp: int | None = None) -> None:
        self.counter = counter
        self.timestamp = timestamp if timestamp is not None else int(time.time() * 1000)

    def next(self) -> None:
        self.counter += 1
        self.timestamp = int(time.time() * 1000)

    def to_json(self) -> dict[str, object]:
        return {"counter": self.counter, "timestamp": self.timestamp}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> DataVersion:
        data = data or {}
        stamp = data.get("timestamp")
        return cls(int(data.get("counter", 0)), int(stamp) if stamp is not None else None)


def _topic_entry(name: str, data: dict[str, object]) -> TopicConfig:
    """One topicConfigTable entry, its key a topic name (it names directories in the store)."""
    if not is_name(name, TOPIC_MAX_LENGTH) or data.get("topicName") != name:
        raise ValueError("not a topic name, or not its entry's topicName")
    return TopicConfig.from_json(data)


class TopicConfigManager(JsonConfigFile):
    file_name = "topics.json"

    def __init__(self, config: BrokerConfig) -> None:
        super().__init__(config)
        self.table: dict[str, TopicConfig] = {}
        self.data_version = DataVersion()
        self.system: set[str] = set(SYSTEM_TOPICS)  # and those created at start

    def load(self) -> None:
        super().load()
        self._ensure_system_topics()

    def decode(self, data: dict[str, Any]) -> None:
        table = self.valid_entries(self.table_of(data, "topicConfigTable"), _topic_entry)
        self.data_version = DataVersion.from_json(data.get("dataVersion"))
        self.table.update(table)

    def encode(self) -> dict[str, Any]:
        return {"dataVersion": self.data_version.to_json(),
                "topicConfigTable": {n: t.to_json() for n, t in self.table.items()}}

    def _ensure_system_topics(self) -> None:
        """The topics a 4.9.8 broker creates at start, with the same queue counts and perms."""
        c = self.config
        rw = PERM_READ | PERM_WRITE
        wanted = [TopicConfig(SELF_TEST_TOPIC, 1, 1, rw)]
        if c.autoCreateTopicEnable:
            wanted.append(TopicConfig(AUTO_CREATE_TOPIC_KEY, c.defaultTopicQueueNums,
                                      c.defaultTopicQueueNums, rw | PERM_INHERIT))
        wanted.append(TopicConfig(BENCHMARK_TOPIC, 1024, 1024, rw))
        if c.clusterTopicEnable:
            wanted.append(TopicConfig(c.brokerClusterName, 16, 16, rw | PERM_INHERIT))
        if c.brokerTopicEnable:
            wanted.append(TopicConfig(c.brokerName, 1, 1, rw | PERM_INHERIT))
        wanted += [TopicConfig(OFFSET_MOVED_EVENT, 1, 1, rw),
                   TopicConfig(SCHEDULE_TOPIC, DELAY_LEVELS, DELAY_LEVELS, rw)]
        if c.traceTopicEnable:  # where clients with tracing on send their trace records
            wanted.append(TopicConfig(c.msgTraceTopicName, 1, 1, rw))
        wanted.append(TopicConfig(f"{c.brokerClusterName}_REPLY_TOPIC", 1, 1, rw))
        for topic in wanted:
            self.table.setdefault(topic.topicName, topic)
            self.system.add(topic.topicName)

    def is_system(self, name: str) -> bool:
        """TopicValidator.isSystemTopic, with the topics this broker made at start."""
        return name in self.system or name.startswith(SYSTEM_TOPIC_PREFIX)

    def existing(self, name: str) -> TopicConfig:
        """The topic's config; Java's TOPIC_NOT_EXIST error for a topic this broker lacks."""
        found = self.table.get(name)
        if found is None:
            raise RemotingError(ResponseCode.TOPIC_NOT_EXIST,
                                f"topic[{name}] not exist, apply first please!{FAQ}")
        return found

    def wrapper(self, only: list[TopicConfig] | None = None) -> dict[str, object]:
        """TopicConfigSerializeWrapper: what REGISTER_BROKER carries (every topic, or `only`
        these for an incremental registration)."""
        perm_mask = self.config.brokerPermission | PERM_INHERIT
        table = {}
        for topic in self.table.values() if only is None else only:
            name = topic.topicName
            item = topic.to_json()
            item["perm"] = topic.perm & perm_mask
            table[name] = item
        return {"dataVersion": self.data_version.to_json(), "topicConfigTable": table}

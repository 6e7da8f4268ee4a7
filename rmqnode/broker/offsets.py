"""Clustering consumers' committed offsets (ConsumerOffsetManager), kept in consumerOffset.json
as `{"offsetTable":{"topic@group":{queueId:offset}}}` with Java's unquoted integer keys."""

from __future__ import annotations

from typing import Any

from rmqnode import validation
from rmqnode.broker.configfile import JsonConfigFile
from rmqnode.config import SLAVE
from rmqnode.net.fastjson import UnquotedKey

SEPARATOR = "@"


def _offsets_entry(key: str, queues: dict[Any, Any]) -> dict[int, int]:
    """One offsetTable entry: `topic@group` to {queueId: offset}."""
    topic, _, group = key.rpartition(SEPARATOR)
    if not (validation.is_name(topic, validation.TOPIC_MAX_LENGTH)
            and validation.is_name(group)):
        raise ValueError("not topic@group")
    return {int(q): int(o) for q, o in queues.items()}


class ConsumerOffsetManager(JsonConfigFile):
    file_name = "consumerOffset.json"

    def __init__(self, config) -> None:
        super().__init__(config)
        self.table: dict[str, dict[int, int]] = {}
        # A slave's own commits, (topic@group, queueId) -> offset, until its master has them
        # (slave_sync): consumers commit here while the master is down.
        self.local: dict[tuple[str, int], int] = {}

    def decode(self, data: dict[str, Any]) -> None:
        self.table = self.valid_entries(self.table_of(data, "offsetTable"), _offsets_entry)

    def encode(self) -> dict[str, Any]:
        return {"offsetTable": {key: {UnquotedKey(q): o for q, o in sorted(queues.items())}
                                for key, queues in self.table.items()}}

    def commit(self, group: str, topic: str, queue_id: int, offset: int) -> None:
        """Names are checked here, where they become keys of consumerOffset.json: a group or
        topic holding '@' or a stray character would corrupt the file for good."""
        validation.group(group)
        validation.topic(topic)
        key = f"{topic}{SEPARATOR}{group}"
        self.table.setdefault(key, {})[queue_id] = offset
        self.dirty = True
        if self.config.brokerRole == SLAVE:
            self.local[(key, queue_id)] = offset

    def query(self, group: str, topic: str, queue_id: int) -> int:
        """The committed offset, or -1 when the group never committed one for this queue."""
        return self.table.get(f"{topic}{SEPARATOR}{group}", {}).get(queue_id, -1)

    def queues(self, group: str, topic: str) -> dict[int, int]:
        return dict(self.table.get(f"{topic}{SEPARATOR}{group}", {}))

    def topics_of_group(self, group: str) -> list[str]:
        return [k.rpartition(SEPARATOR)[0] for k in self.table
                if k.rpartition(SEPARATOR)[2] == group]

    def groups_of_topic(self, topic: str) -> list[str]:
        return [k.rpartition(SEPARATOR)[2] for k in self.table
                if k.rpartition(SEPARATOR)[0] == topic]

    def remove_topic(self, topic: str) -> None:
        for key in [k for k in self.table if k.rpartition(SEPARATOR)[0] == topic]:
            del self.table[key]
            self.dirty = True

    def remove_group(self, group: str) -> None:
        for key in [k for k in self.table if k.rpartition(SEPARATOR)[2] == group]:
            del self.table[key]
            self.dirty = True

"""A group's committed offsets as a JSON file (`rmqctl offset export`, `offset reset
--to-file`): saved before risky work, restored exactly afterwards, or copied to another group.

    {"group": "audit",
     "topics": {"Orders": [{"brokerName": "broker-a", "queueId": 0, "offset": 42}, ...]}}

A file is trusted no more than any input: every field is checked, and what is wrong is said
in one line naming the field (exit code 2).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rmqnode import validation

# (brokerName, queueId) -> offset: a topic's queues are numbered per broker.
QueueOffsets = dict[tuple[str, int], int]

_ENTRY_KEYS = ("brokerName", "queueId", "offset")


@dataclass(frozen=True)
class SavedOffsets:
    group: str
    topics: dict[str, QueueOffsets]


def dumps(group: str, topics: dict[str, QueueOffsets]) -> str:
    """The file's text: topics, brokers and queues in order, so two exports diff cleanly."""
    return json.dumps({"group": group, "topics": {
        topic: [{"brokerName": b, "queueId": q, "offset": o}
                for (b, q), o in sorted(queues.items())]
        for topic, queues in sorted(topics.items())}}, indent=2) + "\n"


def load(path: Path) -> SavedOffsets:
    """The offsets in `path`; ValueError (exit code 2) saying which field is wrong and why."""
    try:
        data = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON offsets file ({exc})") from None
    except RecursionError:
        raise ValueError(f"{path}: not a JSON offsets file (nested too deeply)") from None
    return _parse(path, data)


def _parse(path: Path, data: Any) -> SavedOffsets:
    def wrong(where: str, what: str) -> ValueError:
        return ValueError(f"{path}: {where}: {what} (see: rmqctl offset export --help)")

    if not isinstance(data, dict):
        raise wrong("the file", "not an object with group and topics")
    group = data.get("group")
    if not validation.is_name(group):
        raise wrong("group", f"not a group name: {validation.quote(group)}")
    topics = data.get("topics")
    if not isinstance(topics, dict):
        raise wrong("topics", "missing, or not an object of topic: [queues]")
    parsed: dict[str, QueueOffsets] = {}
    for topic, entries in topics.items():
        if not validation.is_name(topic, validation.TOPIC_MAX_LENGTH):
            raise wrong("topics", f"not a topic name: {validation.quote(topic)}")
        if not isinstance(entries, list):
            raise wrong(f"topics.{topic}", "not a list of queues")
        queues: QueueOffsets = {}
        for i, entry in enumerate(entries):
            where = f"topics.{topic}[{i}]"
            if not isinstance(entry, dict) or set(entry) != set(_ENTRY_KEYS):
                raise wrong(where, f"not an object of exactly {', '.join(_ENTRY_KEYS)}")
            broker = entry["brokerName"]
            if not (isinstance(broker, str) and validation.LABEL_PATTERN.fullmatch(broker)):
                raise wrong(f"{where}.brokerName",
                            f"not a broker name: {validation.quote(broker)}")
            queue_id = _number(entry["queueId"], validation.INT32[1])
            if queue_id is None:
                raise wrong(f"{where}.queueId", f"not a queue id: {entry['queueId']!r}")
            offset = _number(entry["offset"], validation.INT64[1])
            if offset is None:
                raise wrong(f"{where}.offset", f"not an offset: {entry['offset']!r}")
            if (broker, queue_id) in queues:
                raise wrong(where, f"queue {queue_id} of {broker} a second time")
            queues[broker, queue_id] = offset
        parsed[topic] = queues
    return SavedOffsets(group, parsed)


def _number(value: Any, high: int) -> int | None:
    """A whole number from 0 to `high` (JSON true is no number, though Python says so)."""
    if type(value) is int and 0 <= value <= high:
        return value
    return None

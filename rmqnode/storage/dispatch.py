"""What the reput step needs to know about a stored message to index it (DispatchRequest), and
the tag-code rule, shared by the hot path (built from the send) and by recovery (built from a
CommitLog scan)."""

from __future__ import annotations

from dataclasses import dataclass

from rmqnode.message import (DELAY, KEYS, TAGS, TRANSACTION_MASK, TRANSACTION_PREPARED_TYPE,
                             TRANSACTION_ROLLBACK_TYPE, UNIQ_KEY, MessageExt, tags_code)

SCHEDULE_TOPIC = "SCHEDULE_TOPIC_XXXX"

_UNITS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_delay_levels(text: str) -> list[int]:
    """messageDelayLevel ('1s 5s 10s 30s 1m ...') as milliseconds per level, level 1 first."""
    levels = []
    for item in text.split():
        unit = _UNITS.get(item[-1:])
        if unit is None or not item[:-1].isdigit():
            raise ValueError(f"messageDelayLevel item {item!r} is not like 10s, 5m, 2h or 1d")
        levels.append(int(item[:-1]) * unit)
    return levels


def goes_to_queue(sys_flag: int) -> bool:
    """Prepared and rolled-back transaction records never reach a consume queue."""
    return sys_flag & TRANSACTION_MASK not in (TRANSACTION_PREPARED_TYPE,
                                               TRANSACTION_ROLLBACK_TYPE)


def is_indexed(sys_flag: int) -> bool:
    return sys_flag & TRANSACTION_MASK != TRANSACTION_ROLLBACK_TYPE


class _Flagged:
    """What a request's sysFlag says of its dispatch (a DispatchRequest's or a batch's)."""
    __slots__ = ()
    sys_flag: int

    @property
    def goes_to_queue(self) -> bool:
        return goes_to_queue(self.sys_flag)

    @property
    def is_indexed(self) -> bool:
        return is_indexed(self.sys_flag)


@dataclass(slots=True)
class DispatchRequest(_Flagged):
    topic: str
    queue_id: int
    commit_log_offset: int
    size: int
    tags_code: int
    store_timestamp: int
    queue_offset: int
    keys: list[str]
    sys_flag: int


@dataclass(slots=True)
class DispatchBatch(_Flagged):
    """The messages of one batch put (one queue, consecutive queue and CommitLog offsets, one
    store time and sysFlag): dispatched as a run, one consume-queue write for all of them."""
    topic: str
    queue_id: int
    commit_log_offset: int
    sizes: list[int]
    tags_codes: list[int]
    store_timestamp: int
    queue_offset: int
    keys: list[list[str]]
    sys_flag: int

    def requests(self) -> list[DispatchRequest]:
        """One request per message: for what a run cannot do (a stalled queue, the index)."""
        out = []
        offset = self.commit_log_offset
        for i, size in enumerate(self.sizes):
            out.append(DispatchRequest(self.topic, self.queue_id, offset, size,
                                       self.tags_codes[i], self.store_timestamp,
                                       self.queue_offset + i, self.keys[i], self.sys_flag))
            offset += size
        return out

    @property
    def end(self) -> int:
        return self.commit_log_offset + sum(self.sizes)


def queue_tags_code(topic: str, properties: dict[str, str], store_timestamp: int,
                    delay_levels: list[int]) -> int:
    """The consume queue's tag slot: the tag hash, except on SCHEDULE_TOPIC_XXXX where it holds
    the time the delayed message is due (store time + its level's delay)."""
    if topic == SCHEDULE_TOPIC:
        level = properties.get(DELAY)
        if level and level.isdigit() and delay_levels:
            index = min(max(int(level), 1), len(delay_levels)) - 1
            return store_timestamp + delay_levels[index]
        return store_timestamp
    return tags_code(properties.get(TAGS))


def queue_tags_codes(topic: str, all_properties: list[dict[str, str]], store_timestamp: int,
                     delay_levels: list[int]) -> list[int]:
    """queue_tags_code of each message of a batch put."""
    if topic == SCHEDULE_TOPIC:
        return [queue_tags_code(topic, p, store_timestamp, delay_levels) for p in all_properties]
    return [tags_code(p.get(TAGS)) for p in all_properties]


def index_keys(properties: dict[str, str]) -> list[str]:
    """Index keys of a message: its UNIQ_KEY, then every word of KEYS."""
    uniq = properties.get(UNIQ_KEY)
    keys = [uniq] if uniq else []
    words = properties.get(KEYS)
    if words:
        keys += filter(None, words.split(" "))
    return keys


def request_from_message(msg: MessageExt, delay_levels: list[int]) -> DispatchRequest:
    return DispatchRequest(msg.topic, msg.queue_id, msg.commit_log_offset, msg.store_size,
                           queue_tags_code(msg.topic, msg.properties, msg.store_timestamp,
                                           delay_levels),
                           msg.store_timestamp, msg.queue_offset, index_keys(msg.properties),
                           msg.sys_flag)

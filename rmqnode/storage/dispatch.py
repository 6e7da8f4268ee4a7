"""What the reput step needs to know about a stored message to index it (DispatchRequest), and
the tag-code rule, shared by the hot path (built from the send) and by recovery (built from a
CommitLog scan)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from rmqnode.message import (DELAY, KEYS, TAGS, TRANSACTION_MASK, TRANSACTION_PREPARED_TYPE,
                             TRANSACTION_ROLLBACK_TYPE, UNIQ_KEY, MessageExt, tags_code)
from rmqnode.speedups import accelerate

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


class DispatchRequest(NamedTuple):
    """One stored message's dispatch. A put queues its fields as a plain tuple in this order
    (a named one costs a Python-level __new__ per message): the reput unpacks either."""
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
class DispatchBatch:
    """The messages of one batch put (one queue, consecutive queue and CommitLog offsets, one
    store time and sysFlag): dispatched as a run, one consume-queue write for all of them.
    Its index keys are those of all its messages, keys[i] of the message at key_offsets[i],
    as IndexService.build takes them."""
    topic: str
    queue_id: int
    commit_log_offset: int
    sizes: list[int]
    tags_codes: list[int]
    store_timestamp: int
    queue_offset: int
    keys: list[str]
    key_offsets: list[int]
    sys_flag: int

    def requests(self) -> list[DispatchRequest]:
        """One request per message: for what a run cannot do (a stalled queue, the index)."""
        out = []
        offset = self.commit_log_offset
        k = 0
        for i, size in enumerate(self.sizes):
            first = k
            while k < len(self.keys) and self.key_offsets[k] == offset:
                k += 1
            out.append(DispatchRequest(self.topic, self.queue_id, offset, size,
                                       self.tags_codes[i], self.store_timestamp,
                                       self.queue_offset + i, self.keys[first:k],
                                       self.sys_flag))
            offset += size
        return out

    @property
    def end(self) -> int:
        return self.commit_log_offset + sum(self.sizes)

    @property
    def goes_to_queue(self) -> bool:
        return goes_to_queue(self.sys_flag)

    @property
    def is_indexed(self) -> bool:
        return is_indexed(self.sys_flag)


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


def dispatch_request(topic: str, queue_id: int, commit_log_offset: int, size: int,
                     properties: dict[str, str], store_timestamp: int, queue_offset: int,
                     sys_flag: int, delay_levels: list[int]) -> tuple:
    """What a single put queues for the reput: its DispatchRequest's fields as a plain tuple,
    the tag code and index keys read from `properties` by one call (in C when built)."""
    return (topic, queue_id, commit_log_offset, size,
            queue_tags_code(topic, properties, store_timestamp, delay_levels), store_timestamp,
            queue_offset, index_keys(properties), sys_flag)


dispatch_request = accelerate(dispatch_request)


def batch_dispatch(topic: str, messages: list, commit_log_offset: int, sizes: list[int],
                   store_timestamp: int, delay_levels: list[int]
                   ) -> tuple[list[int], list[str], list[int], int | None]:
    """What the reput needs of a batch put's messages (of `topic`, stored from
    `commit_log_offset` in records of `sizes`), read in one pass over them (in C when built):
    their consume-queue tag codes, their index keys with each key's CommitLog offset, and the
    sysFlag they share (None when they differ: then they are dispatched one by one)."""
    codes = queue_tags_codes(topic, [m.properties for m in messages], store_timestamp,
                             delay_levels)
    keys: list[str] = []
    offsets: list[int] = []
    sys_flag = messages[0].sys_flag
    offset = commit_log_offset
    for msg, size in zip(messages, sizes):
        message_keys = index_keys(msg.properties)
        if message_keys:
            keys += message_keys
            offsets += [offset] * len(message_keys)
        offset += size
        if sys_flag is not None and msg.sys_flag != sys_flag:
            sys_flag = None
    return codes, keys, offsets, sys_flag


batch_dispatch = accelerate(batch_dispatch)


def request_from_message(msg: MessageExt, delay_levels: list[int]) -> DispatchRequest:
    return DispatchRequest(msg.topic, msg.queue_id, msg.commit_log_offset, msg.store_size,
                           queue_tags_code(msg.topic, msg.properties, msg.store_timestamp,
                                           delay_levels),
                           msg.store_timestamp, msg.queue_offset, index_keys(msg.properties),
                           msg.sys_flag)

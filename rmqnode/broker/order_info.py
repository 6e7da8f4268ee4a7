"""Orderly POP's state per (topic, group, queue) (ConsumerOrderInfoManager), kept in
consumerOrderInfo.json as Java 5.x keeps it.

An orderly POP writes no checkpoint and moves no offset: the group's offset stays at the start
of the batch it handed out, and this table remembers the batch - its queue offsets, when it
was popped and for how long it is invisible, which of its messages were acked, how often each
was delivered before. A queue whose batch still has a message acked by nobody and not yet
visible again hands out nothing more; the offset moves on as the batch is acked from its
start, so what was never acked is popped again from the same offsets after its invisible time
(with a higher delivery count) - also after a restart, since the table is persisted.

The file is `{"table":{"topic@group":{queueId:{"popTime":..,"i":..,"o":[..],...}}}}` with
OrderInfo's JSON names: `o` is the first offset then each other's distance to it, `cm` the
bitmap of acked messages, `ot` per-offset next visible times (change of invisible time), `oc`
per-offset delivery counts of messages delivered before, `l` the last pop, `a` the attempt id.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rmqnode import validation
from rmqnode.broker.configfile import JsonConfigFile
from rmqnode.net.fastjson import UnquotedKey

if TYPE_CHECKING:
    from rmqnode.broker.groups import SubscriptionGroupManager
    from rmqnode.broker.topics import TopicConfigManager
    from rmqnode.config import BrokerConfig

SEPARATOR = "@"
CLEAN_AFTER_MS = 24 * 3600 * 1000  # CLEAN_SPAN_FROM_LAST: a queue not popped for a day
NOT_IN_BATCH, NO_COMMIT = -1, -2  # commit_and_next's answers that commit nothing


def _int_map(value: Any, what: str) -> dict[int, int]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{what} is a {type(value).__name__}, not an object")
    return {int(k): int(v) for k, v in value.items()}


@dataclass
class OrderInfo:
    """One queue's batch in flight (ConsumerOrderInfoManager.OrderInfo), with absolute
    queue offsets; `acked` is Java's commitOffsetBit (bit i: offsets[i] acked)."""

    pop_time: int
    invisible_time: int
    offsets: list[int]
    last_pop: int
    attempt_id: str | None = None
    acked: int = 0
    next_visible: dict[int, int] = field(default_factory=dict)
    consumed: dict[int, int] = field(default_factory=dict)

    def is_acked(self, index: int) -> bool:
        return bool(self.acked >> index & 1)

    def blocked_until(self, invisible_time: int, now: int) -> int | None:
        """Until when the queue hands out nothing (None: it is free now): while a message of
        the batch is neither acked nor visible again. A file of an old version without an
        invisible time counts with the request's, as Java does."""
        invisible = self.invisible_time if self.invisible_time > 0 else invisible_time
        times = [self.next_visible.get(o, self.pop_time + invisible)
                 for i, o in enumerate(self.offsets) if not self.is_acked(i)]
        return max((t for t in times if t > now), default=None)

    def next_offset(self) -> int:
        """Where the group's offset may move: the first message not acked, or past the batch."""
        for i, offset in enumerate(self.offsets):
            if not self.is_acked(i):
                return offset
        return self.offsets[-1] + 1

    def to_json(self) -> dict[str, Any]:
        first = self.offsets[0] if self.offsets else 0
        data: dict[str, Any] = {
            "cm": self.acked, "i": self.invisible_time, "l": self.last_pop,
            "o": self.offsets[:1] + [o - first for o in self.offsets[1:]],
            "popTime": self.pop_time}
        if self.attempt_id is not None:
            data["a"] = self.attempt_id
        if self.consumed:
            data["oc"] = {UnquotedKey(o): n for o, n in sorted(self.consumed.items())}
        if self.next_visible:
            data["ot"] = {UnquotedKey(o): t for o, t in sorted(self.next_visible.items())}
        return dict(sorted(data.items()))

    @classmethod
    def from_json(cls, data: Any) -> OrderInfo:
        """Raises TypeError/ValueError/KeyError for an entry that is not an OrderInfo."""
        if not isinstance(data, dict):
            raise TypeError(f"an order info is a {type(data).__name__}, not an object")
        diffs = data.get("o") or []
        if not isinstance(diffs, list):
            raise TypeError(f"o is a {type(diffs).__name__}, not a list")
        first = int(diffs[0]) if diffs else 0
        offsets = [first] + [first + int(d) for d in diffs[1:]] if diffs else []
        attempt = data.get("a")
        if attempt is not None and not isinstance(attempt, str):
            raise TypeError("a is not a string")
        return cls(int(data["popTime"]), int(data.get("i") or 0), offsets,
                   int(data.get("l") or 0), attempt, int(data.get("cm") or 0),
                   _int_map(data.get("ot"), "ot"), _int_map(data.get("oc"), "oc"))


def _table_entry(key: Any, queues: Any) -> dict[int, OrderInfo]:
    """One table entry: `topic@group` to {queueId: OrderInfo}."""
    topic, _, group = str(key).rpartition(SEPARATOR)
    if not (validation.is_name(topic, validation.TOPIC_MAX_LENGTH)
            and validation.is_name(group)):
        raise ValueError("not topic@group")
    if not isinstance(queues, dict):
        raise TypeError(f"a {type(queues).__name__}, not an object of queues")
    return {int(q): OrderInfo.from_json(info) for q, info in queues.items()}


class ConsumerOrderInfoManager(JsonConfigFile):
    """The table and its file. Every change marks it dirty; the broker persists it with the
    offsets, and each persist first drops what Java's autoClean drops (topics, groups and
    queues that are gone, queues not popped for a day)."""

    file_name = "consumerOrderInfo.json"

    def __init__(self, config: BrokerConfig, topics: TopicConfigManager,
                 groups: SubscriptionGroupManager) -> None:
        super().__init__(config)
        self.topics, self.groups = topics, groups
        self.table: dict[str, dict[int, OrderInfo]] = {}

    def decode(self, data: dict[str, Any]) -> None:
        self.table = self.valid_entries(self.table_of(data, "table"), _table_entry)

    def encode(self) -> dict[str, Any]:
        return {"table": {key: {UnquotedKey(q): info.to_json()
                                for q, info in sorted(queues.items())}
                          for key, queues in self.table.items()}}

    def persist(self) -> None:
        self.clean()
        super().persist()

    def clean(self, now: int | None = None) -> None:
        """autoClean: order info of topics, groups or queues that no longer exist, and of
        queues not popped for CLEAN_AFTER_MS, is of no use to anyone."""
        now = int(time.time() * 1000) if now is None else now
        for key in list(self.table):
            topic, _, group = key.rpartition(SEPARATOR)
            config = self.topics.table.get(topic)
            queues = self.table[key]
            if config is not None and group in self.groups.table:
                for queue_id in [q for q, info in queues.items()
                                 if q >= config.readQueueNums
                                 or now - info.last_pop > CLEAN_AFTER_MS]:
                    del queues[queue_id]
            if config is None or group not in self.groups.table or not queues:
                del self.table[key]

    def clear_block(self, topic: str, group: str, queue_id: int) -> None:
        """clearBlock: the queue's batch in flight is forgotten (its offset was reset), so the
        next pop starts at the new offset instead of waiting for acks of the old batch, and a
        late ack of that batch cannot move the offset back."""
        if self.table.get(f"{topic}{SEPARATOR}{group}", {}).pop(queue_id, None) is not None:
            self.dirty = True

    def _get(self, topic: str, group: str, queue_id: int) -> OrderInfo | None:
        return self.table.get(f"{topic}{SEPARATOR}{group}", {}).get(queue_id)

    def blocked_until(self, attempt_id: str | None, topic: str, group: str, queue_id: int,
                      invisible_time: int, now: int) -> int | None:
        """checkBlock: until when the queue hands the group nothing; None if it is free. A
        retried receive with the batch's own attempt id is never blocked by it (it gets the
        same messages again)."""
        info = self._get(topic, group, queue_id)
        if info is None or (attempt_id is not None and attempt_id == info.attempt_id):
            return None
        return info.blocked_until(invisible_time, now)

    def update(self, attempt_id: str | None, topic: str, group: str, queue_id: int,
               pop_time: int, invisible_time: int, offsets: list[int],
               now: int) -> dict[int, int]:
        """Record a popped batch; returns each offset's count of earlier deliveries (the
        message's reconsume times). An offset of the previous batch counts one delivery more,
        unless the pop is a retry of the same attempt."""
        queues = self.table.setdefault(f"{topic}{SEPARATOR}{group}", {})
        previous = queues.get(queue_id)
        info = OrderInfo(pop_time, invisible_time, list(offsets), now, attempt_id)
        if previous is not None and attempt_id is not None \
                and attempt_id == previous.attempt_id:
            info.consumed = dict(previous.consumed)
        elif previous is not None:
            before = set(previous.offsets)
            info.consumed = {o: previous.consumed.get(o, 0) + 1 for o in offsets if o in before}
        queues[queue_id] = info
        self.dirty = True
        return {o: info.consumed.get(o, 0) for o in offsets}

    def commit_and_next(self, topic: str, group: str, queue_id: int, offset: int,
                        pop_time: int) -> int:
        """Mark `offset` acked; the offset the group may commit now, NOT_IN_BATCH (an illegal
        ack) or NO_COMMIT (the handle is of an older pop). Without order info (cleaned, or
        never persisted), the message alone is taken as acked, as Java does."""
        info = self._get(topic, group, queue_id)
        if info is None:
            return offset + 1
        if not info.offsets:
            return NOT_IN_BATCH
        if pop_time != info.pop_time:
            return NO_COMMIT
        if offset not in info.offsets:
            return NOT_IN_BATCH
        info.acked |= 1 << info.offsets.index(offset)
        self.dirty = True
        return info.next_offset()

    def update_next_visible(self, topic: str, group: str, queue_id: int, offset: int,
                            pop_time: int, next_visible: int) -> bool:
        """A change of invisible time of one message of the batch; False (nothing changed)
        when the handle is not of the queue's current batch."""
        info = self._get(topic, group, queue_id)
        if info is None or pop_time != info.pop_time:
            return False
        info.next_visible[offset] = next_visible
        self.dirty = True
        return True

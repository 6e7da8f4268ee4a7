"""Checkpoints of popped messages and their revival (PopReviveService).

Every POP writes a checkpoint (which offsets of which queue were handed out, when, for how
long) to the revive topic `rmq_sys_REVIVE_LOG_<cluster>`, and every ACK writes an ack
record there, both as JSON in Java's field names. The CommitLog is therefore the durable
record of what is in flight: at start the broker replays each revive queue from the offset
its revive group has committed, and knows again which popped messages were never acked.

Replaying a checkpoint also moves the group's POP offset past it, so a crash between two
offset persists does not hand out acked messages again.

A checkpoint whose invisible time has passed is revived: each unacked message is stored again
in the group's POP retry topic (`%RETRY%<group>_<topic>`) with one more reconsume time, or in
`%DLQ%<group>` once it has been retried `retryMaxTimes` times. A batch-ack record for what was
revived follows, so a replay after a restart does not revive it twice. The revive group's
committed offset only moves past a checkpoint once that checkpoint is settled.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rmqnode import log
from rmqnode.broker.topics import PERM_READ, PERM_WRITE
from rmqnode.message import (DLQ_PREFIX, FIRST_POP_TIME, RETRY_PREFIX, RETRY_TOPIC, TAGS,
                             MessageExt)
from rmqnode.net.popinfo import pop_retry_topic
from rmqnode.storage.store import Message
from rmqnode.validation import INT32

if TYPE_CHECKING:
    from rmqnode.broker.controller import BrokerController

_log = log.get("rmqnode.broker")

REVIVE_GROUP = "CID_RMQ_SYS_REVIVE_GROUP"
CK_TAG, ACK_TAG, BATCH_ACK_TAG = "ck", "ack", "bAck"

CkKey = tuple[str, str, int, int, int]  # topic, group, queueId, startOffset, popTime


def revive_topic(cluster: str) -> str:
    return f"rmq_sys_REVIVE_LOG_{cluster}"


@dataclass
class CheckPoint:
    """PopCheckPoint: `offsets` are the queue offsets handed out (startOffset + diff)."""
    topic: str
    group: str
    queue_id: int
    start_offset: int
    pop_time: int
    invisible_time: int
    offsets: list[int]
    broker_name: str
    acked: set[int] = field(default_factory=set)
    revive_offset: int = -1  # where this checkpoint sits in its revive queue

    @property
    def key(self) -> CkKey:
        return (self.topic, self.group, self.queue_id, self.start_offset, self.pop_time)

    @property
    def revive_time(self) -> int:
        return self.pop_time + self.invisible_time

    def to_json(self) -> dict[str, object]:
        return {"bm": 0, "bn": self.broker_name, "c": self.group,
                "d": [o - self.start_offset for o in self.offsets], "it": self.invisible_time,
                "n": len(self.offsets), "pt": self.pop_time, "q": self.queue_id,
                "ro": self.revive_offset, "so": self.start_offset, "t": self.topic}

    @classmethod
    def from_json(cls, data: dict) -> CheckPoint:
        start = int(data["so"])
        diffs = data.get("d") or list(range(int(data.get("n", 0))))
        bitmap = int(data.get("bm", 0))
        offsets = [start + int(d) for d in diffs]
        return cls(data["t"], data["c"], int(data["q"]), start, int(data["pt"]),
                   int(data["it"]), offsets, data.get("bn", ""),
                   {o for i, o in enumerate(offsets) if bitmap >> i & 1})


def ack_json(topic: str, group: str, queue_id: int, start_offset: int, pop_time: int,
             broker_name: str, offsets: list[int]) -> tuple[str, dict[str, object]]:
    """AckMsg for one offset, BatchAckMsg for several: the tag and the JSON body."""
    body: dict[str, object] = {"ao": offsets[0] if len(offsets) == 1 else -1, "bn": broker_name,
                               "c": group, "pt": pop_time, "q": queue_id, "so": start_offset,
                               "t": topic}
    if len(offsets) == 1:
        return ACK_TAG, body
    return BATCH_ACK_TAG, {"aol": offsets, **body}


class ReviveService:
    def __init__(self, broker: BrokerController) -> None:
        self.broker = broker
        self.topic = revive_topic(broker.config.brokerClusterName)
        self.pending: dict[int, dict[CkKey, CheckPoint]] = {
            q: {} for q in range(broker.config.reviveQueueNum)}
        self._writing = dict.fromkeys(self.pending, 0)  # puts in flight per revive queue
        self._task: asyncio.Task | None = None

    @property
    def in_flight(self) -> int:
        return sum(len(cks) for cks in self.pending.values())

    def start(self) -> None:
        self.replay()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for qid in self.pending:
            self._commit(qid)

    # -- the durable record --------------------------------------------------------------

    def replay(self) -> None:
        """Rebuild the in-flight checkpoints from the revive queues after a start."""
        store, offsets = self.broker.store, self.broker.offsets
        for qid in self.pending:
            cq = store.find_queue(self.topic, qid)
            if cq is None:
                continue
            offset = max(offsets.query(REVIVE_GROUP, self.topic, qid), cq.min_offset)
            while offset < cq.max_offset:
                read = 0
                for q_offset, phy, _size, _tags in cq.entries(offset, cq.max_offset - offset):
                    read += 1
                    record = store.message_at(phy)
                    if record is not None:
                        self._apply(qid, q_offset, record)
                if not read:
                    break
                offset += read
        if self.in_flight:
            _log.info("pop.replayed", checkpoints=self.in_flight)

    def _apply(self, qid: int, q_offset: int, record: MessageExt) -> None:
        try:
            data = json.loads(record.body)
            tag = record.properties.get(TAGS)
            if tag == CK_TAG:
                ck = CheckPoint.from_json(data)
                ck.revive_offset = q_offset
                self.pending[qid][ck.key] = ck
                self._restore_pop_offset(ck)
            elif tag in (ACK_TAG, BATCH_ACK_TAG):
                offsets = data.get("aol") or [data["ao"]]
                self.apply_ack(qid, (data["t"], data["c"], int(data["q"]), int(data["so"]),
                                     int(data["pt"])), [int(o) for o in offsets])
        except (ValueError, KeyError, TypeError) as exc:
            _log.warning("pop.bad_revive_record", queue=qid, offset=q_offset, error=exc)

    def _restore_pop_offset(self, ck: CheckPoint) -> None:
        """After a crash the group's POP offset may be older than its last checkpoints
        (offsets are persisted every few seconds, checkpoints are in the CommitLog): move it
        past them, or acked messages would be popped again."""
        offsets = self.broker.offsets
        after = max(ck.offsets, default=ck.start_offset - 1) + 1
        if offsets.query(ck.group, ck.topic, ck.queue_id) < after:
            offsets.commit(ck.group, ck.topic, ck.queue_id, after)

    def apply_ack(self, qid: int, key: CkKey, offsets: list[int]) -> bool:
        """Mark offsets of a checkpoint acked; False when no such checkpoint is in flight
        (already revived, or acked twice)."""
        ck = self.pending.get(qid, {}).get(key)
        if ck is None:
            return False
        ck.acked.update(o for o in offsets if o in ck.offsets)
        if len(ck.acked) == len(ck.offsets):
            del self.pending[qid][key]
        return True

    async def _put(self, qid: int, tag: str, body: dict[str, object]) -> int | None:
        """Append one revive record; its offset in the revive queue, or None if not stored."""
        broker = self.broker
        broker.ensure_topic(self.topic, broker.config.reviveQueueNum, PERM_READ | PERM_WRITE)
        now = int(time.time() * 1000)
        record = Message(self.topic, qid, json.dumps(body, separators=(",", ":")).encode(),
                         {TAGS: tag}, born_timestamp=now, born_host=broker.store.store_host)
        self._writing[qid] += 1
        try:
            result = await broker.store.put_message(record)
        finally:
            self._writing[qid] -= 1
        if not result.ok or result.appended is None:
            _log.warning("pop.revive_put_failed", queue=qid, tag=tag, status=result.status)
            return None
        return result.appended.queue_offset

    async def add_checkpoint(self, qid: int, ck: CheckPoint) -> bool:
        offset = await self._put(qid, CK_TAG, ck.to_json())
        if offset is None:
            return False
        ck.revive_offset = offset
        self.pending[qid][ck.key] = ck
        return True

    async def ack(self, qid: int, key: CkKey, broker_name: str, offsets: list[int]) -> bool:
        topic, group, queue_id, start, pop_time = key
        tag, body = ack_json(topic, group, queue_id, start, pop_time, broker_name, offsets)
        if await self._put(qid, tag, body) is None:
            return False
        self.apply_ack(qid, key, offsets)
        return True

    # -- revival ---------------------------------------------------------------------------

    async def _run(self) -> None:
        period = max(self.broker.config.reviveInterval, 100) / 1000.0
        while True:
            await asyncio.sleep(period)
            try:
                await self.revive_due(int(time.time() * 1000))
            except Exception:  # noqa: BLE001 - the service must outlive one bad checkpoint
                _log.exception("pop.revive_failed")

    async def revive_due(self, now: int) -> int:
        """Revive every checkpoint past its invisible time; returns how many messages moved."""
        moved = 0
        for qid, cks in self.pending.items():
            for ck in [c for c in cks.values() if c.revive_time <= now]:
                count = await self._revive(qid, ck)
                if count is None:
                    break  # the store refused; try again on the next round
                moved += count
            self._commit(qid)
        return moved

    async def _revive(self, qid: int, ck: CheckPoint) -> int | None:
        store = self.broker.store
        cq = store.find_queue(ck.topic, ck.queue_id)
        moved: list[int] = []
        for offset in ck.offsets:
            if offset in ck.acked:
                continue
            entry = cq.entry(offset) if cq is not None else None
            original = store.message_at(entry[0]) if entry is not None else None
            if original is not None:
                result = await store.put_message(self._retry_message(ck, original))
                if not result.ok:
                    _log.warning("pop.revive_put_failed", topic=ck.topic, offset=offset,
                                 status=result.status)
                    return None
            moved.append(offset)
        if moved:
            await self.ack(qid, ck.key, ck.broker_name, moved)
        self.pending[qid].pop(ck.key, None)
        return len(moved)

    def _retry_message(self, ck: CheckPoint, original: MessageExt) -> Message:
        """The popped message again, in the POP retry topic or, retried enough, the DLQ."""
        broker = self.broker
        group = broker.groups.find(ck.group, auto_create=True) or {}
        props = dict(original.properties)
        if original.reconsume_times == 0 or FIRST_POP_TIME not in props:
            props[FIRST_POP_TIME] = str(ck.pop_time)
        if original.reconsume_times >= int(group.get("retryMaxTimes", 16)):
            prefix = f"{RETRY_PREFIX}{ck.group}_"
            props.setdefault(RETRY_TOPIC, ck.topic.removeprefix(prefix))
            topic = broker.ensure_topic(DLQ_PREFIX + ck.group, 1,
                                        PERM_READ | PERM_WRITE).topicName  # as send_back's
        elif ck.topic.startswith(RETRY_PREFIX):
            topic = ck.topic
        else:
            topic = broker.ensure_topic(pop_retry_topic(ck.topic, ck.group), 1,
                                        PERM_READ | PERM_WRITE).topicName
        return Message.copy_of(original, topic, 0, props, born_host=broker.store.store_host,
                               reconsume_times=min(original.reconsume_times + 1, INT32[1]))

    def _commit(self, qid: int) -> None:
        """Move the revive group's offset up to the oldest checkpoint still in flight."""
        if self._writing[qid] or self.broker.store.find_queue(self.topic, qid) is None:
            return  # a record is being written whose checkpoint is not in `pending` yet
        cks = self.pending[qid]
        offset = (min(c.revive_offset for c in cks.values()) if cks
                  else self.broker.store.max_offset(self.topic, qid))
        offsets = self.broker.offsets
        if offsets.query(REVIVE_GROUP, self.topic, qid) != offset:
            offsets.commit(REVIVE_GROUP, self.topic, qid, offset)

"""Delay levels (ScheduleMessageService): messages parked in SCHEDULE_TOPIC_XXXX, queue
level - 1, go back to their real topic and queue when due. Progress per level is kept in
delayOffset.json as `{"offsetTable":{level:offset}}`, as Java keeps it, so a restart neither
loses a delayed message nor delivers one twice beyond at-least-once."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from rmqnode import log
from rmqnode.broker.configfile import JsonConfigFile
from rmqnode.message import DELAY, REAL_QID, REAL_TOPIC, WAIT, MessageExt
from rmqnode.net.fastjson import UnquotedKey
from rmqnode.storage.dispatch import SCHEDULE_TOPIC
from rmqnode.storage.store import Message

if TYPE_CHECKING:
    from rmqnode.broker.controller import BrokerController

_log = log.get("rmqnode.broker")


class DelayOffsetManager(JsonConfigFile):
    file_name = "delayOffset.json"

    def __init__(self, config) -> None:
        super().__init__(config)
        self.table: dict[int, int] = {}

    def decode(self, data: dict[str, Any]) -> None:
        levels = self.valid_entries(self.table_of(data, "offsetTable"),
                                    lambda level, offset: (int(level), int(offset)))
        self.table = dict(levels.values())

    def encode(self) -> dict[str, Any]:
        return {"offsetTable": {UnquotedKey(k): v for k, v in sorted(self.table.items())}}


class ScheduleService:
    def __init__(self, broker: BrokerController) -> None:
        self.broker = broker
        self.offsets = DelayOffsetManager(broker.config)
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.offsets.persist()

    async def _run(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(0.1)
            try:
                await self.deliver_due(int(time.time() * 1000))
            except Exception:  # noqa: BLE001 - the service must outlive one bad message
                _log.exception("schedule.failed")
            ticks += 1
            if ticks % 100 == 0:
                self.offsets.persist_if_dirty()

    async def deliver_due(self, now: int) -> int:
        """Move every due message of every level back to its real topic; returns how many."""
        store = self.broker.store
        moved = 0
        for level in range(1, len(store.delay_levels) + 1):
            cq = store.find_queue(SCHEDULE_TOPIC, level - 1)
            if cq is None:
                continue
            offset = max(self.offsets.table.get(level, 0), cq.min_offset)
            while offset < cq.max_offset:
                entry = cq.entry(offset)
                if entry is None or entry[2] > now:
                    break  # a level's queue is in due-time order: nothing after is due either
                parked = store.message_at(entry[0])
                if parked is not None:
                    result = await store.put_message(self._unparked(parked))
                    if not result.ok:
                        _log.warning("schedule.redeliver_failed", level=level, offset=offset,
                                     status=result.status)
                        break  # try again on the next tick
                    moved += 1
                offset += 1
                self.offsets.table[level] = offset
                self.offsets.dirty = True
        return moved

    def _unparked(self, parked: MessageExt) -> Message:
        """Java's messageTimeup: the delivered copy's record keeps every property it was parked
        with (DELAY, REAL_TOPIC, REAL_QID, WAIT), so a consumer still reads its delay level;
        only the put itself goes without the level (no parking again) and without waiting
        for the disk."""
        props = dict(parked.properties)
        topic = props.get(REAL_TOPIC, parked.topic)
        queue_id = int(props.get(REAL_QID, "0"))
        props.pop(DELAY, None)
        props[WAIT] = "false"
        return Message.copy_of(parked, topic, queue_id, props,
                               properties_string=parked.properties_text)

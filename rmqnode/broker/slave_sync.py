"""A slave's copy of its master's metadata (Java's SlaveSynchronize): topic configs, consumer
offsets, delay offsets and subscription groups, fetched every 10 s with GET_ALL_TOPIC_CONFIG,
GET_ALL_CONSUMER_OFFSET, GET_ALL_DELAY_OFFSET and GET_ALL_SUBSCRIPTIONGROUP_CONFIG from the
master the name server named in its last register answer (none while the master is down).

One departure from Java: a slave serves consumers while its master is down, and the offsets
they commit there would be overwritten by the master's older ones once it returns (Java's
putAll). Here those commits are first sent to the master (UPDATE_CONSUMER_OFFSET, only where
they are ahead of what the master has), then the master's table is taken: they survive the
master's return, and an offset reset on the master is never undone by an old slave commit.
For the same reason a slave without a master registers again every round (10 s) instead of
every registerNameServerPeriod: the answer names a returning master soon.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from rmqnode import log
from rmqnode.broker.groups import SubscriptionGroupManager
from rmqnode.broker.offsets import SEPARATOR, ConsumerOffsetManager
from rmqnode.broker.topics import TopicConfigManager
from rmqnode.errors import ConnectionLost, RemotingTimeout
from rmqnode.net import fastjson
from rmqnode.net.client import RemotingClient
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode, ResponseCode

if TYPE_CHECKING:
    from rmqnode.broker.controller import BrokerController

_log = log.get("rmqnode.broker")

PERIOD = 10.0  # seconds, Java's fixed rate
FIRST_AFTER = 3.0
TIMEOUT = 3.0  # BrokerOuterAPI's getAll* timeout
_BAD_BODY = (ValueError, TypeError, KeyError, AttributeError)


class SyncFailed(Exception):
    """One table could not be copied this round (the master answered badly)."""


class MasterUnreachable(SyncFailed):
    """No answer: the other tables are not asked for this round either."""


class SlaveSynchronize:
    def __init__(self, broker: BrokerController) -> None:
        self.broker = broker
        self.master_addr: str | None = None  # from the name server's register answer
        self.client = RemotingClient()
        self._lock = asyncio.Lock()

    def set_master(self, addr: str | None) -> bool:
        """The master named by a register answer; True when it changed to a live one (the
        caller syncs at once, so commits taken while it was away reach it soon)."""
        changed = addr != self.master_addr
        self.master_addr = addr
        if changed:
            _log.info("slave.master_changed", master=addr or "-")
        return changed and addr is not None

    async def run(self) -> None:
        await asyncio.sleep(FIRST_AFTER)
        while True:
            if self.master_addr is None:
                await self.broker.register_all()  # its answer may name a master (set_master)
            await self.sync_all()
            await asyncio.sleep(PERIOD)

    async def sync_all(self) -> None:
        """Each table on its own, as Java does: one failing leaves the others copied."""
        addr = self.master_addr
        if addr is None or addr == self.broker.addr:
            return
        async with self._lock:
            for name, step in (("topics", self._topics), ("consumer_offsets", self._offsets),
                               ("delay_offsets", self._delay_offsets),
                               ("groups", self._groups)):
                try:
                    await step(addr)
                except MasterUnreachable as exc:
                    _log.warning("slave.master_unreachable", master=addr, error=exc)
                    break
                except SyncFailed as exc:
                    _log.warning("slave.sync_failed", table=name, master=addr, error=exc)
                except OSError as exc:
                    _log.error("slave.persist_failed", table=name, error=exc)

    async def close(self) -> None:
        await self.client.close()

    async def _get(self, addr: str, code: int, fields: dict[str, object] | None = None
                   ) -> RemotingCommand:
        try:
            resp = await self.client.invoke(addr, RemotingCommand.request(code, fields),
                                            timeout=TIMEOUT)
        except (ConnectionLost, RemotingTimeout) as exc:
            raise MasterUnreachable(str(exc)) from None
        if resp.code != ResponseCode.SUCCESS:
            raise SyncFailed(f"code {resp.code}: {resp.remark}")
        return resp

    async def _table(self, addr: str, code: int) -> dict[str, Any]:
        resp = await self._get(addr, code)
        try:
            data = fastjson.loads(resp.body)
        except ValueError as exc:
            raise SyncFailed(f"body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise SyncFailed("body is not a JSON object")
        return data

    async def _topics(self, addr: str) -> None:
        theirs = TopicConfigManager(self.broker.config)
        _decode(theirs, await self._table(addr, RequestCode.GET_ALL_TOPIC_CONFIG))
        _take(self.broker.topics, theirs, "slave.topics_synced", addr)

    async def _groups(self, addr: str) -> None:
        theirs = SubscriptionGroupManager(self.broker.config)
        theirs.table.clear()  # only what the master has
        _decode(theirs, await self._table(addr, RequestCode.GET_ALL_SUBSCRIPTIONGROUP_CONFIG))
        _take(self.broker.groups, theirs, "slave.groups_synced", addr)

    async def _delay_offsets(self, addr: str) -> None:
        delay = self.broker.schedule.offsets
        # Decoded into a copy first: a bad body must not cost the table we have.
        theirs = type(delay)(self.broker.config)
        _decode(theirs, await self._table(addr, RequestCode.GET_ALL_DELAY_OFFSET))
        delay.table = theirs.table
        delay.persist()

    async def _offsets(self, addr: str) -> None:
        theirs = ConsumerOffsetManager(self.broker.config)
        _decode(theirs, await self._table(addr, RequestCode.GET_ALL_CONSUMER_OFFSET))
        ours = self.broker.offsets
        for (key, queue_id), offset in list(ours.local.items()):
            if offset > theirs.table.get(key, {}).get(queue_id, -1):
                await self._send_commit(addr, key, queue_id, offset)
                theirs.table.setdefault(key, {})[queue_id] = offset
            if ours.local.get((key, queue_id)) == offset:  # not committed again meanwhile
                del ours.local[(key, queue_id)]
        ours.table.update(theirs.table)
        for (key, queue_id), offset in ours.local.items():  # commits newer than this round
            ours.table.setdefault(key, {})[queue_id] = offset
        ours.persist()

    async def _send_commit(self, addr: str, key: str, queue_id: int, offset: int) -> None:
        topic, _, group = key.rpartition(SEPARATOR)
        await self._get(addr, RequestCode.UPDATE_CONSUMER_OFFSET, {
            "consumerGroup": group, "topic": topic, "queueId": queue_id,
            "commitOffset": offset})
        _log.info("slave.offset_sent", master=addr, topic=topic, group=group,
                  queue=queue_id, offset=offset)


def _take(ours: Any, theirs: Any, event: str, master: str) -> None:
    """The master's table and dataVersion in place of ours, written to our file, unless
    the versions already match (SlaveSynchronize: nothing changed on the master)."""
    if ours.data_version.to_json() == theirs.data_version.to_json():
        return
    ours.data_version = theirs.data_version
    ours.table.clear()
    ours.table.update(theirs.table)
    ours.persist()
    _log.info(event, master=master, entries=len(ours.table))


def _decode(target: Any, data: dict[str, Any]) -> None:
    try:
        target.decode(data)
    except _BAD_BODY as exc:
        raise SyncFailed(f"body of the wrong shape: {type(exc).__name__}: {exc}") from None

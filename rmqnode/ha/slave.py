"""The slave's side of replication (Java's HAService.HAClient): connect to the master's HA
address, report this CommitLog's end, append what the master pushes at the same offsets.

Reports go out on connect, after each read that appended something, and every
haSendHeartbeatInterval; a master silent for haHousekeepingInterval is dropped and
reconnected to. A lost or refused connection is retried every 5 s, as Java does.

Before appending, each chunk's offset is checked against this CommitLog's end (unless it is
empty). A master offset below it means this slave holds records the master does not (the
master lost its tail in a failover): appending would corrupt the log, so the slave stops
replicating from that master, says so once (`ha.slave_ahead_of_master`) and shows it in its
state until it is told another master address or restarted.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import TYPE_CHECKING

from rmqnode import log
from rmqnode.ha.protocol import ChunkReader, ProtocolError, encode_report
from rmqnode.storage.replica import ReplicaWriter

if TYPE_CHECKING:
    from rmqnode.config import BrokerConfig
    from rmqnode.storage.store import MessageStore

_log = log.get("rmqnode.ha")

RETRY_SECONDS = 5.0  # HAClient waits 5 s after a failed or lost connection

# HA connection states, as `rmqctl` shows them
IDLE = "IDLE"  # no master address yet
CONNECTING = "CONNECTING"
TRANSFER = "TRANSFER"
AHEAD_OF_MASTER = "AHEAD_OF_MASTER"  # refused: this CommitLog has records the master lacks


def _now_ms() -> int:
    return int(time.time() * 1000)


class _MasterLink(asyncio.BufferedProtocol):
    """One connection to the master."""

    def __init__(self, client: HAClient) -> None:
        self.client = client
        self.reader = ChunkReader()
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.last_read = _now_ms()
        self.report()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.reader.buffer()

    def buffer_updated(self, nbytes: int) -> None:
        client = self.client
        client.last_read = _now_ms()
        try:
            chunks = self.reader.received(nbytes)
        except ProtocolError as exc:
            self.drop(str(exc))
            return
        store = client.store
        appended = 0
        for offset, data in chunks:
            mine = store.commitlog.max_offset
            if mine and offset != mine:
                client.mismatch(mine, offset)
                self.drop(f"master offset {offset} != slave offset {mine}")
                return
            if data:
                try:
                    client.writer.append(offset, data)
                except (ValueError, OSError) as exc:
                    _log.error("ha.append_failed", offset=offset, size=len(data), error=exc)
                    self.drop("cannot append")
                    return
                appended += len(data)
        if appended:
            client.received_bytes += appended
            self.report()

    def report(self) -> None:
        """Tell the master where this CommitLog ends."""
        if self.transport is not None and not self.transport.is_closing():
            offset = self.client.store.commitlog.max_offset
            self.transport.write(encode_report(offset))
            self.client.reported_offset = offset
            self.client.last_write = _now_ms()

    def drop(self, reason: str) -> None:
        _log.warning("ha.master_dropped", master=self.client.master_addr, reason=reason)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def eof_received(self) -> bool:
        return False


class HAClient:
    def __init__(self, config: BrokerConfig, store: MessageStore) -> None:
        self.config = config
        self.store = store
        self.writer = ReplicaWriter(store)
        self.master_addr = config.haMasterAddress or ""
        self.state = IDLE if not self.master_addr else CONNECTING
        self.ahead: tuple[int, int] | None = None  # (our offset, master's) when refused
        self.reported_offset = 0
        self.received_bytes = 0
        self.last_read = self.last_write = 0
        self._link: _MasterLink | None = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None

    def update_master_address(self, addr: str) -> None:
        """The master's HA address, as the name server or the configuration names it; a new
        address ends a refusal (it may be another master) and reconnects."""
        if not addr or addr == self.master_addr:
            return
        _log.info("ha.master_address", old=self.master_addr or "-", new=addr)
        self.master_addr = addr
        self.ahead = None
        self.state = CONNECTING
        if self._link is not None and self._link.transport is not None:
            self._link.transport.close()
        self._changed.set()

    def mismatch(self, mine: int, master: int) -> None:
        """A chunk's offset is not where this CommitLog ends (Java: "master pushed offset not
        equal the max phy offset in slave")."""
        if mine > master:
            self.ahead = (mine, master)
            self.state = AHEAD_OF_MASTER
            _log.error("ha.slave_ahead_of_master", master=self.master_addr, slave_offset=mine,
                       master_offset=master, action="replication stopped: this CommitLog "
                       "has records the master does not; restart the slave from the master's "
                       "data or point it at another master")
        else:
            _log.error("ha.offset_mismatch", master=self.master_addr, slave_offset=mine,
                       master_offset=master)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._link is not None and self._link.transport is not None:
            self._link.transport.close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.master_addr or self.ahead is not None:
                self._changed.clear()
                await self._changed.wait()
                continue
            host, _, port = self.master_addr.rpartition(":")
            self.state = CONNECTING
            try:
                _, link = await asyncio.wait_for(loop.create_connection(
                    lambda: _MasterLink(self), host, int(port)), RETRY_SECONDS)
            except (OSError, asyncio.TimeoutError, ValueError) as exc:
                _log.info("ha.connect_failed", master=self.master_addr, error=exc)
                await self._pause()
                continue
            self._link = link
            self.state = TRANSFER
            _log.info("ha.master_connected", master=self.master_addr,
                      offset=self.store.commitlog.max_offset)
            try:
                await self._keep(link)
            finally:
                self._link = None
                if link.transport is not None:
                    link.transport.close()
            if self.ahead is None:
                self.state = CONNECTING
                await self._pause()

    async def _pause(self) -> None:
        """RETRY_SECONDS, or less when the address changes."""
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), RETRY_SECONDS)
        except asyncio.TimeoutError:
            pass

    async def _keep(self, link: _MasterLink) -> None:
        """Heartbeat reports and housekeeping until the connection ends."""
        heartbeat = self.config.haSendHeartbeatInterval / 1000
        while not link.closed.done():
            await asyncio.wait({link.closed}, timeout=heartbeat)
            if link.closed.done():
                return
            now = _now_ms()
            if now - self.last_write >= self.config.haSendHeartbeatInterval:
                link.report()
            silent = now - self.last_read
            if silent > self.config.haHousekeepingInterval:
                link.drop(f"master silent for {silent} ms")
                await link.closed

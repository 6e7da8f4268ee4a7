"""The master's side of replication (Java's HAService accept loop, HAConnection and
GroupTransferService): a listener on haListenPort, one connection per slave, each pushing
the CommitLog from where its slave said it is, and the acks that release SYNC_MASTER sends.

A slave's first report is where its CommitLog ends: pushing starts there, or, for an empty
slave (0), at the start of this CommitLog's last file, as Java does. Chunks never cross a
file (a file's data, then the next one's), at most haTransferBatchSize bytes each; with
nothing to send, a heartbeat header (the next offset, size 0) goes out every
haSendHeartbeatInterval. A slave silent for haHousekeepingInterval is dropped.

A slave that reports more than this CommitLog holds has records this master never wrote (a
failover that lost the master's tail): it is answered with a header naming this master's
end, which makes any slave (Java's too) stop and say that the offsets differ, and dropped.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import TYPE_CHECKING

from rmqnode import log
from rmqnode.ha.protocol import MAX_CHUNK, ProtocolError, ReportReader, encode_header
from rmqnode.storage.waiters import OffsetWaiters

if TYPE_CHECKING:
    from rmqnode.config import BrokerConfig
    from rmqnode.storage.store import MessageStore

_log = log.get("rmqnode.ha")

# Bytes pushed per event loop iteration at most, so one catching-up slave never keeps the
# loop from the broker's clients.
_PUSH_PER_TURN = 1024 * 1024


def _now_ms() -> int:
    return int(time.time() * 1000)


class SlaveConnection(asyncio.Protocol):
    """One slave (HAConnection): reads its reports, pushes it the CommitLog."""

    def __init__(self, master: HAMaster) -> None:
        self.master = master
        self.addr = "?"
        self.transport: asyncio.Transport | None = None
        self.reader = ReportReader()
        self.request_offset: int | None = None  # the slave's first report
        self.ack_offset = -1  # its latest report (slaveAckOffset)
        self.transfer_from = -1  # nextTransferFromWhere
        self.last_read = self.last_write = _now_ms()
        self._wake = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._task: asyncio.Task | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self.addr = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.master.connections.add(self)
        _log.info("ha.slave_connected", peer=self.addr)
        self._task = asyncio.get_running_loop().create_task(self._push())

    def data_received(self, data: bytes) -> None:
        self.last_read = _now_ms()
        try:
            offset = self.reader.feed(data)
        except ProtocolError as exc:
            _log.warning("ha.slave_dropped", peer=self.addr, reason=str(exc))
            self.close()
            return
        if offset is not None:
            self._reported(offset)

    def connection_lost(self, exc: Exception | None) -> None:
        self.master.connections.discard(self)
        if self._task is not None:
            self._task.cancel()
        self._writable.set()
        _log.info("ha.slave_disconnected", peer=self.addr, acked=self.ack_offset)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- reports ---------------------------------------------------------------------------

    def _reported(self, offset: int) -> None:
        end = self.master.store.commitlog.max_offset
        if offset > end:
            if self.request_offset is None:
                # Tell the slave where this CommitLog ends: its own check stops it there.
                self.transport.write(encode_header(end, 0))  # type: ignore[union-attr]
                _log.error("ha.slave_ahead", peer=self.addr, slave_offset=offset,
                           master_offset=end, action="slave refused: its CommitLog has "
                           "records this master does not")
                self.master.refused[self.addr] = (offset, end)
            else:  # as HAConnection: an ack past what was ever sent
                _log.warning("ha.slave_dropped", peer=self.addr, reason=f"acked offset "
                             f"{offset} is past this CommitLog's end {end}")
            self.close()
            return
        self.ack_offset = offset
        if self.request_offset is None:
            self.request_offset = offset
            _log.info("ha.slave_request", peer=self.addr, offset=offset)
            self._wake.set()
        self.master.acked(offset)

    # -- pushing ---------------------------------------------------------------------------

    async def _push(self) -> None:
        """WriteSocketService: wait for the first report, then push for good."""
        master = self.master
        config = master.config
        heartbeat = config.haSendHeartbeatInterval
        while self.request_offset is None:
            await self._sleep(heartbeat)
            if self._expired():
                return
        if self.request_offset == 0:
            end = master.store.commitlog.max_offset
            self.transfer_from = end - end % config.mappedFileSizeCommitLog
        else:
            self.transfer_from = self.request_offset
        _log.info("ha.transfer_from", peer=self.addr, offset=self.transfer_from,
                  requested=self.request_offset)
        batch = min(config.haTransferBatchSize, MAX_CHUNK)
        transport = self.transport
        assert transport is not None
        while not transport.is_closing():
            pushed = 0
            while pushed < _PUSH_PER_TURN and self._writable.is_set():
                chunk = master.chunk(self.transfer_from, batch)
                if chunk is None:
                    break
                transport.write(encode_header(self.transfer_from, len(chunk)))
                transport.write(chunk)
                self.transfer_from += len(chunk)
                pushed += len(chunk)
                del chunk
            if pushed:
                self.last_write = _now_ms()
                await asyncio.sleep(0)
                continue
            if not self._writable.is_set():
                await self._writable.wait()
                continue
            if _now_ms() - self.last_write > heartbeat:
                transport.write(encode_header(self.transfer_from, 0))
                self.last_write = _now_ms()
            if self._expired():
                return
            await self._sleep(heartbeat)

    async def _sleep(self, millis: int) -> None:
        """Until new data (or the first report), at most `millis`."""
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), millis / 1000)
        except asyncio.TimeoutError:
            pass

    def wake(self) -> None:
        self._wake.set()

    def _expired(self) -> bool:
        silent = _now_ms() - self.last_read
        if silent > self.master.config.haHousekeepingInterval:
            _log.warning("ha.slave_expired", peer=self.addr, silent_ms=silent)
            self.close()
            return True
        return False

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class HAMaster:
    """The listener and its slaves; push2SlaveMaxOffset and the SYNC_MASTER waiters."""

    def __init__(self, config: BrokerConfig, store: MessageStore) -> None:
        self.config = config
        self.store = store
        self.connections: set[SlaveConnection] = set()
        self.refused: dict[str, tuple[int, int]] = {}  # slave -> (its offset, ours) when refused
        self.push2slave_max = 0
        self.waiters = OffsetWaiters()
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        store.append_listeners.append(self._appended)

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.get_running_loop().create_server(
            lambda: SlaveConnection(self), host, port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for conn in list(self.connections):
            conn.close()
        self.waiters.fail_all()
        if self.server is not None:
            await self.server.wait_closed()

    def _appended(self) -> None:
        for conn in self.connections:
            conn.wake()

    def chunk(self, offset: int, limit: int) -> memoryview | None:
        """The CommitLog's bytes from `offset`, at most `limit`, within one file (getCommitLogData);
        None when there are none yet."""
        mf = self.store.commitlog.files.find(offset)
        if mf is None:
            return None
        local = offset - mf.file_from_offset
        size = min(mf.wrote_position - local, limit)
        return mf.view(local, size) if size > 0 else None

    def acked(self, offset: int) -> None:
        """A slave has everything before `offset` (notifyTransferSome)."""
        if offset > self.push2slave_max:
            self.push2slave_max = offset
            self.waiters.reached(offset)

    def slave_ok(self, master_put_where: int) -> bool:
        """isSlaveOK: a slave is connected and not too far behind for a send to wait for it."""
        return bool(self.connections) and (
            master_put_where - self.push2slave_max < self.config.haSlaveFallbehindMax)

    def in_sync(self, conn: SlaveConnection, master_put_where: int) -> bool:
        return conn.ack_offset >= 0 and (
            master_put_where - conn.ack_offset < self.config.haSlaveFallbehindMax)

"""Replication as the broker sees it (Java's HAService as DefaultMessageStore and CommitLog use
it): the HA listener every node runs, the client a slave runs, the wait of a SYNC_MASTER send
for its slave, and the figures for the runtime info.

The listener's port is haListenPort, or listenPort + 1 when that is 0, or a free port when
both are 0 (nodes started on port 0); the port bound is written back to haListenPort, so the
registration's haServerAddr names it, and printed in the `ha.started` line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from rmqnode import log
from rmqnode.config import BrokerConfig
from rmqnode.ha.master import HAMaster
from rmqnode.ha.slave import HAClient
from rmqnode.storage import store as st

SYNC_MASTER = "SYNC_MASTER"
SLAVE = "SLAVE"
FLUSH, REPLICA = 1, 2  # what a put waits for (HAService.waits)


class HAService:
    def __init__(self, config: BrokerConfig, store: st.MessageStore) -> None:
        self.config = config
        self.store = store
        self.master = HAMaster(config, store)
        self.client = HAClient(config, store) if config.brokerRole == SLAVE else None
        # decided before the broker binds listenPort 0 and writes the real port back
        self._port = config.haListenPort or (config.listenPort + 1 if config.listenPort else 0)

    async def start(self) -> None:
        await self.master.start(self.config.listenAddress, self._port)
        self.config.haListenPort = self.master.port
        if self.client is not None:
            self.client.start()
        log.lifecycle.info("ha.started", addr=self.config.ha_server_addr,
                           role=self.config.brokerRole,
                           master=self.client.master_addr or "-" if self.client else "-")

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.stop()
        await self.master.stop()

    def update_master_address(self, addr: str) -> None:
        """A slave's master HA address, from the name server's register answer (haServerAddr);
        haMasterAddress, when set, wins, as in Java (updateMasterHAServerAddrPeriodically)."""
        if self.client is not None and not self.config.haMasterAddress:
            self.client.update_master_address(addr)

    # -- the send path -------------------------------------------------------------------

    def must_wait_replica(self, result: st.PutResult, wait_store: bool) -> bool:
        return (self.config.brokerRole == SYNC_MASTER and result.status == st.PUT_OK
                and wait_store)

    def may_wait(self) -> bool:
        """Whether a put can have anything to wait for: no under ASYNC_FLUSH on a master or
        an ASYNC_MASTER, the common case, where a send is answered as it is stored."""
        return self.store.sync_flush or self.config.brokerRole == SYNC_MASTER

    def waits(self, result: st.PutResult, wait_store: bool) -> int:
        """What a put must wait for before it is answered, as the broker promises: FLUSH
        (on disk, under SYNC_FLUSH), REPLICA (on a slave, under SYNC_MASTER), both at once as
        Java combines them, or nothing (0)."""
        if not self.may_wait():
            return 0
        return (FLUSH * self.store.must_wait_flush(result, wait_store)
                | REPLICA * self.must_wait_replica(result, wait_store))

    def wait(self, result: st.PutResult, waits: int,
             callback: Callable[[st.PutResult], None]) -> None:
        """callback(result) once what `waits` names is done. The status becomes
        FLUSH_DISK_TIMEOUT, FLUSH_SLAVE_TIMEOUT (no ack within slaveTimeout) or
        SLAVE_NOT_AVAILABLE (no slave, or one more than haSlaveFallbehindMax behind), the
        slave's verdict winning."""
        if waits == FLUSH:  # SYNC_FLUSH alone: the flush's own callback is the answer's
            self.store.when_flushed(result, callback)
            return
        replica_status = st.PUT_OK
        pending = 1 + (waits & FLUSH)  # the slave's ack, and the flush if it is waited for

        def done() -> None:
            nonlocal pending
            pending -= 1
            if pending == 0:
                if replica_status != st.PUT_OK:
                    result.status = replica_status
                callback(result)

        def replicated(ok: bool) -> None:
            nonlocal replica_status
            if not ok:
                replica_status = st.FLUSH_SLAVE_TIMEOUT
            done()

        appended = result.appended
        assert appended is not None
        end = appended.wrote_offset + appended.wrote_bytes
        if not self.master.slave_ok(end):
            replica_status = st.SLAVE_NOT_AVAILABLE
            done()
        elif end <= self.master.push2slave_max:
            done()
        else:
            self.master.waiters.add(end, self.config.slaveTimeout / 1000, replicated)
        if waits & FLUSH:
            self.store.when_flushed(result, lambda _: done())

    async def wait_stored(self, result: st.PutResult, wait_store: bool) -> st.PutResult:
        """The result once the put is as safe as the broker promises (`waits`); at once when
        nothing is to wait for."""
        waits = self.waits(result, wait_store)
        if not waits:
            return result
        fut: asyncio.Future[st.PutResult] = asyncio.get_running_loop().create_future()
        self.wait(result, waits, lambda r: fut.done() or fut.set_result(r))
        return await fut

    # -- figures -----------------------------------------------------------------------

    def runtime_info(self) -> dict[str, str]:
        """Replication figures for GET_BROKER_RUNTIME_INFO (strings, as that table holds).
        A master: its slaves and how far behind the furthest acked one is
        (slaveFallBehindMuch, the figure Java's broker logs every minute); a slave: its
        master, connection state and offsets."""
        end = self.store.commitlog.max_offset
        table = {"haListenPort": str(self.config.haListenPort), "haServerAddr":
                 self.config.ha_server_addr}
        if self.client is None:
            slaves = self.master.connections
            table |= {"haSlaveConnections": str(len(slaves)),
                      "haInSyncSlaveNums": str(sum(self.master.in_sync(c, end) for c in slaves)),
                      "haPush2SlaveMaxOffset": str(self.master.push2slave_max),
                      "slaveFallBehindMuch": str(end - self.master.push2slave_max
                                                 if slaves else 0)}
        else:
            client = self.client
            table |= {"haMasterAddress": client.master_addr, "haConnectionState": client.state,
                      "haReportedOffset": str(client.reported_offset),
                      "haLastReadTimestamp": str(client.last_read),
                      "haReceivedBytes": str(client.received_bytes)}
        return table

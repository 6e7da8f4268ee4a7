"""The NameServer role: route registry on its own port, with broker liveness."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable

from rmqnode import log
from rmqnode.atomicfile import write_atomic
from rmqnode.config import NamesrvConfig, apply, write_properties
from rmqnode.namesrv.kvconfig import KVConfigManager
from rmqnode.namesrv.processor import NamesrvProcessor
from rmqnode.namesrv.routes import RouteInfoManager
from rmqnode.net.connection import Connection, Dispatcher
from rmqnode.net.server import RemotingServer

_log = log.get("rmqnode.namesrv")


class NameServer:
    def __init__(self, config: NamesrvConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.routes = RouteInfoManager(config.brokerChannelExpiredMillis / 1000.0)
        self.kv = KVConfigManager(config.kvConfigPath)
        dispatcher = Dispatcher()
        dispatcher.update(NamesrvProcessor(self).table())
        self.server = RemotingServer(dispatcher, config.listenAddress, config.listenPort,
                                     idle_timeout=config.serverChannelMaxIdleTimeSeconds,
                                     max_buffered_input=config.maxBufferedInputBytes,
                                     frame_timeout=config.frameCompleteTimeoutMillis / 1000)
        self.server.close_listeners.append(self._on_close)
        self._scanner: asyncio.Task | None = None

    @property
    def addr(self) -> str:
        return f"{self.config.listenAddress}:{self.server.port}"

    async def start(self) -> None:
        self.kv.load()
        await self.server.start()
        self.config.listenPort = self.server.port
        self._scanner = asyncio.create_task(self._scan_loop())
        log.lifecycle.info("namesrv.started", addr=self.addr)

    async def stop(self) -> None:
        if self._scanner is not None:
            self._scanner.cancel()
        await self.server.stop()
        log.lifecycle.info("namesrv.stopped", addr=self.addr)

    def _on_close(self, conn: Connection) -> None:
        for addr in self.routes.channel_closed(conn):
            _log.warning("broker.connection_closed", addr=addr, peer=conn.peer)

    async def _scan_loop(self) -> None:
        interval = self.config.scanNotActiveBrokerIntervalMillis / 1000.0
        while True:
            await asyncio.sleep(interval)
            self.scan_not_active_brokers()

    def scan_not_active_brokers(self) -> None:
        for addr, channel in self.routes.expire(self.clock()):
            _log.warning("broker.expired", addr=addr,
                         silent_for_s=self.config.brokerChannelExpiredMillis // 1000)
            if isinstance(channel, Connection):
                channel.close()

    def update_config(self, props: dict[str, str]) -> None:
        """UPDATE_NAMESRV_CONFIG: apply, then persist to configStorePath as Java does. A value
        that does not convert (ConfigError) refuses the whole update: tried on a copy first."""
        apply(copy.copy(self.config), props, "UPDATE_NAMESRV_CONFIG")
        apply(self.config, props, "UPDATE_NAMESRV_CONFIG")
        if self.config.configStorePath:
            write_atomic(self.config.configStorePath, write_properties(self.config).encode())
        _log.info("namesrv.config_updated", keys=",".join(props))

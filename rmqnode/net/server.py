"""The asyncio remoting server: accepts connections and runs a Dispatcher for each of them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from rmqnode import log
from rmqnode.net.codec import DEFAULT_MAX_FRAME
from rmqnode.net.connection import Connection, Dispatcher

_log = log.get("rmqnode.net")


class RemotingServer:
    """Serves one listen address. Connections idle longer than `idle_timeout` are closed,
    as the Java server does after 120 s; live clients keep theirs open with heartbeats."""

    def __init__(self, dispatcher: Dispatcher, host: str, port: int,
                 max_frame: int = DEFAULT_MAX_FRAME, idle_timeout: float = 120.0) -> None:
        self.dispatcher = dispatcher
        self.host = host
        self.port = port
        self.max_frame = max_frame
        self.idle_timeout = idle_timeout
        self.connections: set[Connection] = set()
        self.close_listeners: list[Callable[[Connection], None]] = []
        self._server: asyncio.base_events.Server | None = None
        self._reaper: asyncio.Task | None = None

    def _on_close(self, conn: Connection) -> None:
        self.connections.discard(conn)
        _log.debug("connection.closed", peer=conn.peer, port=self.port)
        for listener in self.close_listeners:
            try:
                listener(conn)
            except Exception:  # noqa: BLE001 - one broken listener must not hide the others
                _log.exception("connection.close_listener_failed", peer=conn.peer)

    def _new_connection(self) -> Connection:
        conn = Connection(self.dispatcher, self.max_frame, self._on_close)
        self.connections.add(conn)
        return conn

    async def start(self, serving: bool = True) -> None:
        """Bind (and learn the port if 0 was asked for); with serving=False, accept nothing
        until serve(), so a role can finish starting behind an address it already knows."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._new_connection, self.host, self.port,
                                                reuse_address=True, start_serving=serving)
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]
        self._reaper = asyncio.create_task(self._reap_idle())

    async def serve(self) -> None:
        assert self._server is not None
        await self._server.start_serving()

    async def _reap_idle(self) -> None:
        while True:
            await asyncio.sleep(min(10.0, self.idle_timeout / 2))
            cutoff = time.monotonic() - self.idle_timeout
            for conn in [c for c in self.connections if c.last_active < cutoff]:
                _log.info("connection.idle_closed", peer=conn.peer)
                conn.close()

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close()
        if self._server is not None:
            await self._server.wait_closed()

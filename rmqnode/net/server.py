"""The asyncio remoting server: accepts connections and runs a Dispatcher for each of them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from rmqnode import log
from rmqnode.net.codec import DEFAULT_MAX_FRAME
from rmqnode.net.connection import Connection, Dispatcher

_log = log.get("rmqnode.net")

DEFAULT_MAX_BUFFERED_INPUT = 128 * 1024 * 1024
DEFAULT_FRAME_TIMEOUT = 30.0


class RemotingServer:
    """Serves one listen address. Connections idle longer than `idle_timeout` are closed,
    as the Java server does after 120 s; live clients keep theirs open with heartbeats.

    What peers can make the node hold is bounded too: the bytes of incomplete frames, all
    connections together, by `max_buffered_input` (past it the connections holding the
    most are closed: 40 peers each sending 15 MiB of a 16 MiB frame took 657 MB); and
    the time a started frame may take to complete, by `frame_timeout` (so a peer cannot
    keep such a buffer for ever by trickling bytes that also keep it from idling out)."""

    def __init__(self, dispatcher: Dispatcher, host: str, port: int,
                 max_frame: int = DEFAULT_MAX_FRAME, idle_timeout: float = 120.0,
                 max_buffered_input: int = DEFAULT_MAX_BUFFERED_INPUT,
                 frame_timeout: float = DEFAULT_FRAME_TIMEOUT) -> None:
        self.dispatcher = dispatcher
        self.host = host
        self.port = port
        self.max_frame = max_frame
        self.idle_timeout = idle_timeout
        self.max_buffered_input = max_buffered_input
        self.frame_timeout = frame_timeout
        self.buffered_input = 0  # bytes in incomplete frames, all connections together
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
        conn = Connection(self.dispatcher, self.max_frame, self._on_close, self._on_input)
        self.connections.add(conn)
        return conn

    def _on_input(self, conn: Connection, delta: int) -> None:
        self.buffered_input += delta
        while self.buffered_input > self.max_buffered_input:
            biggest = max(self.connections, key=lambda c: c.buffered_input)
            _log.warning("connection.input_limit_closed", peer=biggest.peer,
                         buffered=biggest.buffered_input, total=self.buffered_input,
                         limit=self.max_buffered_input)
            biggest.close()  # which gives its bytes back through _on_input

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
        """Close idle connections, and those whose started frame is overdue."""
        while True:
            await asyncio.sleep(min(10.0, self.idle_timeout / 2, self.frame_timeout / 2))
            now = time.monotonic()
            for conn in list(self.connections):
                if conn.last_active < now - self.idle_timeout:
                    _log.info("connection.idle_closed", peer=conn.peer)
                    conn.close()
                elif conn.frame_started is not None and \
                        conn.frame_started < now - self.frame_timeout:
                    _log.warning("connection.frame_timeout", peer=conn.peer,
                                 buffered=conn.buffered_input, seconds=self.frame_timeout)
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

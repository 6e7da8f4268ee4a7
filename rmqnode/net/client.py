"""The asyncio remoting client: one reused connection per address, requests matched by opaque.

Server-initiated requests (NOTIFY_CONSUMER_IDS_CHANGED, CHECK_TRANSACTION_STATE, ...) arriving
on these connections go to the client's own Dispatcher.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from rmqnode.acl.signature import sign
from rmqnode.errors import ConnectionLost
from rmqnode.net.codec import DEFAULT_MAX_FRAME, RemotingCommand
from rmqnode.net.connection import Connection, Dispatcher


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"address {addr!r} is not host:port")
    return host.strip("[]"), int(port)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return getattr(exc, "strerror", None) or str(exc)


RequestHook = Callable[[RemotingCommand], None]


@dataclass(frozen=True)
class SessionCredentials:
    """An ACL account's keys, as Java's SessionCredentials holds them. Called on a request,
    it signs it as AclClientRPCHook.doBeforeRequest does: over every ext field the request
    carries when it leaves (Java signs after makeCustomHeaderToNet) and its body. The secret
    stays out of repr, so no debug dump or traceback shows it."""

    access_key: str
    secret_key: str = field(repr=False)

    def __call__(self, cmd: RemotingCommand) -> None:
        if cmd.ext_fields is None:
            cmd.ext_fields = {}
        sign(cmd.ext_fields, cmd.body, self.access_key, self.secret_key)


class RemotingClient:
    """`hook`, when given, sees every request just before it is sent (Java's
    RPCHook.doBeforeRequest): SessionCredentials signs them."""

    def __init__(self, dispatcher: Dispatcher | None = None, connect_timeout: float = 3.0,
                 max_frame: int = DEFAULT_MAX_FRAME, hook: RequestHook | None = None) -> None:
        self.dispatcher = dispatcher or Dispatcher()
        self.hook = hook
        self.connect_timeout = connect_timeout
        self.max_frame = max_frame
        self._conns: dict[str, Connection] = {}
        self._connecting: dict[str, asyncio.Future[Connection]] = {}

    async def connection(self, addr: str) -> Connection:
        conn = self._conns.get(addr)
        if conn is not None and conn.is_open:
            return conn
        waiting = self._connecting.get(addr)
        if waiting is not None:
            return await asyncio.shield(waiting)
        fut: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
        self._connecting[addr] = fut
        try:
            host, port = split_addr(addr)
            loop = asyncio.get_running_loop()
            try:
                _, conn = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: Connection(self.dispatcher, self.max_frame, self._forget),
                        host, port),
                    self.connect_timeout)
            except (OSError, asyncio.TimeoutError) as exc:
                raise ConnectionLost(f"cannot connect to {addr}: {_reason(exc)}") from None
            conn.attrs["addr"] = addr
            self._conns[addr] = conn
            fut.set_result(conn)
            return conn
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: concurrent waiters re-raise it themselves
            raise
        finally:
            self._connecting.pop(addr, None)

    def _forget(self, conn: Connection) -> None:
        addr = conn.attrs.get("addr")
        if isinstance(addr, str) and self._conns.get(addr) is conn:
            del self._conns[addr]

    async def invoke(self, addr: str, cmd: RemotingCommand, timeout: float = 3.0) -> RemotingCommand:
        conn = await self.connection(addr)
        if self.hook is not None:
            self.hook(cmd)
        return await conn.request(cmd, timeout)

    async def invoke_oneway(self, addr: str, cmd: RemotingCommand) -> None:
        conn = await self.connection(addr)
        if self.hook is not None:
            self.hook(cmd)
        conn.oneway(cmd)

    async def close(self) -> None:
        conns = list(self._conns.values())
        self._conns.clear()
        for conn in conns:
            conn.close()
        for conn in conns:
            try:
                await asyncio.wait_for(asyncio.shield(conn.closed), 1.0)
            except asyncio.TimeoutError:
                pass

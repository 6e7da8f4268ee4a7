"""Talking to name servers: one address at a time, moving on when one fails (as Java clients do)."""

from __future__ import annotations

import random

from rmqnode.errors import ConnectionLost, RemotingError, RemotingTimeout
from rmqnode.net import fastjson
from rmqnode.net.client import RemotingClient
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode, ResponseCode


def check_addr(addr: str, what: str = "broker address") -> str:
    """`addr` if it is host:port with a port from 1 to 65535, else a ValueError naming it."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{what} {addr!r} is not host:port")
    if not 0 < int(port) < 65536:
        raise ValueError(f"{what} {addr!r}: the port is not from 1 to 65535")
    return addr


def parse_namesrv_addr(value: str) -> list[str]:
    addrs = [a.strip() for a in value.replace(",", ";").split(";") if a.strip()]
    if not addrs:
        raise ValueError("no name server address given")
    return [check_addr(addr, "name server address") for addr in addrs]


class NameServerClient:
    def __init__(self, remoting: RemotingClient, namesrv_addr: str, timeout: float = 3.0) -> None:
        self.remoting = remoting
        self.addrs = parse_namesrv_addr(namesrv_addr)
        self.timeout = timeout
        self._current = random.randrange(len(self.addrs))

    async def invoke(self, code: int, fields: dict[str, object] | None = None,
                     body: bytes = b"") -> RemotingCommand:
        """Send to the current name server, trying the others if it cannot be reached."""
        last_error: Exception | None = None
        for i in range(len(self.addrs)):
            addr = self.addrs[(self._current + i) % len(self.addrs)]
            try:
                resp = await self.remoting.invoke(addr, RemotingCommand.request(code, fields, body),
                                                  self.timeout)
            except (ConnectionLost, RemotingTimeout) as exc:
                last_error = exc
                continue
            self._current = (self._current + i) % len(self.addrs)
            return resp
        assert last_error is not None
        raise last_error

    async def invoke_ok(self, code: int, fields: dict[str, object] | None = None,
                        body: bytes = b"") -> RemotingCommand:
        resp = await self.invoke(code, fields, body)
        if resp.code != ResponseCode.SUCCESS:
            raise RemotingError(resp.code, resp.remark or "")
        return resp

    async def topic_route(self, topic: str) -> dict:
        resp = await self.invoke_ok(RequestCode.GET_ROUTEINFO_BY_TOPIC,
                                    {"topic": topic, "acceptStandardJsonOnly": True})
        return fastjson.loads(resp.body)

    async def cluster_info(self) -> dict:
        resp = await self.invoke_ok(RequestCode.GET_BROKER_CLUSTER_INFO)
        return fastjson.loads(resp.body)

    async def topic_list(self) -> list[str]:
        resp = await self.invoke_ok(RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER)
        return list(fastjson.loads(resp.body).get("topicList", []))

    async def kv_get(self, namespace: str, key: str) -> str | None:
        resp = await self.invoke(RequestCode.GET_KV_CONFIG, {"namespace": namespace, "key": key})
        if resp.code == ResponseCode.QUERY_NOT_FOUND:
            return None
        if resp.code != ResponseCode.SUCCESS:
            raise RemotingError(resp.code, resp.remark or "")
        return resp.field("value")

    async def kv_list(self, namespace: str) -> dict[str, str]:
        resp = await self.invoke(RequestCode.GET_KVLIST_BY_NAMESPACE, {"namespace": namespace})
        if resp.code == ResponseCode.QUERY_NOT_FOUND:
            return {}
        if resp.code != ResponseCode.SUCCESS:
            raise RemotingError(resp.code, resp.remark or "")
        return dict(fastjson.loads(resp.body).get("table", {}))

    async def kv_put(self, namespace: str, key: str, value: str) -> None:
        """Written to every name server, as mqadmin updateKvConfig does."""
        await self._invoke_all(RequestCode.PUT_KV_CONFIG,
                               {"namespace": namespace, "key": key, "value": value})

    async def kv_delete(self, namespace: str, key: str) -> None:
        await self._invoke_all(RequestCode.DELETE_KV_CONFIG, {"namespace": namespace, "key": key})

    async def _invoke_all(self, code: int, fields: dict[str, object]) -> None:
        for addr in self.addrs:
            resp = await self.remoting.invoke(addr, RemotingCommand.request(code, fields),
                                              self.timeout)
            if resp.code != ResponseCode.SUCCESS:
                raise RemotingError(resp.code, resp.remark or "")

"""Blocking helpers for tests: send one remoting request with our real client and return the
response. Each call runs its own event loop, so tests stay plain functions."""

from __future__ import annotations

import asyncio

from rmqnode.net import fastjson
from rmqnode.net.client import RemotingClient
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode


async def _call(addr: str, cmd: RemotingCommand, timeout: float) -> RemotingCommand:
    client = RemotingClient()
    try:
        return await client.invoke(addr, cmd, timeout)
    finally:
        await client.close()


def call(addr: str, code: int, fields: dict[str, object] | None = None, body: bytes = b"",
         timeout: float = 5.0) -> RemotingCommand:
    return asyncio.run(_call(addr, RemotingCommand.request(code, fields, body), timeout))


def call_json(addr: str, code: int, fields: dict[str, object] | None = None,
              body: bytes = b"") -> object:
    """The parsed JSON body of a successful response; fails the test otherwise."""
    resp = call(addr, code, fields, body)
    assert resp.code == 0, f"code {resp.code}: {resp.remark}"
    return fastjson.loads(resp.body)


def send(broker: str, topic: str, body: bytes, queue_id: int = 0, **props: str) -> dict:
    """One SEND_MESSAGE_V2 as a Java producer sends it; the response's fields, or a failure."""
    text = "\x02".join(f"{k}\x01{v}" for k, v in props.items())
    resp = call(broker, RequestCode.SEND_MESSAGE_V2, {
        "a": "PG", "b": topic, "c": "TBW102", "d": 4, "e": queue_id, "f": 0, "g": 0, "h": 0,
        "i": text}, body)
    assert resp.code == 0, f"send failed: {resp.code} {resp.remark}"
    return resp.ext_fields or {}

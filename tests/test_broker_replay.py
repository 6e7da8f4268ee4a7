"""Replay, byte for byte, what real clients and mqadmin sent a real 4.9.8 broker, against a
fresh rmqnode, and compare each answer's shape with the real one: the response code, the set
of header fields, the remark of errors, and the keys of JSON bodies.

A fresh node lacks what the captured broker held before each flow began (earlier messages,
offsets), so a few answers legitimately differ in code; those are listed below with why."""

from __future__ import annotations

import asyncio

import pytest

from rmqnode.net import fastjson
from rmqnode.net.codec import FrameDecoder
from rmqnode.net.codes import RequestCode as RC
from wire import exchanges, flows

BROKER_FLOWS = [f for f in flows() if any(r.peer == "broker" for r, _ in exchanges(f))]

# Request code -> response codes that all have the same shape and depend only on history.
STATE_DEPENDENT = {
    RC.PULL_MESSAGE: {0, 19, 20, 21},       # found / nothing yet / filtered / moved
    RC.QUERY_MESSAGE: {0, 22},              # the key's messages were sent before the capture
    RC.CONSUMER_SEND_MSG_BACK: {0, 1},      # names a physical offset of the captured broker
    RC.GET_CONSUMER_LIST_BY_GROUP: {0, 1},  # members that joined before the capture
    RC.GET_TOPIC_STATS_INFO: {0, 17},       # the topic was created before the capture
    RC.END_TRANSACTION: {0, 1},             # names the captured broker's physical offset
    RC.VIEW_BROKER_STATS_DATA: {0, 1},      # the topic and groups had traffic before it
}


def json_keys(data: bytes):
    try:
        value = fastjson.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return sorted(map(str, value)) if isinstance(value, dict) else type(value).__name__


async def replay(flow: str, addr: str):
    host, port = addr.split(":")
    conns: dict[int, tuple] = {}
    answers: dict[tuple[int, int], object] = {}

    async def reader(n: int, stream: asyncio.StreamReader) -> None:
        decoder = FrameDecoder()
        while data := await stream.read(65536):
            for cmd in decoder.feed(data):
                if cmd.is_response:
                    answers[(n, cmd.opaque)] = cmd

    tasks = []
    expected = []
    for req, real in exchanges(flow, "broker"):
        if req.conn not in conns:
            r, w = await asyncio.open_connection(host, int(port))
            conns[req.conn] = (r, w)
            tasks.append(asyncio.create_task(reader(req.conn, r)))
        conns[req.conn][1].write(req.raw)
        if real is not None:
            expected.append((req, real))
            # Keep the order of the capture: wait briefly for each answer before going on.
            for _ in range(50):
                if (req.conn, req.header["opaque"]) in answers:
                    break
                await asyncio.sleep(0.01)
    deadline = asyncio.get_running_loop().time() + 20  # long-polled pulls answer last
    while not all((r.conn, r.header["opaque"]) in answers for r, _ in expected):
        assert asyncio.get_running_loop().time() < deadline, "some requests got no answer"
        await asyncio.sleep(0.05)
    for _, w in conns.values():
        w.close()
    for t in tasks:
        t.cancel()
    return [(req, real, answers[(req.conn, req.header["opaque"])]) for req, real in expected]


@pytest.mark.parametrize("flow", BROKER_FLOWS)
def test_replay_broker_flow(flow, start_node):
    node = start_node("--namesrv-port", "0", "--listen-port", "0")
    checked = 0
    for req, real, ours in asyncio.run(replay(flow, node.broker)):
        code = req.header["code"]
        where = f"{flow}: request {code} opaque {req.header['opaque']}"
        real_code = real.header["code"]
        allowed = STATE_DEPENDENT.get(code, {real_code})
        assert ours.code in allowed | {real_code}, f"{where}: {ours.code} {ours.remark}"
        if ours.code == real_code:
            if real_code != 0 or code in (RC.UPDATE_AND_CREATE_TOPIC,):
                assert ours.remark == real.header.get("remark"), where
            real_ext = real.header.get("extFields")
            assert sorted(ours.ext_fields or {}) == sorted(real_ext or {}), where
            real_body = real.raw[-real.body_length:] if real.body_length else b""
            if json_keys(real_body) is not None and code != RC.PULL_MESSAGE:
                assert json_keys(ours.body) == json_keys(real_body), where
        checked += 1
    assert checked


def test_replay_covers_the_broker_requests_of_the_captures():
    codes = {r.header["code"] for f in BROKER_FLOWS for r, _ in exchanges(f, "broker")}
    assert {10, 11, 12, 14, 15, 17, 28, 30, 34, 35, 36, 37, 38, 200, 202, 203, 208, 215,
            222, 300, 310} <= codes, sorted(codes)

"""The asyncio transport over real loopback sockets: dispatch, oneway, errors, isolation."""

from __future__ import annotations

import asyncio
import logging
import struct

import pytest

from rmqnode.errors import ConnectionLost, RemotingError, RemotingTimeout
from rmqnode.net.client import RemotingClient
from rmqnode.net.codec import SERIALIZE_ROCKETMQ, FrameDecoder, RemotingCommand, encode
from rmqnode.net.codes import ResponseCode
from rmqnode.net.connection import Dispatcher, answers_together
from rmqnode.net.server import RemotingServer


class Harness:
    """A server with a few handlers, and a record of what it saw."""

    def __init__(self, **server_options: float) -> None:
        self.oneways: list[RemotingCommand] = []
        self.release = asyncio.Event()
        d = Dispatcher()
        d.register(1, lambda cmd, conn: cmd.response(fields={"echo": cmd.field("v")},
                                                     body=cmd.body))
        d.register(2, self.slow)
        d.register(3, lambda cmd, conn: self.oneways.append(cmd))
        d.register(4, self.fail_rocketmq)
        d.register(5, lambda cmd, conn: 1 / 0)
        d.register(7, self.crash_loudly)
        d.register(6, self.call_back)
        self.later: list = []  # (request, connection) answered by the test
        d.register(8, lambda cmd, conn: self.later.append((cmd, conn)))
        self.server = RemotingServer(d, "127.0.0.1", 0, **server_options)

    async def slow(self, cmd, conn):
        await self.release.wait()
        return cmd.response(fields={"slow": "done"})

    def crash_loudly(self, cmd, conn):
        raise ValueError("peer said: " + cmd.field("v"))

    def fail_rocketmq(self, cmd, conn):
        raise RemotingError(ResponseCode.TOPIC_NOT_EXIST, "topic[x] not exist, apply first please!")

    async def call_back(self, cmd, conn):
        # The server asks the client something on the client's own connection.
        answer = await conn.request(RemotingCommand.request(40, {"consumerGroup": "g"}))
        return cmd.response(fields={"client_said": answer.field("ok")})

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.server.port}"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


async def _with_server(body, **server_options):
    h = Harness(**server_options)
    await h.server.start()
    client = RemotingClient()
    try:
        return await body(h, client)
    finally:
        await client.close()
        await h.server.stop()


def test_request_response_and_connection_reuse():
    async def body(h, client):
        resp = await client.invoke(h.addr, RemotingCommand.request(1, {"v": 7}, b"payload"))
        assert (resp.code, resp.field("echo"), resp.body) == (0, "7", b"payload")
        assert resp.is_response
        await client.invoke(h.addr, RemotingCommand.request(1, {"v": 8}))
        assert len(h.server.connections) == 1
    run(_with_server(body))


def test_out_of_order_responses_on_one_connection():
    async def body(h, client):
        slow = asyncio.create_task(client.invoke(h.addr, RemotingCommand.request(2)))
        await asyncio.sleep(0.05)
        fast = await client.invoke(h.addr, RemotingCommand.request(1, {"v": "f"}))
        assert fast.field("echo") == "f" and not slow.done()
        h.release.set()
        assert (await slow).field("slow") == "done"
    run(_with_server(body))


def test_late_answers_given_together_go_out_when_the_group_ends():
    """What a SYNC_FLUSH round does with the sends it releases: the answers to one
    connection wait for the end of answers_together and then go out, in order."""
    async def body(h, client):
        reader, writer = await asyncio.open_connection("127.0.0.1", h.server.port)
        for opaque in (11, 12):
            request = RemotingCommand.request(8)
            request.opaque = opaque
            writer.write(encode(request))
            await writer.drain()
            await asyncio.sleep(0.02)  # separate reads: each answer is a late one
        while len(h.later) < 2:
            await asyncio.sleep(0.01)
        with answers_together:
            for cmd, conn in h.later:
                conn.reply(cmd, cmd.response(fields={"n": cmd.opaque}))
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(reader.read(1), 0.2)
        decoder, got = FrameDecoder(), []
        while len(got) < 2:
            got += decoder.feed(await asyncio.wait_for(reader.read(65536), 5))
        assert [(c.opaque, c.field("n")) for c in got] == [(11, "11"), (12, "12")]
        writer.close()
    run(_with_server(body))


def test_oneway_is_run_but_never_answered():
    async def body(h, client):
        await client.invoke_oneway(h.addr, RemotingCommand.request(3, {"x": 1}))
        await client.invoke_oneway(h.addr, RemotingCommand.request(1, {"v": 1}))
        # A later request's answer is the first thing to come back.
        resp = await client.invoke(h.addr, RemotingCommand.request(1, {"v": "after"}))
        assert resp.field("echo") == "after"
        assert [c.field("x") for c in h.oneways] == ["1"]
    run(_with_server(body))


def test_unknown_code_and_handler_errors_become_rocketmq_responses():
    async def body(h, client):
        resp = await client.invoke(h.addr, RemotingCommand.request(999))
        assert resp.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED
        assert resp.remark == " request type 999 not supported"
        resp = await client.invoke(h.addr, RemotingCommand.request(4))
        assert (resp.code, resp.remark) == (17, "topic[x] not exist, apply first please!")
        resp = await client.invoke(h.addr, RemotingCommand.request(5))
        assert resp.code == ResponseCode.SYSTEM_ERROR and "ZeroDivisionError" in resp.remark
    run(_with_server(body))


def test_binary_request_gets_binary_answer():
    async def body(h, client):
        host, port = h.addr.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        req = RemotingCommand(code=1, opaque=42, ext_fields={"v": "bin"},
                              serialize_type=SERIALIZE_ROCKETMQ)
        writer.write(encode(req))
        dec = FrameDecoder()
        got = []
        while not got:
            got = dec.feed(await reader.read(4096))
        assert got[0].serialize_type == SERIALIZE_ROCKETMQ
        assert (got[0].opaque, got[0].field("echo")) == (42, "bin")
        writer.close()
    run(_with_server(body))


def test_malformed_frame_closes_only_that_connection():
    async def body(h, client):
        await client.invoke(h.addr, RemotingCommand.request(1, {"v": 1}))
        host, port = h.addr.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(struct.pack(">ii", 8, 0x7F000004) + b"junk")  # serialize type 127
        assert await asyncio.wait_for(reader.read(), 5) == b""  # server closed it
        writer.close()
        reader2, writer2 = await asyncio.open_connection(host, int(port))
        writer2.write(struct.pack(">i", 100_000_000))  # absurd length
        assert await asyncio.wait_for(reader2.read(), 5) == b""
        writer2.close()
        resp = await client.invoke(h.addr, RemotingCommand.request(1, {"v": "still"}))
        assert resp.field("echo") == "still"
    run(_with_server(body))


def test_server_initiated_request_reaches_client_dispatcher():
    async def body(h, _client):
        seen = []
        d = Dispatcher()
        d.register(40, lambda cmd, conn: seen.append(cmd.field("consumerGroup"))
                   or cmd.response(fields={"ok": "yes"}))
        client = RemotingClient(d)
        try:
            resp = await client.invoke(h.addr, RemotingCommand.request(6))
        finally:
            await client.close()
        assert resp.field("client_said") == "yes" and seen == ["g"]
    run(_with_server(body))


def test_timeout_and_connection_errors():
    async def body(h, client):
        with pytest.raises(RemotingTimeout, match="got no answer"):
            await client.invoke(h.addr, RemotingCommand.request(2), timeout=0.2)
        h.release.set()
    run(_with_server(body))

    async def refused():
        client = RemotingClient()
        with pytest.raises(ConnectionLost, match="cannot connect"):
            await client.invoke("127.0.0.1:1", RemotingCommand.request(1))
    run(refused())


def test_pending_requests_fail_when_the_server_goes_away():
    async def body(h, client):
        pending = asyncio.create_task(client.invoke(h.addr, RemotingCommand.request(2),
                                                    timeout=10))
        await asyncio.sleep(0.1)
        for conn in list(h.server.connections):
            conn.close()
        with pytest.raises(ConnectionLost):
            await pending
    run(_with_server(body))


def test_a_crashed_handler_is_one_bounded_log_line_and_remark(caplog):
    async def body(h, client):
        with caplog.at_level(logging.ERROR, "rmqnode.net"):
            resp = await client.invoke(h.addr, RemotingCommand.request(7, {"v": "x" * 100_000}))
        assert resp.code == ResponseCode.SYSTEM_ERROR
        assert resp.remark.startswith("ValueError: 'peer said: xxx") and len(resp.remark) < 300
        [record] = caplog.records
        line = record.getMessage()
        assert record.exc_info is None and "\n" not in line and len(line) < 400
        assert line.startswith("request.crashed ") and "error=ValueError" in line
        assert "at=tests/test_transport.py:" in line
    run(_with_server(body))


async def _connect(h: Harness) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", h.server.port)


async def _closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), within) == b""
    except ConnectionError:
        return True
    except asyncio.TimeoutError:
        return False


def test_a_frame_not_completed_in_time_closes_its_connection():
    async def body(h, client):
        reader, writer = await _connect(h)
        frame = encode(RemotingCommand.request(1, {"v": "late"}))
        writer.write(frame[:6])
        assert await _closed_by_server(reader, 5)
        writer.close()
        # A slow peer whose frames each complete in time is never closed.
        reader, writer = await _connect(h)
        dec, answers = FrameDecoder(), []
        for i in range(8):
            frame = encode(RemotingCommand.request(1, {"v": i}))
            for part in (frame[:3], frame[3:20], frame[20:]):
                writer.write(part)
                await asyncio.sleep(0.05)
            answers += dec.feed(await reader.read(4096))
        assert [a.field("echo") for a in answers] == [str(i) for i in range(8)]
        writer.close()
        assert h.server.buffered_input == 0
    run(_with_server(body, frame_timeout=0.4))


def test_incomplete_frames_past_the_server_limit_close_the_biggest():
    async def body(h, client):
        small_r, small_w = await _connect(h)
        big_r, big_w = await _connect(h)
        small_w.write(struct.pack(">ii", 100_000, 2) + b"s" * 30_000)
        await small_w.drain()
        big_w.write(struct.pack(">ii", 100_000, 2) + b"b" * 60_000)
        await big_w.drain()
        assert await _closed_by_server(big_r, 5)
        assert not await _closed_by_server(small_r, 0.3)
        assert h.server.buffered_input == 30_008
        # Whole frames bigger than what is left of the limit pass: they are not held.
        resp = await client.invoke(h.addr, RemotingCommand.request(1, {"v": 1}, b"x" * 70_000))
        assert len(resp.body) == 70_000
        small_w.close()
        big_w.close()
    run(_with_server(body, max_buffered_input=80_000))


def test_closing_a_connection_cancels_its_running_handlers():
    async def body(h, client):
        reader, writer = await _connect(h)
        writer.write(encode(RemotingCommand.request(2)))
        await asyncio.sleep(0.1)
        [conn] = h.server.connections
        [task] = conn.tasks
        writer.close()
        await asyncio.sleep(0.1)
        assert task.done() and not conn.tasks and not h.release.is_set()
    run(_with_server(body))

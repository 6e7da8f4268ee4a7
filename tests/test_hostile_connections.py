"""What a peer can make a real rmqnode hold or log, over real sockets: held pulls of peers
that went away, the bytes of frames never finished, headers no Java peer would send."""

from __future__ import annotations

import asyncio
import struct

from remoting import call, send
from rmqnode.net import fastjson
from rmqnode.net.codec import FrameDecoder, RemotingCommand, encode
from rmqnode.net.codes import RequestCode as RC, ResponseCode

HELD_CONNECTIONS = 2000


def _pull(topic: str, suspend: bool) -> RemotingCommand:
    return RemotingCommand.request(RC.PULL_MESSAGE, {
        "consumerGroup": "HoldG", "topic": topic, "queueId": 0, "queueOffset": 0,
        "maxMsgNums": 32, "sysFlag": 6 if suspend else 4, "commitOffset": 0,
        "suspendTimeoutMillis": 30000, "subscription": "*", "subVersion": 0,
        "expressionType": "TAG"})


async def _first_answer(reader: asyncio.StreamReader) -> RemotingCommand:
    decoder = FrameDecoder()
    while True:
        data = await reader.read(65536)
        assert data, "the node closed the connection"
        got = decoder.feed(data)
        if got:
            return got[0]


async def _hold_and_leave(host: str, port: int, topic: str) -> None:
    """A PULL that the node holds, then a request it answers at once: when that answer comes
    the pull is known to be held (frames of one connection are handled in order)."""
    reader, writer = await asyncio.open_connection(host, port)
    pull, probe = _pull(topic, suspend=True), RemotingCommand.request(99999)
    pull.opaque, probe.opaque = 1, 2
    writer.write(encode(pull) + encode(probe))
    answer = await _first_answer(reader)
    assert (answer.opaque, answer.code) == (2, ResponseCode.REQUEST_CODE_NOT_SUPPORTED)
    writer.close()


def test_held_pulls_end_with_their_connections(start_node):
    """Each held pull that outlived its connection would read the queue once the message
    arrives: the node's count of messages read (msgGetTotalTodayNow) would then be 2001, not
    the 1 the fresh pull read."""
    node = start_node("--namesrv-port", "0", "--listen-port", "0")
    assert call(node.broker, RC.UPDATE_AND_CREATE_TOPIC, {
        "topic": "HoldT", "readQueueNums": 1, "writeQueueNums": 1, "perm": 6}).code == 0
    host, port = node.broker.rsplit(":", 1)

    async def hold_all() -> None:
        slots = asyncio.Semaphore(100)

        async def one() -> None:
            async with slots:
                await _hold_and_leave(host, int(port), "HoldT")
        await asyncio.gather(*(one() for _ in range(HELD_CONNECTIONS)))
    asyncio.run(asyncio.wait_for(hold_all(), 120))

    send(node.broker, "HoldT", b"the one message")
    fresh = call(node.broker, RC.PULL_MESSAGE, _pull("HoldT", suspend=False).ext_fields)
    assert fresh.code == ResponseCode.SUCCESS and b"the one message" in fresh.body
    asyncio.run(asyncio.sleep(1.0))  # time for any surviving pull to wake and read
    info = call(node.broker, RC.GET_BROKER_RUNTIME_INFO)
    assert fastjson.loads(info.body)["table"]["msgGetTotalTodayNow"] == "1"


def test_incomplete_frames_are_bounded_across_the_node(start_node):
    """Four peers each send 3 MiB of a 16 MiB frame and stop: the node holds no more than
    maxBufferedInputBytes (8 MiB here) of them, closing the peers holding the most."""
    node = start_node("--namesrv-port", "0", "--listen-port", "0",
                      "-D", f"maxBufferedInputBytes={8 << 20}")
    host, port = node.broker.rsplit(":", 1)

    async def flood() -> int:
        chunk = b"\0" * (1 << 20)
        writers = []
        for _ in range(4):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(struct.pack(">ii", 16 * 1024 * 1024 - 4, 2))
            try:
                for _ in range(3):
                    writer.write(chunk)
                    await writer.drain()
            except ConnectionError:
                pass
            writers.append((reader, writer))
        closed = 0
        for reader, writer in writers:
            try:
                closed += await asyncio.wait_for(reader.read(1), 0.5) == b""
            except ConnectionError:
                closed += 1
            except asyncio.TimeoutError:
                pass
            writer.close()
        return closed

    closed = asyncio.run(asyncio.wait_for(flood(), 60))
    assert 1 <= closed < 4
    node.wait_line(rf"connection\.input_limit_closed .*limit={8 << 20}")
    assert call(node.broker, RC.GET_BROKER_RUNTIME_INFO).code == ResponseCode.SUCCESS


def test_a_frame_left_unfinished_closes_its_connection_only(start_node):
    """frameCompleteTimeoutMillis: a peer that starts a frame and stalls is closed; a peer
    that keeps sending whole frames on another connection is not."""
    node = start_node("--namesrv-port", "0", "--listen-port", "0",
                      "-D", "frameCompleteTimeoutMillis=1000")
    host, port = node.broker.rsplit(":", 1)

    async def stall() -> tuple[bytes, RemotingCommand]:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(struct.pack(">ii", 1000, 2) + b"{")
        live_reader, live_writer = await asyncio.open_connection(host, int(port))
        end = asyncio.get_running_loop().time() + 4
        answer = None
        while asyncio.get_running_loop().time() < end:
            probe = RemotingCommand.request(RC.GET_BROKER_RUNTIME_INFO)
            live_writer.write(encode(probe))
            answer = await _first_answer(live_reader)
            await asyncio.sleep(0.5)
        got = await asyncio.wait_for(reader.read(1), 1)
        writer.close()
        live_writer.close()
        return got, answer

    got, answer = asyncio.run(stall())
    assert got == b"", "the stalled connection is still open"
    assert answer is not None and answer.code == ResponseCode.SUCCESS
    node.wait_line(r"connection\.frame_timeout")


def test_a_header_with_a_lone_surrogate_closes_the_connection_and_changes_nothing(start_node):
    node = start_node("--namesrv-port", "0", "--listen-port", "0")
    host, port = node.broker.rsplit(":", 1)
    header = (b'{"code":%d,"extFields":{"consumerGroup":"G\\ud800","topic":"T","queueId":"0",'
              b'"commitOffset":"5"},"flag":0,"language":"JAVA","opaque":1,"version":409}'
              % RC.UPDATE_CONSUMER_OFFSET)

    async def go() -> bytes:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(struct.pack(">ii", 4 + len(header), len(header)) + header)
        try:
            return await asyncio.wait_for(reader.read(), 5)
        finally:
            writer.close()

    assert asyncio.run(go()) == b""
    node.wait_line(r"connection\.bad_frame .*lone UTF-16 surrogate")
    send(node.broker, "T", b"x")
    assert call(node.broker, RC.UPDATE_CONSUMER_OFFSET, {
        "consumerGroup": "G", "topic": "T", "queueId": 0, "commitOffset": 1}).code == 0
    resp = call(node.broker, RC.QUERY_CONSUMER_OFFSET,
                {"consumerGroup": "G", "topic": "T", "queueId": 0})
    assert (resp.code, resp.field("offset")) == (ResponseCode.SUCCESS, "1")


def test_a_pull_hold_leaves_no_entry_however_it_ends():
    from rmqnode.broker.pull import PullHoldService

    async def go() -> None:
        holds = PullHoldService()
        cancelled = asyncio.ensure_future(holds.hold("T", 0, 0, 30))
        woken = asyncio.ensure_future(holds.hold("T", 0, 0, 30))
        await asyncio.sleep(0)
        assert len(holds.waiting[("T", 0)]) == 2
        cancelled.cancel()
        holds.on_arrivals({("T", 0): 1})
        await asyncio.gather(woken, return_exceptions=True)
        await asyncio.sleep(0)
        assert cancelled.cancelled() and holds.waiting == {}
        await holds.hold("T", 1, 0, 0.01)  # timed out
        assert holds.waiting == {}
    asyncio.run(go())

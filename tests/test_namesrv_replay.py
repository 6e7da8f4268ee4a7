"""Replay what real clients, mqadmin and a Java broker sent a real 4.9.8 name server, byte for
byte, to `rmqnode --role namesrv`, and compare our answers with the real ones."""

from __future__ import annotations

import asyncio

import pytest

from rmqnode.config import read_properties
from rmqnode.net import fastjson
from rmqnode.net.codec import FrameDecoder, RemotingCommand, encode
from rmqnode.net.codes import RequestCode
from wire import exchanges, flows

NS_FLOWS = [f for f in flows() if exchanges(f, "namesrv")]
BROKER = {"brokerAddr": "127.0.0.1:10911", "brokerName": "broker-a",
          "clusterName": "DefaultCluster", "haServerAddr": "127.0.0.1:10912", "brokerId": 0}


def seed_topics(flow: str) -> dict[str, dict]:
    """The topics the real name server knew when the flow began: those it routed, or listed,
    before the flow's first broker registration."""
    topics: dict[str, dict] = {}
    for req, resp in exchanges(flow, "namesrv"):
        code = req.header["code"]
        if code == RequestCode.REGISTER_BROKER:
            break
        if resp is None or resp.header["code"] != 0 or code not in (
                RequestCode.GET_ROUTEINFO_BY_TOPIC, RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER):
            continue
        body = fastjson.loads(resp.raw[-resp.body_length:])
        if code == RequestCode.GET_ROUTEINFO_BY_TOPIC:
            [queue] = body["queueDatas"]
            topics[req.header["extFields"]["topic"]] = {
                "topicName": req.header["extFields"]["topic"], "perm": queue["perm"],
                "readQueueNums": queue["readQueueNums"],
                "writeQueueNums": queue["writeQueueNums"], "topicSysFlag": 0}
        elif code == RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER:
            for t in body["topicList"]:
                topics.setdefault(t, {"topicName": t, "perm": 6, "readQueueNums": 1,
                                      "writeQueueNums": 1, "topicSysFlag": 0})
    return topics


class Session:
    """Raw connections to the server under test, one per captured connection number."""

    def __init__(self, addr: str) -> None:
        self.host, port = addr.split(":")
        self.port = int(port)
        self.conns: dict[int, tuple] = {}
        self.barriers = 0

    async def conn(self, n: int):
        if n not in self.conns:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self.conns[n] = (reader, writer, FrameDecoder(), [])
        return self.conns[n]

    async def send(self, n: int, raw: bytes, opaque: int | None) -> RemotingCommand | None:
        reader, writer, decoder, backlog = await self.conn(n)
        writer.write(raw)
        await writer.drain()
        if opaque is None:
            return None
        while True:
            for cmd in backlog:
                if cmd.opaque == opaque and cmd.is_response:
                    backlog.remove(cmd)
                    return cmd
            data = await asyncio.wait_for(reader.read(65536), 5)
            assert data, "server closed the connection"
            backlog.extend(decoder.feed(data))

    async def barrier(self, n: int) -> None:
        """Wait until the server has handled everything sent on connection n: a oneway request
        (a broker's oneway registration) has no answer, and the captured client asked its next
        question seconds later, after the real server had applied it. Frames of one connection
        are handled in order, so the answer to a read-only request on it marks the point."""
        self.barriers += 1
        probe = RemotingCommand.request(RequestCode.GET_BROKER_CLUSTER_INFO, None)
        probe.opaque = (1 << 30) + self.barriers
        assert (await self.send(n, encode(probe), probe.opaque)).code == 0

    def close(self) -> None:
        for _, writer, _, _ in self.conns.values():
            writer.close()


def compare(req, real, ours: RemotingCommand) -> None:
    code = req.header["code"]
    where = f"{req.flow} request {code} opaque {req.header['opaque']}"
    assert ours.code == real.header["code"], where
    assert ours.remark == real.header.get("remark"), where
    assert (ours.ext_fields or {}) == (real.header.get("extFields") or {}), where
    real_body = real.raw[-real.body_length:] if real.body_length else b""
    if code in (RequestCode.GET_ROUTEINFO_BY_TOPIC, RequestCode.GET_BROKER_CLUSTER_INFO):
        # Deterministic with one broker: the very bytes, unquoted or quoted ids included.
        assert ours.body == real_body, where
    elif code == RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER:
        assert set(fastjson.loads(ours.body)["topicList"]) == \
            set(fastjson.loads(real_body)["topicList"]), where
    elif code == RequestCode.GET_NAMESRV_CONFIG:
        ours_keys = set(read_properties(ours.body.decode()))
        shared = ours_keys & set(read_properties(real_body.decode()))
        assert {"listenPort", "kvConfigPath", "configStorePath", "orderMessageEnable",
                "rocketmqHome", "productEnvName", "clusterTest"} <= shared, where
    else:
        assert ours.body == real_body, where


@pytest.mark.parametrize("flow", NS_FLOWS)
def test_replay_namesrv_flow(flow, namesrv):
    async def replay():
        session = Session(namesrv.namesrv)
        try:
            seed = seed_topics(flow)
            if seed:
                body = fastjson.dumpb({"filterServerList": [], "topicConfigSerializeWrapper": {
                    "dataVersion": {"counter": 0, "timestamp": 0}, "topicConfigTable": seed}})
                reg = RemotingCommand.request(RequestCode.REGISTER_BROKER, BROKER, body)
                reg.opaque = 1
                assert (await session.send(-1, encode(reg), 1)).code == 0
            checked = 0
            for req, real in exchanges(flow, "namesrv"):
                oneway = bool(req.header["flag"] & 2)
                ours = await session.send(req.conn, req.raw,
                                          None if oneway else req.header["opaque"])
                if oneway:
                    await session.barrier(req.conn)
                if real is not None:
                    compare(req, real, ours)
                    checked += 1
                elif ours is not None:
                    assert ours.code == 0, (flow, req.header, ours.remark)
            assert checked
        finally:
            session.close()

    asyncio.run(replay())


def test_replay_covers_every_namesrv_request_code_captured():
    codes = {req.header["code"] for f in NS_FLOWS for req, _ in exchanges(f, "namesrv")}
    assert codes == {103, 104, 105, 106, 206, 216, 319}

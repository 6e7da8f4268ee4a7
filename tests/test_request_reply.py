"""Request-reply against a real node: a requester and a replier speaking as the Java 4.9.8
client does (DefaultMQProducerImpl.request, MessageUtil.createReplyMessage), over real
sockets; then rmqctl request and rmqctl consume --reply end to end."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid

import pytest

from rmqctl.client.consumer import parse_messages
from rmqnode.message import MessageExt, decode_properties, encode_properties
from rmqnode.net import fastjson
from rmqnode.net.client import RemotingClient
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode as RC, ResponseCode
from rmqnode.net.connection import Dispatcher
from tests.remoting import call

TOPIC = "Requests"
REPLY_TOPIC = "DefaultCluster_REPLY_TOPIC"
CLIENT_ID = "127.0.0.1@requester-1"


def v2_header(group: str, topic: str, props: dict[str, str], queue_id: int = 0) -> dict:
    """SendMessageRequestHeaderV2 as the Java client fills it (sendKernelImpl)."""
    return {"a": group, "b": topic, "c": "TBW102", "d": 4, "e": queue_id, "f": 0,
            "g": int(time.time() * 1000), "h": 0, "i": encode_properties(props), "j": 0,
            "k": False, "m": False}


class Requester:
    """The requester's side: one connection that sent a heartbeat with its client id and
    producer group, answering PUSH_REPLY_MESSAGE_TO_CLIENT with `answer_code`."""

    def __init__(self, broker: str, answer_code: int = ResponseCode.SUCCESS) -> None:
        self.broker = broker
        self.pushes: list[RemotingCommand] = []
        self.answer_code = answer_code
        dispatcher = Dispatcher()
        dispatcher.register(RC.PUSH_REPLY_MESSAGE_TO_CLIENT, self._pushed)
        self.client = RemotingClient(dispatcher)

    def _pushed(self, cmd: RemotingCommand, conn) -> RemotingCommand:
        self.pushes.append(cmd)
        return cmd.response(self.answer_code)

    async def heartbeat(self) -> None:
        body = fastjson.dumpb({"clientID": CLIENT_ID, "consumerDataSet": [], "producerDataSet": [
            {"groupName": "RequesterGroup"}, {"groupName": "CLIENT_INNER_PRODUCER"}]})
        resp = await self.client.invoke(self.broker,
                                        RemotingCommand.request(RC.HEART_BEAT, body=body))
        assert resp.code == ResponseCode.SUCCESS, resp.remark

    async def send_request(self, body: bytes) -> str:
        """DefaultMQProducerImpl.request's message: prepareSendRequest's properties."""
        correlation_id = str(uuid.uuid4())
        props = {"CORRELATION_ID": correlation_id, "REPLY_TO_CLIENT": CLIENT_ID, "TTL": "3000",
                 "UNIQ_KEY": uuid.uuid4().hex.upper(), "WAIT": "true"}
        resp = await self.client.invoke(self.broker, RemotingCommand.request(
            RC.SEND_MESSAGE_V2, v2_header("RequesterGroup", TOPIC, props), body))
        assert resp.code == ResponseCode.SUCCESS, resp.remark
        return correlation_id


async def pull(client: RemotingClient, broker: str, topic: str,
               offset: int = 0) -> list[MessageExt]:
    resp = await client.invoke(broker, RemotingCommand.request(RC.PULL_MESSAGE, {
        "consumerGroup": "Repliers", "topic": topic, "queueId": 0, "queueOffset": offset,
        "maxMsgNums": 32, "sysFlag": 4, "commitOffset": 0, "suspendTimeoutMillis": 0,
        "subscription": "*", "subVersion": 0}))
    if resp.code == ResponseCode.PULL_NOT_FOUND:
        return []
    assert resp.code == ResponseCode.SUCCESS, f"{resp.code} {resp.remark}"
    return parse_messages(resp.body)


def reply_props(request: MessageExt) -> dict[str, str]:
    """MessageUtil.createReplyMessage's properties, and what the producer adds on send."""
    p = request.properties
    return {"MSG_TYPE": "reply", "CORRELATION_ID": p["CORRELATION_ID"],
            "REPLY_TO_CLIENT": p["REPLY_TO_CLIENT"], "TTL": p["TTL"],
            "UNIQ_KEY": uuid.uuid4().hex.upper(), "WAIT": "true"}


async def send_reply(client: RemotingClient, broker: str, props: dict[str, str],
                     body: bytes, code: int = RC.SEND_REPLY_MESSAGE_V2,
                     topic: str = REPLY_TOPIC) -> RemotingCommand:
    header = v2_header("ReplierGroup", topic, props)
    if code == RC.SEND_REPLY_MESSAGE:  # the V1 header: the same fields, long names
        names = {"a": "producerGroup", "b": "topic", "c": "defaultTopic",
                 "d": "defaultTopicQueueNums", "e": "queueId", "f": "sysFlag",
                 "g": "bornTimestamp", "h": "flag", "i": "properties", "j": "reconsumeTimes",
                 "k": "unitMode", "m": "batch"}
        header = {names[k]: v for k, v in header.items()}
    return await client.invoke(broker, RemotingCommand.request(code, header, body))


@pytest.fixture
def node(start_node):
    return start_node("--namesrv-port", "0", "--listen-port", "0")


def create_topic(broker: str, topic: str = TOPIC) -> None:
    resp = call(broker, RC.UPDATE_AND_CREATE_TOPIC, {"topic": topic, "readQueueNums": 1,
                                                      "writeQueueNums": 1, "perm": 6})
    assert resp.code == ResponseCode.SUCCESS, resp.remark


def test_reply_topic_created_at_start_as_java(node):
    table = fastjson.loads(call(node.broker, RC.GET_ALL_TOPIC_CONFIG).body)["topicConfigTable"]
    reply = table[REPLY_TOPIC]
    assert (reply["readQueueNums"], reply["writeQueueNums"], reply["perm"]) == (1, 1, 6)


@pytest.mark.parametrize("code", [RC.SEND_REPLY_MESSAGE_V2, RC.SEND_REPLY_MESSAGE])
def test_reply_is_pushed_to_the_requester_and_stored(node, code):
    create_topic(node.broker)

    async def scenario() -> None:
        requester, replier = Requester(node.broker), RemotingClient()
        try:
            await requester.heartbeat()
            correlation_id = await requester.send_request(b"price?")
            [request] = await pull(replier, node.broker, TOPIC)
            assert request.properties["CLUSTER"] == "DefaultCluster"
            resp = await send_reply(replier, node.broker, reply_props(request), b"42", code)
            assert resp.code == ResponseCode.SUCCESS, resp.remark
            fields = resp.ext_fields or {}
            assert fields["MSG_REGION"] == "DefaultRegion" and fields["queueId"] == "0"
            [push] = requester.pushes
            props = decode_properties(push.field("properties") or "")
            assert push.body == b"42" and props["CORRELATION_ID"] == correlation_id
            assert props["MSG_TYPE"] == "reply" and "PUSH_REPLY_TIME" in props
            assert push.field("topic") == REPLY_TOPIC
            assert push.field("storeHost") == node.broker
            assert push.field("bornHost") and push.field("storeTimestamp")
            [stored] = await pull(replier, node.broker, REPLY_TOPIC)
            assert stored.body == b"42" and stored.offset_msg_id == fields["msgId"]
            assert stored.properties["CORRELATION_ID"] == correlation_id
            assert str(stored.queue_offset) == fields["queueOffset"]
        finally:
            await requester.client.close()
            await replier.close()

    asyncio.run(scenario())


def test_requester_gone_answers_the_replier_as_java(node):
    create_topic(node.broker)

    async def scenario() -> None:
        requester, replier = Requester(node.broker), RemotingClient()
        try:
            await requester.heartbeat()
            await requester.send_request(b"anyone?")
            [request] = await pull(replier, node.broker, TOPIC)
            await requester.client.close()
            await asyncio.sleep(0.3)  # the broker sees the connection close
            resp = await send_reply(replier, node.broker, reply_props(request), b"late")
            assert resp.code == ResponseCode.SYSTEM_ERROR
            assert resp.remark == f"push reply message fail, channel of <{CLIENT_ID}> not found."
            assert (resp.ext_fields or {}).get("msgId"), "stored all the same"
            no_client = {k: v for k, v in reply_props(request).items()
                         if k != "REPLY_TO_CLIENT"}
            resp = await send_reply(replier, node.broker, no_client, b"x")
            assert resp.code == ResponseCode.SYSTEM_ERROR
            assert resp.remark == "reply message properties[REPLY_TO_CLIENT] is null"
        finally:
            await replier.close()

    asyncio.run(scenario())


def test_requester_refusing_the_push(node):
    async def scenario() -> None:
        requester = Requester(node.broker, answer_code=ResponseCode.SYSTEM_ERROR)
        replier = RemotingClient()
        try:
            await requester.heartbeat()
            props = {"MSG_TYPE": "reply", "CORRELATION_ID": "c-1", "REPLY_TO_CLIENT": CLIENT_ID}
            resp = await send_reply(replier, node.broker, props, b"no")
            assert resp.code == ResponseCode.SYSTEM_ERROR
            assert resp.remark == f"push reply message to {CLIENT_ID}fail."
        finally:
            await requester.client.close()
            await replier.close()

    asyncio.run(scenario())


def test_replies_not_stored_when_disabled(start_node):
    node = start_node("--namesrv-port", "0", "--listen-port", "0",
                      "-D", "storeReplyMessageEnable=false")

    async def scenario() -> None:
        requester, replier = Requester(node.broker), RemotingClient()
        try:
            await requester.heartbeat()
            props = {"MSG_TYPE": "reply", "CORRELATION_ID": "c-2", "REPLY_TO_CLIENT": CLIENT_ID}
            resp = await send_reply(replier, node.broker, props, b"pushed only")
            assert resp.code == ResponseCode.SUCCESS, resp.remark
            fields = resp.ext_fields or {}
            assert (fields["msgId"], fields["queueOffset"]) == ("0", "0")
            assert [p.body for p in requester.pushes] == [b"pushed only"]
            assert await pull(replier, node.broker, REPLY_TOPIC) == []
        finally:
            await requester.client.close()
            await replier.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("change, code, remark", [
    ({"b": "bad topic!"}, ResponseCode.SYSTEM_ERROR, "illegal characters"),
    ({"b": "x" * 200}, ResponseCode.SYSTEM_ERROR, "longer than topic max length"),
    ({"b": "SCHEDULE_TOPIC_XXXX"}, ResponseCode.NO_PERMISSION, "is forbidden"),
    ({"e": 7}, ResponseCode.SYSTEM_ERROR, "request queueId[7] is illegal"),
    ({"e": "1e9"}, ResponseCode.SYSTEM_ERROR, "not a number"),
    ({"h": "99999999999"}, ResponseCode.SYSTEM_ERROR, "out of range"),
    ({"g": "yesterday"}, ResponseCode.SYSTEM_ERROR, "not a number"),
    ({"d": "many"}, ResponseCode.SYSTEM_ERROR, "not a number"),
])
def test_hostile_reply_fields_are_refused(node, change, code, remark):
    header = {**v2_header("ReplierGroup", REPLY_TOPIC, {
        "MSG_TYPE": "reply", "REPLY_TO_CLIENT": "nobody", "CORRELATION_ID": "c"}), **change}
    resp = call(node.broker, RC.SEND_REPLY_MESSAGE_V2, header, b"x")
    assert resp.code == code and remark in (resp.remark or ""), f"{resp.code} {resp.remark}"


def rmqctl(ns: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "rmqctl.cli", "-n", ns, *args]


def wait_for_member(broker: str, group: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if call(broker, RC.GET_CONSUMER_LIST_BY_GROUP, {"consumerGroup": group}).code == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"{group} never joined")


@pytest.mark.parametrize("handler, expected", [
    (["--exec", "tr a-z A-Z"], "HELLO REPLY"), ([], "hello reply")])
def test_rmqctl_request_and_consume_reply(node, handler, expected):
    create_topic(node.broker)
    replier = subprocess.Popen(rmqctl(node.namesrv, "consume", TOPIC, "-g", "Repliers",
                                      "--from", "first", "--reply", *handler),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_member(node.broker, "Repliers")
        out = subprocess.run(rmqctl(node.namesrv, "--timeout", "20", "request", TOPIC,
                                    "hello reply"), capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout == expected + "\n"
        as_json = subprocess.run(rmqctl(node.namesrv, "--timeout", "20", "-o", "json",
                                        "request", TOPIC, "again"),
                                 capture_output=True, text=True, timeout=60)
        assert as_json.returncode == 0, as_json.stderr
        row = fastjson.loads(as_json.stdout.encode())
        assert row["topic"] == REPLY_TOPIC and row["properties"]["MSG_TYPE"] == "reply"
        assert row["properties"]["CORRELATION_ID"] and "ARRIVE_TIME" in row["properties"]
    finally:
        replier.terminate()
        replier.communicate(timeout=30)


def test_rmqctl_request_without_replier_times_out(node):
    create_topic(node.broker)
    out = subprocess.run(rmqctl(node.namesrv, "--timeout", "2", "request", TOPIC, "hello"),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 4, (out.returncode, out.stderr)
    assert "no reply to request" in out.stderr

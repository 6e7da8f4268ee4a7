"""SQL92 property filtering over real sockets, with the requests Java 4.9.8 clients send: a
push consumer's heartbeat (SubscriptionData with expressionType SQL92), CHECK_CLIENT_CONFIG
(checkClientInBroker), its pulls without the subscription flag (postSubscriptionWhenPull is
off by default), a lite pull consumer's pulls that carry the expression, POP's exp/expType,
and rmqctl consume/tail --sql. The answers and remarks are PullMessageProcessor's and
ClientManageProcessor's."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from remoting import call, send
from rmqctl.client.consumer import parse_messages
from rmqctl.client.namesrv import NameServerClient
from rmqctl.client.pop import PopConsumer
from rmqnode.net import fastjson
from rmqnode.net.client import RemotingClient
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode as RC
from rmqnode.net.codes import ResponseCode

PUSH_SYS_FLAG = 0x1 | 0x2        # commit offset, suspend: no subscription
LITE_SYS_FLAG = 0x2 | 0x4        # suspend, subscription (DefaultLitePullConsumer)
UNSUPPORTED = "The broker does not support consumer to filter message by SQL92"
PARSE_FAILED = "parse the consumer's subscription failed"
NO_FILTER_DATA = "The broker's consumer filter data is not exist!Your expression may be wrong!"


def subscription_data(topic: str, expression: str, kind: str = "SQL92") -> dict:
    """SubscriptionData as fastjson writes it from a Java client."""
    return {"classFilterMode": False, "codeSet": [], "expressionType": kind,
            "subString": expression, "subVersion": 1700000000000, "tagsSet": [], "topic": topic}


def heartbeat(group: str, topic: str, expression: str) -> bytes:
    return fastjson.dumpb({"clientID": "10.0.0.1@sql92", "producerDataSet": [],
                           "consumerDataSet": [{
                               "consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET",
                               "consumeType": "CONSUME_PASSIVELY", "groupName": group,
                               "messageModel": "CLUSTERING", "unitMode": False,
                               "subscriptionDataSet": [subscription_data(topic, expression)]}]})


def check(broker: str, topic: str, expression: str, kind: str = "SQL92") -> RemotingCommand:
    body = fastjson.dumpb({"clientId": "10.0.0.1@sql92", "group": "G",
                           "subscriptionData": subscription_data(topic, expression, kind)})
    return call(broker, RC.CHECK_CLIENT_CONFIG, body=body)


def pull_fields(group: str, topic: str, offset: int = 0, **extra: object) -> dict:
    return {"consumerGroup": group, "topic": topic, "queueId": 0, "queueOffset": offset,
            "maxMsgNums": 32, "sysFlag": LITE_SYS_FLAG, "commitOffset": 0,
            "suspendTimeoutMillis": 0, "subVersion": 0, "expressionType": "SQL92", **extra}


def lite_pull(broker: str, topic: str, expression: str, offset: int = 0) -> RemotingCommand:
    return call(broker, RC.PULL_MESSAGE, pull_fields("LiteG", topic, offset,
                                                     subscription=expression))


def push_pull(broker: str, group: str, topic: str, expression: str,
              offsets: tuple[int, ...] = (0,)) -> list[RemotingCommand]:
    """Heartbeat, then pulls on the same connection (the registration lives as long as it)."""
    async def run() -> list[RemotingCommand]:
        client = RemotingClient()
        try:
            beat = await client.invoke(broker, RemotingCommand.request(
                RC.HEART_BEAT, body=heartbeat(group, topic, expression)), 5)
            assert beat.code == 0, beat.remark
            return [await client.invoke(broker, RemotingCommand.request(
                RC.PULL_MESSAGE, pull_fields(group, topic, offset, sysFlag=PUSH_SYS_FLAG)), 5)
                for offset in offsets]
        finally:
            await client.close()
    return asyncio.run(run())


def bodies(resp: RemotingCommand) -> list[str]:
    if resp.code == ResponseCode.PULL_RETRY_IMMEDIATELY:  # NO_MATCHED_MESSAGE
        return []
    assert resp.code == ResponseCode.SUCCESS, (resp.code, resp.remark)
    return [m.body.decode() for m in parse_messages(resp.body)]


def rmqctl(ns: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rmqctl.cli", "-n", ns, *args],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """One node with enablePropertyFilter=true and topic Goods: 10 messages, price 1..10,
    tags A and B alternating, `region` on even prices only."""
    from conftest import Node
    n = Node(["--namesrv-port", "0", "--listen-port", "0", "-D", "enablePropertyFilter=true"],
             tmp_path_factory.mktemp("sql92"))
    n.wait_started(("namesrv", "broker"))
    for price in range(1, 11):
        props = {"TAGS": "A" if price % 2 else "B", "price": str(price)}
        if price % 2 == 0:
            props["region"] = "eu"
        send(n.broker, "Goods", f"m{price}".encode(), **props)
    yield n
    n.stop()


@pytest.mark.parametrize("expression, want", [
    ("price > 7", ["m8", "m9", "m10"]),
    ("TAGS = 'A' AND price BETWEEN 3 AND 7", ["m3", "m5", "m7"]),
    ("TAGS IN ('B') AND price <= 4", ["m2", "m4"]),
    ("region IS NULL AND price > 6", ["m7", "m9"]),
    ("region IS NOT NULL OR price = 1", ["m1", "m2", "m4", "m6", "m8", "m10"]),
    ("NOT (region = 'eu')", []),                       # NULL for odd prices: not selected
    ("region <> 'eu'", []),
    ("price NOT BETWEEN 2 AND 9", ["m1", "m10"]),
    ("price > 8.5", ["m9", "m10"]),
    ("TRUE", [f"m{i}" for i in range(1, 11)]),
    ("FALSE OR region = 'eu' AND price < 5", ["m2", "m4"]),
    ("region = 5", []),                                 # 'eu' is no Integer: Java throws
])
def test_lite_pull_filters_as_java(node, expression, want):
    assert bodies(lite_pull(node.broker, "Goods", expression)) == want


def test_push_consumer_heartbeat_then_pull(node):
    found, = push_pull(node.broker, "PushG", "Goods", "price >= 9 OR TAGS = 'B' AND price < 3")
    assert bodies(found) == ["m2", "m9", "m10"]
    assert found.field("nextBeginOffset") == "10"
    nothing, = push_pull(node.broker, "PushG2", "Goods", "price > 100")
    assert nothing.code == ResponseCode.PULL_RETRY_IMMEDIATELY  # NO_MATCHED_MESSAGE
    assert nothing.remark == "NO_MATCHED_MESSAGE" and nothing.field("nextBeginOffset") == "10"


def test_bad_expressions_get_javas_codes_and_remarks(node):
    bad, = push_pull(node.broker, "BadG", "Goods", "price >")
    assert (bad.code, bad.remark) == (ResponseCode.FILTER_DATA_NOT_EXIST, NO_FILTER_DATA)
    flagged = lite_pull(node.broker, "Goods", "price > 'x'")
    assert (flagged.code, flagged.remark) == (ResponseCode.SUBSCRIPTION_PARSE_FAILED,
                                              PARSE_FAILED)
    empty = lite_pull(node.broker, "Goods", "")
    assert (empty.code, empty.remark) == (ResponseCode.SUBSCRIPTION_PARSE_FAILED, PARSE_FAILED)
    assert check(node.broker, "Goods", "price > 5").code == ResponseCode.SUCCESS
    assert check(node.broker, "Goods", "anything", kind="TAG").code == ResponseCode.SUCCESS
    resp = check(node.broker, "Goods", "price >")
    assert resp.code == ResponseCode.SUBSCRIPTION_PARSE_FAILED
    assert resp.remark == ('org.apache.rocketmq.filter.parser.ParseException: '
                           'Encountered "<EOF>" at line 1, column 7.')
    resp = check(node.broker, "Goods", "a = 1", kind="GROOVY")  # no such filter in Java
    assert (resp.code, resp.remark) == (ResponseCode.SUBSCRIPTION_PARSE_FAILED, None)


@pytest.mark.parametrize("expression", [
    "(" * 5000 + "a = 1" + ")" * 5000, "NOT " * 5000 + "a", "a = 1 AND " * 2000 + "a = 1",
    "a = 1 = " * 300 + "TRUE", "'" + "x" * 20000, "a IN (" + "'x', " * 3000 + "'y')",
    "a = '\n\x00\u2028'", "\x00", "a = 1 /* unterminated",
])
def test_hostile_expressions_are_refused_on_one_line(node, expression):
    resp = check(node.broker, "Goods", expression)
    assert resp.code in (ResponseCode.SUCCESS, ResponseCode.SUBSCRIPTION_PARSE_FAILED)
    assert resp.remark is None or ("\n" not in resp.remark and len(resp.remark) < 300)
    assert lite_pull(node.broker, "Goods", expression).code in (
        ResponseCode.SUCCESS, ResponseCode.PULL_RETRY_IMMEDIATELY,
        ResponseCode.SUBSCRIPTION_PARSE_FAILED)


def test_pop_with_sql92(node):
    async def run() -> list[str]:
        client = RemotingClient()
        try:
            consumer = PopConsumer(client, NameServerClient(client, node.namesrv), "PopSql")
            resp = await client.invoke(node.broker, RemotingCommand.request(RC.POP_MESSAGE, {
                "consumerGroup": "PopSql", "topic": "Goods", "queueId": 0, "maxMsgNums": 32,
                "invisibleTime": 60000, "pollTime": 0, "bornTime": 0, "initMode": 0,
                "expType": "SQL92", "exp": "price > 8", "order": False}), 5)
            assert resp.code == 0, resp.remark
            del consumer
            return [m.body.decode() for m in parse_messages(resp.body)]
        finally:
            await client.close()
    assert sorted(asyncio.run(run())) == ["m10", "m9"]


def test_rmqctl_consume_and_tail_sql(node):
    out = rmqctl(node.namesrv, "consume", "Goods", "-g", "CliSql", "--from", "first", "-e",
                 "--format", "%b\n", "--sql", "TAGS = 'B' AND price > 5")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["m6", "m8", "m10"]
    popped = rmqctl(node.namesrv, "consume", "Goods", "-g", "CliPopSql", "--pop", "-e",
                    "--format", "%b\n", "--sql", "TAGS = 'B' AND price > 5")
    assert popped.returncode == 0, popped.stderr
    assert sorted(popped.stdout.split()) == ["m10", "m6", "m8"]
    bad = rmqctl(node.namesrv, "consume", "Goods", "-g", "CliSql", "--sql", "price >")
    assert bad.returncode == 1 and "ParseException" in bad.stderr
    both = rmqctl(node.namesrv, "consume", "Goods", "-g", "CliSql", "--sql", "a = 1",
                  "--tags", "A")
    assert both.returncode == 2
    tail = subprocess.Popen([sys.executable, "-m", "rmqctl.cli", "-n", node.namesrv, "tail",
                             "Goods", "-n", "10", "--format", "%b\n", "--sql", "price < 3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert tail.stdout is not None
        assert sorted([tail.stdout.readline().strip(), tail.stdout.readline().strip()]) == \
            ["m1", "m2"]
    finally:
        tail.terminate()
        tail.communicate(timeout=10)


def test_disabled_broker_refuses_sql92(start_node):
    node = start_node("--namesrv-port", "0", "--listen-port", "0")
    send(node.broker, "Goods", b"x", TAGS="A", price="1")
    resp = check(node.broker, "Goods", "price > 0")
    assert (resp.code, resp.remark) == (ResponseCode.SYSTEM_ERROR, UNSUPPORTED)
    resp = lite_pull(node.broker, "Goods", "price > 0")
    assert (resp.code, resp.remark) == (ResponseCode.SYSTEM_ERROR, UNSUPPORTED)
    resp, = push_pull(node.broker, "PushG", "Goods", "price > 0")
    assert (resp.code, resp.remark) == (ResponseCode.SYSTEM_ERROR, UNSUPPORTED)
    resp, = push_pull(node.broker, "PushBad", "Goods", "price >")  # no filter data first
    assert resp.code == ResponseCode.FILTER_DATA_NOT_EXIST
    out = rmqctl(node.namesrv, "tail", "Goods", "--sql", "price > 0")
    assert out.returncode == 1 and UNSUPPORTED in out.stderr

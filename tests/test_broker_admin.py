"""Broker admin requests over real sockets, as mqadmin and rmqctl send them."""

from __future__ import annotations

import re
import time

import pytest

from remoting import call, call_json, send
from rmqnode.net import fastjson
from rmqnode.net.codes import RequestCode as RC, ResponseCode


@pytest.fixture
def node(start_node):
    return start_node("--namesrv-port", "0", "--listen-port", "0",
                      "-D", "messageDelayLevel=1s 1s 1s 1s")


def test_topics_created_concurrently_are_all_routed(node):
    """Each creation registers its topic with the name server and is answered after that, as
    in Java; eight in flight at once must not shadow each other (each registration carries its
    own data version)."""
    import asyncio

    from rmqnode.net.client import RemotingClient
    from rmqnode.net.codec import RemotingCommand

    async def create_all() -> None:
        client = RemotingClient()
        gate = asyncio.Semaphore(8)

        async def one(i: int) -> None:
            async with gate:
                resp = await client.invoke(node.broker, RemotingCommand.request(
                    RC.UPDATE_AND_CREATE_TOPIC, {
                        "topic": f"Many{i}", "readQueueNums": 2, "writeQueueNums": 2,
                        "perm": 6, "topicFilterType": "SINGLE_TAG"}), 10)
                assert resp.code == 0, resp.remark
        try:
            await asyncio.gather(*(one(i) for i in range(80)))
        finally:
            await client.close()

    asyncio.run(create_all())
    listed = set(call_json(node.namesrv, RC.GET_ALL_TOPIC_LIST_FROM_NAMESERVER)["topicList"])
    missing = {f"Many{i}" for i in range(80)} - listed
    assert not missing, f"answered before the name server routed {sorted(missing)[:5]}"


def test_a_send_that_creates_its_topic_is_answered_once_it_is_routed(node):
    """A producer may hand a new topic to a consumer the moment the first send is acked (the
    C++ client's broadcasting consumers start from the offset they find then): Java answers
    that send only after registering the topic with the name servers, and so do we."""
    import asyncio

    from rmqnode.net.client import RemotingClient
    from rmqnode.net.codec import RemotingCommand

    async def go() -> list[str]:
        client = RemotingClient()  # connections to both stay open: nothing slows the lookup
        unrouted = []
        try:
            await client.invoke(node.namesrv, RemotingCommand.request(
                RC.GET_ROUTEINFO_BY_TOPIC, {"topic": "TBW102"}), 5)
            for i in range(20):
                sent = await client.invoke(node.broker, RemotingCommand.request(
                    RC.SEND_MESSAGE_V2, {"a": "PG", "b": f"Fresh{i}", "c": "TBW102", "d": 4,
                                         "e": 0, "f": 0, "g": 0, "h": 0, "i": ""}, b"x"), 5)
                assert sent.code == 0, sent.remark
                route = await client.invoke(node.namesrv, RemotingCommand.request(
                    RC.GET_ROUTEINFO_BY_TOPIC, {"topic": f"Fresh{i}"}), 5)
                if route.code != 0:
                    unrouted.append(f"Fresh{i}")
        finally:
            await client.close()
        return unrouted

    assert asyncio.run(go()) == []


def test_topic_create_update_stats_delete(node):
    resp = call(node.broker, RC.UPDATE_AND_CREATE_TOPIC, {
        "topic": "AdminT", "defaultTopic": "TBW102", "readQueueNums": 3, "writeQueueNums": 3,
        "perm": 6, "topicFilterType": "SINGLE_TAG", "topicSysFlag": 0, "order": False})
    assert resp.code == 0
    table = call_json(node.broker, RC.GET_ALL_TOPIC_CONFIG)["topicConfigTable"]
    assert table["AdminT"]["writeQueueNums"] == 3
    deadline = time.time() + 5
    while call(node.namesrv, RC.GET_ROUTEINFO_BY_TOPIC, {"topic": "AdminT"}).code != 0:
        assert time.time() < deadline, "the name server never learned of the new topic"
        time.sleep(0.05)
    for i in range(5):
        send(node.broker, "AdminT", b"x%d" % i)
    stats = call_json(node.broker, RC.GET_TOPIC_STATS_INFO, {"topic": "AdminT"})["offsetTable"]
    queues = {k.as_dict()["queueId"]: v for k, v in stats.items()}
    assert queues[0]["maxOffset"] == 5 and queues[1]["maxOffset"] == 0
    assert queues[0]["lastUpdateTimestamp"] > 0
    bad = call(node.broker, RC.UPDATE_AND_CREATE_TOPIC, {"topic": "bad topic!", "perm": 6,
                                                          "readQueueNums": 1, "writeQueueNums": 1})
    assert bad.code == ResponseCode.SYSTEM_ERROR and "illegal characters" in bad.remark
    assert call(node.broker, RC.DELETE_TOPIC_IN_BROKER, {"topic": "AdminT"}).code == 0
    assert "AdminT" not in call_json(node.broker, RC.GET_ALL_TOPIC_CONFIG)["topicConfigTable"]
    assert call(node.broker, RC.GET_TOPIC_STATS_INFO, {"topic": "AdminT"}).code == 17


def test_groups_progress_and_reset(node):
    body = fastjson.dumpb({"groupName": "AdminG", "retryMaxTimes": 3, "consumeEnable": True})
    assert call(node.broker, RC.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, body=body).code == 0
    groups = call_json(node.broker, RC.GET_ALL_SUBSCRIPTIONGROUP_CONFIG)
    assert groups["subscriptionGroupTable"]["AdminG"]["retryMaxTimes"] == 3
    first = send(node.broker, "Prog", b"a")
    for i in range(9):
        send(node.broker, "Prog", b"b")
    call(node.broker, RC.UPDATE_CONSUMER_OFFSET, {"consumerGroup": "AdminG", "topic": "Prog",
                                                  "queueId": 0, "commitOffset": 4})
    stats = call_json(node.broker, RC.GET_CONSUME_STATS, {"consumerGroup": "AdminG"})
    [(key, row)] = [(k, v) for k, v in stats["offsetTable"].items() if v["brokerOffset"]]
    assert key.as_dict()["topic"] == "Prog"
    assert (row["brokerOffset"], row["consumerOffset"]) == (10, 4) and row["lastTimestamp"] > 0
    offline = call(node.broker, RC.GET_CONSUMER_CONNECTION_LIST, {"consumerGroup": "AdminG"})
    assert (offline.code, offline.remark) == (206, "the consumer group[AdminG] not online")
    # Reset to the beginning of time: every queue of the topic goes back to its first offset.
    reset = call_json(node.broker, RC.INVOKE_BROKER_TO_RESET_OFFSET, {
        "topic": "Prog", "group": "AdminG", "timestamp": 0, "isForce": True})
    assert {k.as_dict()["queueId"]: v for k, v in reset["offsetTable"].items()}[0] == 0
    got = call(node.broker, RC.QUERY_CONSUMER_OFFSET, {"consumerGroup": "AdminG",
                                                       "topic": "Prog", "queueId": 0})
    assert got.field("offset") == "0"
    missing = call(node.broker, RC.INVOKE_BROKER_TO_RESET_OFFSET, {
        "topic": "Prog", "group": "NoSuchGroup", "timestamp": 0, "isForce": True})
    assert missing.remark == "THe consumer group <NoSuchGroup> not exist"
    assert call(node.broker, RC.DELETE_SUBSCRIPTIONGROUP, {"groupName": "AdminG",
                                                           "cleanOffset": True}).code == 0
    assert "AdminG" not in call_json(node.broker,
                                     RC.GET_ALL_SUBSCRIPTIONGROUP_CONFIG)["subscriptionGroupTable"]
    assert first["queueOffset"] == "0"


def test_lookups_view_and_query(node):
    ext = send(node.broker, "Look", b"hello", KEYS="order-1 order-2", TAGS="T")
    offset = int(ext["msgId"][-16:], 16)
    raw = call(node.broker, RC.VIEW_MESSAGE_BY_ID, {"offset": offset})
    assert raw.code == 0 and b"hello" in raw.body
    assert call(node.broker, RC.VIEW_MESSAGE_BY_ID, {"offset": 10**9}).code == 1
    found = call(node.broker, RC.QUERY_MESSAGE, {"topic": "Look", "key": "order-2", "maxNum": 8,
                                                 "beginTimestamp": 0, "endTimestamp": 2**62})
    assert found.code == 0 and b"hello" in found.body
    assert int(found.field("indexLastUpdatePhyoffset")) >= 0
    none = call(node.broker, RC.QUERY_MESSAGE, {"topic": "Look", "key": "nope", "maxNum": 8,
                                                "beginTimestamp": 0, "endTimestamp": 2**62})
    assert none.code == ResponseCode.QUERY_NOT_FOUND
    q = {"topic": "Look", "queueId": 0}
    assert call(node.broker, RC.GET_MAX_OFFSET, q).field("offset") == "1"
    assert call(node.broker, RC.GET_MIN_OFFSET, q).field("offset") == "0"
    ts = int(call(node.broker, RC.GET_EARLIEST_MSG_STORETIME, q).field("timestamp"))
    assert abs(ts - time.time() * 1000) < 60_000
    assert call(node.broker, RC.SEARCH_OFFSET_BY_TIMESTAMP, q | {"timestamp": ts}).field(
        "offset") == "0"
    assert call(node.broker, RC.SEARCH_OFFSET_BY_TIMESTAMP, q | {"timestamp": ts + 10**6}).field(
        "offset") == "1"


def test_runtime_info_and_config(node):
    for body in (b"x", b"yy", b"zzz"):
        send(node.broker, "Rt", body)
    pull = {"consumerGroup": "RtG", "topic": "Rt", "queueId": 0, "queueOffset": 0,
            "maxMsgNums": 32, "sysFlag": 4, "commitOffset": 0, "suspendTimeoutMillis": 0,
            "subscription": "*", "subVersion": 0}
    assert call(node.broker, RC.PULL_MESSAGE, pull).code == ResponseCode.SUCCESS
    assert call(node.broker, RC.PULL_MESSAGE, pull | {"queueOffset": 3}).code == \
        ResponseCode.PULL_NOT_FOUND
    table = call_json(node.broker, RC.GET_BROKER_RUNTIME_INFO)["table"]
    for key in ("brokerVersionDesc", "commitLogDiskRatio", "earliestMessageTimeStamp", "runtime",
                "msgPutTotalTodayMorning", "pullThreadPoolQueueSize", "putMessageFailedTimes"):
        assert key in table
    # Counted by the store, as Java's StoreStatsService counts: every stored byte, each read
    assert table["msgPutTotalTodayNow"] == table["putMessageTimesTotal"] == "3"
    assert table["putMessageSizeTotal"] == table["commitLogMaxOffset"]
    assert float(table["putMessageAverageSize"]) == int(table["commitLogMaxOffset"]) / 3
    assert table["msgGetTotalTodayNow"] == "3"
    figure = r"(\d+\.\d+(E-?\d+)?)?"  # one per window (10, 60, 600 s), empty until sampled
    for line in ("putTps", "getFoundTps", "getMissTps", "getTransferedTps"):
        assert re.fullmatch(f"{figure} {figure} {figure}", table[line]), (line, table[line])
    assert re.fullmatch(r"\d+\.\d+ \d+\.\d+ \d+\.\d+", table["getTotalTps"])
    resp = call(node.broker, RC.GET_BROKER_CONFIG)
    assert b"brokerName=broker-a" in resp.body
    assert fastjson.loads(resp.field("version"))["counter"] >= 0
    assert call(node.broker, RC.UPDATE_BROKER_CONFIG, body=b"maxMessageSize=1024\n").code == 0
    assert b"maxMessageSize=1024" in call(node.broker, RC.GET_BROKER_CONFIG).body


def test_delayed_message_arrives_after_its_level(node):
    ext = send(node.broker, "Later", b"soon", DELAY="2")
    assert ext["queueId"] == "0"  # the queue asked for, as Java answers (it is parked elsewhere)
    q = {"topic": "Later", "queueId": 0}
    assert call(node.broker, RC.GET_MAX_OFFSET, q).field("offset") == "0"
    deadline = time.time() + 10
    while call(node.broker, RC.GET_MAX_OFFSET, q).field("offset") != "1":
        assert time.time() < deadline, "the delayed message never arrived"
        time.sleep(0.1)


def test_transaction_half_commit_and_rollback(node):
    def half(body: bytes, uniq: str) -> dict:
        return send(node.broker, "TxT", body, TRAN_MSG="true", PGROUP="PG_TX", UNIQ_KEY=uniq)

    def end(ext: dict, uniq: str, kind: int) -> int:
        return call(node.broker, RC.END_TRANSACTION, {
            "producerGroup": "PG_TX", "tranStateTableOffset": ext["queueOffset"],
            "commitLogOffset": int(ext["msgId"][-16:], 16), "commitOrRollback": kind,
            "msgId": uniq, "fromTransactionCheck": False}).code

    send(node.broker, "TxT", b"plain")  # create the topic: queue 0 holds one message
    q = {"topic": "TxT", "queueId": 0}
    commit, rollback = half(b"commit-me", "U1"), half(b"roll-me-back", "U2")
    assert call(node.broker, RC.GET_MAX_OFFSET, q).field("offset") == "1"  # halves are hidden
    wrong = call(node.broker, RC.END_TRANSACTION, {
        "producerGroup": "OTHER", "tranStateTableOffset": commit["queueOffset"],
        "commitLogOffset": int(commit["msgId"][-16:], 16), "commitOrRollback": 8,
        "msgId": "U1"})
    assert (wrong.code, wrong.remark) == (1, "The producer group wrong")
    assert end(commit, "U1", 8) == 0
    assert end(rollback, "U2", 12) == 0
    time.sleep(0.1)
    assert call(node.broker, RC.GET_MAX_OFFSET, q).field("offset") == "2"
    pulled = call(node.broker, RC.PULL_MESSAGE, {
        "consumerGroup": "TxG", "topic": "TxT", "queueId": 0, "queueOffset": 0,
        "maxMsgNums": 32, "sysFlag": 4, "commitOffset": 0, "suspendTimeoutMillis": 0,
        "subscription": "*", "subVersion": 0})
    assert b"commit-me" in pulled.body and b"roll-me-back" not in pulled.body
    ops = call(node.broker, RC.GET_MAX_OFFSET, {"topic": "RMQ_SYS_TRANS_OP_HALF_TOPIC",
                                                "queueId": 0})
    assert ops.field("offset") == "2"  # one op record per decision


def test_consumer_status_asks_the_live_members(node):
    """INVOKE_BROKER_TO_GET_CONSUMER_STATUS: the broker asks each member over its own
    connection (GET_CONSUMER_STATUS_FROM_CLIENT) and gathers the answers by client id."""
    import asyncio

    from rmqnode.net.client import RemotingClient
    from rmqnode.net.codec import RemotingCommand
    from rmqnode.net.connection import Dispatcher

    status = {fastjson.ObjectKey.of({"brokerName": "broker-a", "queueId": 0,
                                     "topic": "StatT"}): 7}

    async def go():
        member = Dispatcher()
        member.register(RC.GET_CONSUMER_STATUS_FROM_CLIENT, lambda cmd, conn: cmd.response(
            body=fastjson.dumpb({"messageQueueTable": status})))
        client = RemotingClient(member)
        heartbeat = fastjson.dumpb({"clientID": "me@1", "consumerDataSet": [{
            "groupName": "StatG", "consumeType": "CONSUME_PASSIVELY",
            "messageModel": "CLUSTERING", "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET",
            "subscriptionDataSet": [{"topic": "StatT", "subString": "*"}]}]})
        try:
            assert (await client.invoke(node.broker, RemotingCommand.request(
                RC.HEART_BEAT, body=heartbeat))).code == 0
            admin = RemotingClient()
            try:
                resp = await admin.invoke(node.broker, RemotingCommand.request(
                    RC.INVOKE_BROKER_TO_GET_CONSUMER_STATUS, {"topic": "StatT",
                                                              "group": "StatG"}))
            finally:
                await admin.close()
        finally:
            await client.close()
        return resp

    resp = asyncio.run(go())
    assert resp.code == 0
    [(client_id, queues)] = fastjson.loads(resp.body)["consumerTable"].items()
    assert client_id == "me@1" and list(queues.values()) == [7]
    offline = call(node.broker, RC.INVOKE_BROKER_TO_GET_CONSUMER_STATUS,
                   {"topic": "StatT", "group": "Nobody"})
    assert offline.code == 1 and "No Any Consumer online" in offline.remark


def test_sync_flush_timeout_is_answered_as_java_does(start_node):
    """SYNC_FLUSH answers a send once its group commit is done; one that takes longer than
    syncFlushTimeout is answered FLUSH_DISK_TIMEOUT, the message stored all the same."""
    node = start_node("--namesrv-port", "0", "--listen-port", "0",
                      "-D", "flushDiskType=SYNC_FLUSH", "-D", "syncFlushTimeout=0")
    assert call(node.broker, RC.UPDATE_AND_CREATE_TOPIC, {
        "topic": "Slow", "readQueueNums": 1, "writeQueueNums": 1, "perm": 6,
        "topicFilterType": "SINGLE_TAG"}).code == 0
    for i in range(3):
        resp = call(node.broker, RC.SEND_MESSAGE_V2, {
            "a": "PG", "b": "Slow", "c": "TBW102", "d": 4, "e": 0, "f": 0, "g": 0, "h": 0,
            "i": ""}, f"m{i}".encode())
        assert resp.code == ResponseCode.FLUSH_DISK_TIMEOUT, (resp.code, resp.remark)
        assert resp.ext_fields["queueOffset"] == str(i)
    stored = call(node.broker, RC.GET_MAX_OFFSET, {"topic": "Slow", "queueId": 0})
    assert stored.code == 0 and stored.ext_fields["offset"] == "3"

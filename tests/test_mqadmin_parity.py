"""The requests of the mqadmin 4.9.8 commands that read a broker's whole state or reach its
consumers (brokerStatus, getBrokerConfig/exportConfigs, exportMetrics, consumerProgress,
brokerConsumeStats, consumerStatus, consumeMessage -d, cleanExpiredCQ, cleanUnusedTopic),
replayed over real sockets as mqadmin sends them."""

from __future__ import annotations

import asyncio
import time

import pytest

from remoting import call, call_json, send
from rmqnode.broker.java_config import JAVA_ONLY_DEFAULTS
from rmqnode.config import read_properties
from rmqnode.net import fastjson
from rmqnode.net.client import RemotingClient
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode as RC, ResponseCode
from rmqnode.net.connection import Dispatcher
from rmqnode.storage.stats import StoreStats

# Every key prepareRuntimeInfo + DefaultMessageStore/StoreStatsService.getRuntimeInfo print
# (commitLogDiskRatio_<path> and scheduleMessageOffset_<level> are checked apart).
JAVA_RUNTIME_KEYS = """bootTimestamp runtime putMessageEntireTimeMax putMessageTimesTotal
putMessageFailedTimes putMessageSizeTotal putMessageDistributeTime putMessageAverageSize
dispatchMaxBuffer getMessageEntireTimeMax putTps getFoundTps getMissTps getTotalTps
getTransferedTps putLatency99 putLatency999 commitLogDiskRatio consumeQueueDiskRatio
commitLogMinOffset commitLogMaxOffset brokerVersionDesc brokerVersion
msgPutTotalYesterdayMorning msgPutTotalTodayMorning msgPutTotalTodayNow
msgGetTotalYesterdayMorning msgGetTotalTodayMorning msgGetTotalTodayNow sendThreadPoolQueueSize
sendThreadPoolQueueCapacity pullThreadPoolQueueSize pullThreadPoolQueueCapacity
queryThreadPoolQueueSize queryThreadPoolQueueCapacity EndTransactionQueueSize
EndTransactionThreadPoolQueueCapacity dispatchBehindBytes pageCacheLockTimeMills
sendThreadPoolQueueHeadWaitTimeMills pullThreadPoolQueueHeadWaitTimeMills
queryThreadPoolQueueHeadWaitTimeMills earliestMessageTimeStamp startAcceptSendRequestTimeStamp
remainTransientStoreBufferNumbs remainHowManyDataToFlush commitLogDirCapacity""".split()
# What ExportConfigsCommand copies from GET_BROKER_CONFIG (a missing one fails it).
EXPORTED = """brokerClusterName brokerId brokerName brokerRole fileReservedTime filterServerNums
flushDiskType maxMessageSize messageDelayLevel msgTraceTopicName slaveReadEnable traceOn
traceTopicEnable useTLS autoCreateTopicEnable autoCreateSubscriptionGroup""".split()
GROUP, TOPIC, CLIENT = "ParityG", "ParityT", "127.0.0.1@parity"


@pytest.fixture
def node(start_node):
    return start_node("--namesrv-port", "0", "--listen-port", "0",
                      "-D", "messageDelayLevel=1s 1s 1s 1s")


def test_broker_config_lists_every_java_key_and_updates_only_ours(node):
    resp = call(node.broker, RC.GET_BROKER_CONFIG)
    props = read_properties(resp.body.decode())
    assert set(EXPORTED) <= set(props)
    assert set(JAVA_ONLY_DEFAULTS) <= set(props) and len(props) >= 180
    assert props["traceOn"] == "true" and props["useTLS"] == "false"
    assert props["brokerName"] == "broker-a"  # ours, not Java's host name default
    # Java's defaults are shown, not obeyed: they cannot be changed at run time.
    refused = call(node.broker, RC.UPDATE_BROKER_CONFIG, body=b"traceOn=false\n")
    assert refused.code == ResponseCode.SYSTEM_ERROR and "traceOn" in refused.remark
    assert "traceOn=true" in call(node.broker, RC.GET_BROKER_CONFIG).body.decode()


def test_runtime_info_has_every_java_key(node):
    send(node.broker, "Later", b"soon", DELAY="1")
    deadline = time.time() + 10
    while True:
        table = call_json(node.broker, RC.GET_BROKER_RUNTIME_INFO)["table"]
        if "scheduleMessageOffset_1" in table or time.time() > deadline:
            break
        time.sleep(0.3)
    assert not set(JAVA_RUNTIME_KEYS) - set(table)
    assert [k for k in table if k.startswith("commitLogDiskRatio_")]
    delivered, end = table["scheduleMessageOffset_1"].split(",")
    assert int(end) == 1 and int(delivered) <= 1
    assert table["putMessageDistributeTime"].startswith("[<=0ms]:")
    assert table["commitLogDirCapacity"].startswith("Total : ")
    assert table["sendThreadPoolQueueCapacity"] == "10000"


def test_system_topic_list_from_broker(node):
    topics = call_json(node.broker, RC.GET_SYSTEM_TOPIC_LIST_FROM_BROKER)["topicList"]
    assert {"TBW102", "SCHEDULE_TOPIC_XXXX", "DefaultCluster", "broker-a"} <= set(topics)


def _pull(broker: str, offset: int) -> int:
    return call(broker, RC.PULL_MESSAGE, {
        "consumerGroup": GROUP, "topic": TOPIC, "queueId": 0, "queueOffset": offset,
        "maxMsgNums": 32, "sysFlag": 5, "commitOffset": offset, "suspendTimeoutMillis": 0,
        "subscription": "*", "subVersion": 0}).code


def test_consume_tps_and_broker_consume_stats(node):
    for i in range(5):
        send(node.broker, TOPIC, b"m%d" % i)
    assert _pull(node.broker, 0) == ResponseCode.SUCCESS
    assert _pull(node.broker, 3) == ResponseCode.SUCCESS  # commits 3
    deadline = time.time() + 15  # the minute figure moves at the next 10 s sample
    while True:
        stats = call_json(node.broker, RC.GET_CONSUME_STATS, {"consumerGroup": GROUP})
        if stats["consumeTps"] > 0 or time.time() > deadline:
            break
        time.sleep(0.5)
    assert stats["consumeTps"] > 0
    listed = call_json(node.broker, RC.GET_BROKER_CONSUME_STATS, {"isOrder": "false"})
    assert listed["brokerAddr"] == node.broker
    ours = [s for entry in listed["consumeStatsList"] for s in entry.get(GROUP, [])]
    [one] = ours
    assert one["consumeTps"] > 0
    offsets = {k.as_dict()["queueId"]: v for k, v in one["offsetTable"].items()}
    assert offsets[0]["brokerOffset"] - offsets[0]["consumerOffset"] == 5 - 3
    assert listed["totalDiff"] >= 2
    ordered = call_json(node.broker, RC.GET_BROKER_CONSUME_STATS, {"isOrder": "true"})
    assert not [s for e in ordered["consumeStatsList"] for s in e.get(GROUP, [])]


seen: list[RemotingCommand] = []  # what the member was asked, in order


def _member(answers: dict[int, RemotingCommand | None]) -> Dispatcher:
    """A consumer's client side (ClientRemotingProcessor): answers what it is asked, or
    never (None)."""
    member = Dispatcher()
    for code, answer in answers.items():
        async def handle(cmd, conn, answer=answer):
            if answer is None:
                await asyncio.sleep(30)
            seen.append(cmd)
            return cmd.response(answer.code, answer.remark, answer.ext_fields, answer.body)
        member.register(code, handle)
    return member


async def _with_member(broker: str, member: Dispatcher, *requests: RemotingCommand,
                       version: int = 409) -> list[RemotingCommand]:
    client = RemotingClient(member)
    heartbeat = fastjson.dumpb({"clientID": CLIENT, "consumerDataSet": [{
        "groupName": GROUP, "consumeType": "CONSUME_PASSIVELY", "messageModel": "CLUSTERING",
        "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET",
        "subscriptionDataSet": [{"topic": TOPIC, "subString": "*"}]}]})
    beat = RemotingCommand.request(RC.HEART_BEAT, body=heartbeat)
    beat.version = version
    admin = RemotingClient()
    try:
        assert (await client.invoke(broker, beat)).code == 0
        return [await admin.invoke(broker, r, 15) for r in requests]
    finally:
        await admin.close()
        await client.close()


def test_consumer_running_info_and_consume_directly_are_relayed(node):
    seen.clear()
    msg_id = send(node.broker, TOPIC, b"direct")["msgId"]
    info = fastjson.dumpb({"properties": {"consumeType": "CONSUME_PASSIVELY"},
                           "subscriptionSet": [], "mqTable": {}, "statusTable": {}})
    consumed = fastjson.dumpb({"order": False, "autoCommit": True,
                               "consumeResult": "CR_SUCCESS", "spentTimeMills": 1})
    member = _member({RC.GET_CONSUMER_RUNNING_INFO: RemotingCommand(0, body=info),
                      RC.CONSUME_MESSAGE_DIRECTLY: RemotingCommand(0, body=consumed)})
    running, direct, gone, bad_id = asyncio.run(_with_member(
        node.broker, member,
        RemotingCommand.request(RC.GET_CONSUMER_RUNNING_INFO, {
            "consumerGroup": GROUP, "clientId": CLIENT, "jstackEnable": "false"}),
        RemotingCommand.request(RC.CONSUME_MESSAGE_DIRECTLY, {
            "consumerGroup": GROUP, "clientId": CLIENT, "msgId": msg_id}),
        RemotingCommand.request(RC.GET_CONSUMER_RUNNING_INFO, {
            "consumerGroup": GROUP, "clientId": "127.0.0.1@nobody"}),
        RemotingCommand.request(RC.CONSUME_MESSAGE_DIRECTLY, {
            "consumerGroup": GROUP, "clientId": CLIENT, "msgId": "zz"})))
    assert (running.code, running.body) == (0, info)
    assert (direct.code, direct.body) == (0, consumed)
    asked_running, asked_direct = seen
    assert asked_running.field("jstackEnable") == "false"
    assert asked_direct.field("brokerName") == "broker-a"
    assert b"direct" in asked_direct.body  # the stored message itself
    assert gone.code == ResponseCode.SYSTEM_ERROR
    assert gone.remark == f"The Consumer <{GROUP}> <127.0.0.1@nobody> not online"
    assert bad_id.code == ResponseCode.SYSTEM_ERROR


def test_relay_refuses_old_clients_and_times_out_on_silent_ones(node, monkeypatch):
    ask = RemotingCommand.request(RC.GET_CONSUMER_RUNNING_INFO,
                                  {"consumerGroup": GROUP, "clientId": CLIENT})
    [old] = asyncio.run(_with_member(node.broker, _member({}), ask, version=10))
    assert old.code == ResponseCode.SYSTEM_ERROR and "too low" in old.remark
    started = time.time()
    [silent] = asyncio.run(_with_member(
        node.broker, _member({RC.GET_CONSUMER_RUNNING_INFO: None}),
        RemotingCommand.request(RC.GET_CONSUMER_RUNNING_INFO,
                                {"consumerGroup": GROUP, "clientId": CLIENT})))
    assert silent.code == ResponseCode.CONSUME_MSG_TIMEOUT
    assert 9 < time.time() - started < 14  # Broker2Client's 10 s


def test_put_time_distribution_and_percentiles_as_java_computes_them():
    stats = StoreStats()
    for _ in range(990):
        stats.put(1, 100, 200_000)  # 0.2 ms: Java's 0 ms
    for _ in range(10):
        stats.put(1, 100, 30_000_000)
    assert stats.runtime_info()["putMessageEntireTimeMax"] == "30"
    assert stats.distribution().startswith("[<=0ms]:0 ")  # nothing before the first period
    stats.new_latency_period(60_000)
    info = stats.runtime_info()
    assert info["putMessageDistributeTime"] == (
        "[<=0ms]:990 [0~10ms]:0 [10~50ms]:10 [50~100ms]:0 [100~200ms]:0 [200~500ms]:0 "
        "[500ms~1s]:0 [1~2s]:0 [2~3s]:0 [3~4s]:0 [4~5s]:0 [5~10s]:0 [10s~]:0 ")
    # findPutMessageEntireTimePX: index 990 falls in the first bucket (0..1 ms, 990 puts);
    # index 999 in the 28..30 ms bucket, 9 of its 10 puts in.
    assert (info["putLatency99"], info["putLatency999"]) == ("1.00", "29.80")
    assert info["putMessageEntireTimeMax"] == "30"


def test_clean_unused_topics_and_expired_queues(tmp_path):
    """cleanUnusedTopic drops queues of topics without a config; cleanExpiredCQ drops queues
    whose every message expired with the CommitLog files, and such a queue starts anew."""
    import os

    from rmqnode.storage.queue_cleanup import clean_expired_queues, clean_unused_topics
    from test_store_engine import msg, opened

    async def go():
        store = await opened(tmp_path, fileReservedTime=1, deleteWhen="99")
        store.put_nowait([msg("Old", 0, b"o" * 100)])
        while len(store.commitlog.files.files) < 3:
            store.put_nowait([msg("Live", 0, b"l" * 1000)])
        await asyncio.sleep(0.2)  # dispatched to the queues
        assert store.find_queue("Old", 0).max_offset == 1
        assert clean_unused_topics(store, {"Live", "Old"}) == []
        old = time.time() - 2 * 3600
        os.utime(store.commitlog.files.files[0].path, (old, old))
        assert store.delete_expired_files() == 1
        assert clean_expired_queues(store) == [("Old", 0)]
        assert store.find_queue("Old", 0) is None and store.max_offset("Old", 0) == 0
        assert store.max_offset("Live", 0) > 0
        assert clean_unused_topics(store, {"Other"}) == ["Live"]
        assert store.find_queue("Live", 0) is None
        await store.close()
    asyncio.run(go())


def _rmqctl(*args: str):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "rmqctl.cli", *args], capture_output=True,
                          text=True, timeout=60)


def test_rmqctl_group_status_broker_consume_stats_and_clean(node):
    """The same requests from rmqctl: group status asks each live member through the broker,
    broker consume-stats lists the lag per queue, broker clean runs both clean-ups."""
    import json

    for i in range(4):
        send(node.broker, TOPIC, b"m%d" % i)
    assert _pull(node.broker, 1) == ResponseCode.SUCCESS  # commits 1
    info = fastjson.dumpb({"properties": {"PROP_CONSUME_TYPE": "CONSUME_PASSIVELY",
                                          "PROP_CLIENT_VERSION": "V4_9_8"},
                           "subscriptionSet": [{"topic": TOPIC, "subString": "*"}],
                           "mqTable": {}, "statusTable": {TOPIC: {"pullTPS": 1.5,
                                                                  "consumeOKTPS": 2.0}}})
    member = _member({RC.GET_CONSUMER_RUNNING_INFO: RemotingCommand(0, body=info)})

    async def status_while_online():
        client = RemotingClient(member)
        heartbeat = fastjson.dumpb({"clientID": CLIENT, "consumerDataSet": [{
            "groupName": GROUP, "consumeType": "CONSUME_PASSIVELY",
            "messageModel": "CLUSTERING", "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET",
            "subscriptionDataSet": [{"topic": TOPIC, "subString": "*"}]}]})
        try:
            beat = await client.invoke(node.broker, RemotingCommand.request(RC.HEART_BEAT,
                                                                            body=heartbeat))
            assert beat.code == 0
            return await asyncio.to_thread(_rmqctl, "-n", node.namesrv, "-o", "json", "group",
                                           "status", GROUP)
        finally:
            await client.close()

    out = asyncio.run(status_while_online())
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[CLIENT]["statusTable"][TOPIC]["consumeOKTPS"] == 2.0
    gone = _rmqctl("-n", node.namesrv, "group", "status", GROUP)
    assert gone.returncode == 3 and "no live member" in gone.stderr

    stats = _rmqctl("-n", node.namesrv, "-o", "json", "broker", "consume-stats", "broker-a")
    assert stats.returncode == 0, stats.stderr
    ours = [r for r in json.loads(stats.stdout) if r["group"] == GROUP and r["topic"] == TOPIC]
    assert sum(r["diff"] for r in ours) == 4 - 1
    assert "total diff" in stats.stderr

    clean = _rmqctl("-n", node.namesrv, "-o", "json", "broker", "clean", "broker-a",
                    "--expired-queues", "--unused-topics")
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["cleaned"] == ["expired-queues", "unused-topics"]
    assert _rmqctl("-n", node.namesrv, "broker", "clean", "broker-a").returncode == 2

"""Broker roles of replication over real nodes: a SYNC/ASYNC master (brokerId 0) and a SLAVE
(brokerId > 0) of the same brokerName, one name server. Registration with the real id, the
name server's answer naming the master, the slave refusing writes with Java's codes, the
master answering the four GET_ALL_* a slave copies (Java's bytes), the slave's copies of
them, consumer offsets committed on the slave reaching the master, pull answers'
suggestWhichBrokerId, and rmqctl's view of the pair. Raw frames go through tests/remoting.py."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from remoting import call, call_json, send
from rmqnode.launch import rmqnode_argv
from rmqnode.net import fastjson
from rmqnode.net.codes import RequestCode as RC
from rmqnode.net.codes import ResponseCode

SLAVE_ARGS = ("-D", "brokerRole=SLAVE", "-D", "brokerId=1")


def wait_for(predicate, what: str, timeout: float = 30.0):
    """Poll until `predicate()` is truthy (replication and sync are periodic)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def pair(start_node):
    """(name server + master, slave): the master made of a topic, a group and an offset
    first, so the slave's first sync (when it learns its master) copies them."""
    master = start_node("--listen-port", "0", "--namesrv-port", "0")
    assert call(master.broker, RC.UPDATE_AND_CREATE_TOPIC, {
        "topic": "HaT", "defaultTopic": "TBW102", "readQueueNums": 2, "writeQueueNums": 2,
        "perm": 6, "topicFilterType": "SINGLE_TAG", "order": False}).code == 0
    group = {"groupName": "HaG", "consumeEnable": True, "whichBrokerWhenConsumeSlowly": 1}
    assert call(master.broker, RC.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
                body=fastjson.dumpb(group)).code == 0
    assert call(master.broker, RC.UPDATE_CONSUMER_OFFSET, {
        "consumerGroup": "HaG", "topic": "HaT", "queueId": 1, "commitOffset": 5}).code == 0
    send(master.broker, "HaT", b"delayed", DELAY="1")  # delivered after 1 s: level 1 moves
    wait_for(lambda: call_json(master.broker, RC.GET_ALL_DELAY_OFFSET)["offsetTable"],
             "the delayed message delivered")
    slave = start_node("--role", "broker", "--listen-port", "0", "-n", master.namesrv,
                       *SLAVE_ARGS, roles=("broker",))
    return master, slave


def cluster_addrs(ns: str) -> dict:
    info = call_json(ns, RC.GET_BROKER_CLUSTER_INFO)
    return info["brokerAddrTable"].get("broker-a", {}).get("brokerAddrs", {})


def test_role_settings_are_checked_at_start(tmp_path: Path):
    for args, message in (
            (SLAVE_ARGS[:2], "brokerRole=SLAVE needs brokerId > 0, not 0"),
            (("-D", "brokerId=2"), "brokerId=2 is a slave's id: a master "
                                   "(brokerRole=ASYNC_MASTER) has brokerId 0"),
            ((*SLAVE_ARGS, "-D", "haMasterAddress=nohost"),
             "haMasterAddress='nohost' must be the master's HA address, host:port"),
            (("-D", "accessMessageInMemoryMaxRatio=101"),
             "accessMessageInMemoryMaxRatio=101 is out of range; allowed 0..100")):
        proc = subprocess.run(rmqnode_argv("--role", "broker", "-p", *args), cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
    proc = subprocess.run(rmqnode_argv("--role", "broker", "-p", *SLAVE_ARGS, "-D",
                                       "haMasterAddress=10.0.0.5:10912", "-D",
                                       "slaveReadEnable=true"),
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for line in ("brokerRole=SLAVE", "brokerId=1", "haMasterAddress=10.0.0.5:10912",
                 "slaveReadEnable=true", "haTransferBatchSize=32768"):
        assert line in proc.stdout.splitlines()


def test_slave_registers_refuses_writes_and_copies_the_masters_metadata(pair):
    master, slave = pair
    ns = master.namesrv
    assert wait_for(lambda: cluster_addrs(ns) == {"0": master.broker, "1": slave.broker},
                    "both in the cluster")
    route = call_json(ns, RC.GET_ROUTEINFO_BY_TOPIC, {"topic": "HaT"})
    [broker] = route["brokerDatas"]
    assert broker["brokerAddrs"] == {"0": master.broker, "1": slave.broker}

    # the slave's copies, from its first sync (it learnt its master when it registered)
    topics = wait_for(lambda: (t := call_json(slave.broker, RC.GET_ALL_TOPIC_CONFIG))
                      ["topicConfigTable"].get("HaT") and t, "the topic on the slave")
    assert topics == call_json(master.broker, RC.GET_ALL_TOPIC_CONFIG)
    assert wait_for(lambda: call_json(slave.broker, RC.GET_ALL_CONSUMER_OFFSET) ==
                    {"offsetTable": {"HaT@HaG": {"1": 5}}}, "the offset on the slave")
    groups = call_json(master.broker, RC.GET_ALL_SUBSCRIPTIONGROUP_CONFIG)
    wait_for(lambda: call_json(slave.broker, RC.GET_ALL_SUBSCRIPTIONGROUP_CONFIG) == groups,
             "the groups on the slave")
    assert groups["subscriptionGroupTable"]["HaG"]["whichBrokerWhenConsumeSlowly"] == 1
    config_dir = slave.home / "store" / "config"
    on_disk = json.loads((config_dir / "topics.json").read_text())
    assert "HaT" in on_disk["topicConfigTable"]
    assert wait_for(lambda: (config_dir / "delayOffset.json").exists(), "delayOffset.json")
    assert (config_dir / "delayOffset.json").read_bytes() == b'{"offsetTable":{1:1}}'
    assert call_json(slave.broker, RC.GET_ALL_DELAY_OFFSET) == {"offsetTable": {"1": 1}}

    # the master's answers are Java's bytes: the config files' JSON, unquoted queue ids
    resp = call(master.broker, RC.GET_ALL_CONSUMER_OFFSET)
    assert resp.code == 0 and resp.body == b'{"offsetTable":{"HaT@HaG":{1:5}}}'
    resp = call(master.broker, RC.GET_ALL_DELAY_OFFSET)
    assert resp.code == 0 and resp.body == b'{"offsetTable":{1:1}}'

    # writes: a slave's CommitLog is the master's alone
    resp = call(slave.broker, RC.SEND_MESSAGE_V2, {
        "a": "PG", "b": "HaT", "c": "TBW102", "d": 4, "e": 0, "f": 0, "g": 0, "h": 0,
        "i": ""}, b"refused")
    assert resp.code == ResponseCode.SERVICE_NOT_AVAILABLE
    assert "messages are put to the slave" in resp.remark
    resp = call(slave.broker, RC.SEND_MESSAGE_V2, {
        "a": "PG", "b": "NewOnSlave", "c": "TBW102", "d": 4, "e": 0, "f": 0, "g": 0,
        "h": 0, "i": ""}, b"refused")
    assert resp.code == ResponseCode.SERVICE_NOT_AVAILABLE
    assert "NewOnSlave" not in call_json(slave.broker, RC.GET_ALL_TOPIC_CONFIG)[
        "topicConfigTable"]
    resp = call(slave.broker, RC.END_TRANSACTION, {
        "producerGroup": "PG", "tranStateTableOffset": 0, "commitLogOffset": 0,
        "commitOrRollback": 8, "fromTransactionCheck": False, "msgId": "x"})
    assert resp.code == ResponseCode.SLAVE_NOT_AVAILABLE
    def max_offset(node) -> str:
        return call(node.broker, RC.GET_MAX_OFFSET, {"topic": "HaT", "queueId": 0}).field(
            "offset")
    # what the slave's queue holds is the master's (the delayed message) and nothing else
    assert wait_for(lambda: max_offset(slave) == max_offset(master), "the queue replicated")
    # topics and groups are the master's to change (Java's validateSlave)
    from_slave = ("Can't modify topic or subscription group from slave broker, please "
                  "execute it from master broker.")
    for code, fields, body in (
            (RC.UPDATE_AND_CREATE_TOPIC, {"topic": "Other", "readQueueNums": 1,
                                          "writeQueueNums": 1, "perm": 6}, b""),
            (RC.DELETE_TOPIC_IN_BROKER, {"topic": "HaT"}, b""),
            (RC.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, None,
             fastjson.dumpb({"groupName": "Other"})),
            (RC.DELETE_SUBSCRIPTIONGROUP, {"groupName": "HaG"}, b"")):
        resp = call(slave.broker, code, fields, body)
        assert (resp.code, resp.remark) == (ResponseCode.SYSTEM_ERROR, from_slave)

    # the replication figures in the runtime info, each side its own
    on_master = call_json(master.broker, RC.GET_BROKER_RUNTIME_INFO)["table"]
    on_slave = call_json(slave.broker, RC.GET_BROKER_RUNTIME_INFO)["table"]
    assert on_master["haServerAddr"].endswith(":" + on_master["haListenPort"])
    assert "haSlaveConnections" in on_master and "haConnectionState" not in on_master
    assert on_slave["haMasterAddress"] == on_master["haServerAddr"]
    send(master.broker, "HaT", b"on the master")


def test_offsets_committed_on_the_slave_reach_the_master_and_a_reset_there_wins(pair):
    master, slave = pair
    wait_for(lambda: call_json(slave.broker, RC.GET_ALL_CONSUMER_OFFSET) ==
             {"offsetTable": {"HaT@HaG": {"1": 5}}}, "the first sync")

    def query(addr: str, queue_id: int) -> int | None:
        resp = call(addr, RC.QUERY_CONSUMER_OFFSET, {
            "consumerGroup": "HaG", "topic": "HaT", "queueId": queue_id,
            "setZeroIfNotFound": False})
        return int(resp.field("offset")) if resp.code == 0 else None

    # as a consumer does while its master is down: commits go to the slave
    for queue_id, offset in ((0, 3), (1, 9)):
        assert call(slave.broker, RC.UPDATE_CONSUMER_OFFSET, {
            "consumerGroup": "HaG", "topic": "HaT", "queueId": queue_id,
            "commitOffset": offset}).code == 0
    wait_for(lambda: (query(master.broker, 0), query(master.broker, 1)) == (3, 9),
             "the slave's commits on the master")
    # an operator moving the group back on the master is not undone by the slave
    assert call(master.broker, RC.UPDATE_CONSUMER_OFFSET, {
        "consumerGroup": "HaG", "topic": "HaT", "queueId": 1, "commitOffset": 2}).code == 0
    wait_for(lambda: query(slave.broker, 1) == 2, "the master's reset on the slave")
    assert query(master.broker, 1) == 2


PULL = {"consumerGroup": "HaG", "topic": "HaT", "queueId": 0, "queueOffset": 0,
        "maxMsgNums": 1, "sysFlag": 4, "commitOffset": 0, "suspendTimeoutMillis": 0,
        "subscription": "*", "subVersion": 0}


def test_pull_suggests_a_broker_as_java_computes_it(start_node):
    # every message is "far behind" with a ratio of 0: the group's slow-consumer broker
    node = start_node("--listen-port", "0", "--namesrv-port", "0",
                      "-D", "slaveReadEnable=true", "-D", "accessMessageInMemoryMaxRatio=0")
    group = {"groupName": "HaG", "whichBrokerWhenConsumeSlowly": 3, "brokerId": 2}
    assert call(node.broker, RC.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
                body=fastjson.dumpb(group)).code == 0
    for body in (b"a", b"b"):
        send(node.broker, "HaT", body)

    def suggestion(**fields) -> int:
        resp = call(node.broker, RC.PULL_MESSAGE, PULL | fields)
        return int(resp.field("suggestWhichBrokerId"))

    assert suggestion() == 3
    assert suggestion(queueOffset=5) == 2  # nothing read: the group's broker
    # in memory (the default ratio): the group's brokerId
    assert call(node.broker, RC.UPDATE_BROKER_CONFIG,
                body=b"accessMessageInMemoryMaxRatio=40\n").code == 0
    assert suggestion() == 2
    # without slaveReadEnable: always the master
    assert call(node.broker, RC.UPDATE_BROKER_CONFIG, body=b"slaveReadEnable=false\n").code == 0
    assert suggestion() == 0


def test_a_slave_leaves_a_bad_pull_offset_alone(pair):
    master, slave = pair
    wait_for(lambda: "HaT" in call_json(slave.broker, RC.GET_ALL_TOPIC_CONFIG)[
        "topicConfigTable"], "the topic on the slave")
    on_master = call(master.broker, RC.PULL_MESSAGE, PULL | {"queueOffset": 7})
    assert on_master.code == ResponseCode.PULL_OFFSET_MOVED
    assert on_master.field("nextBeginOffset") == "0"
    on_slave = call(slave.broker, RC.PULL_MESSAGE, PULL | {"queueOffset": 7})
    assert on_slave.code == ResponseCode.PULL_RETRY_IMMEDIATELY
    assert on_slave.field("nextBeginOffset") == "7"
    assert on_slave.field("suggestWhichBrokerId") == "0"
    # a pull's commit flag is the master's business: the slave takes no offset from it
    call(slave.broker, RC.PULL_MESSAGE, PULL | {"sysFlag": 5, "commitOffset": 4})
    assert call_json(slave.broker, RC.GET_ALL_CONSUMER_OFFSET)["offsetTable"].get(
        "HaT@HaG", {}).get("0") is None


def rmqctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rmqctl.cli", *args], capture_output=True,
                          text=True, timeout=60)


def test_rmqctl_shows_the_pair_and_the_slaves_figures(pair):
    master, slave = pair
    for body in (b"one", b"two"):
        send(master.broker, "HaT", body)

    def rows() -> list[dict]:
        out = rmqctl("-n", master.namesrv, "-o", "json", "cluster", "list")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)
    caught_up = wait_for(lambda: (r := rows()) and len(r) == 2 and r[1]["lagBytes"] == 0
                         and r[1]["haState"] == "TRANSFER" and r, "the slave caught up")
    assert caught_up == [
        {"cluster": "DefaultCluster", "brokerName": "broker-a", "brokerId": 0,
         "addr": master.broker, "role": "ASYNC_MASTER", "haState": "SERVING",
         "lagBytes": None},
        {"cluster": "DefaultCluster", "brokerName": "broker-a", "brokerId": 1,
         "addr": slave.broker, "role": "SLAVE", "haState": "TRANSFER", "lagBytes": 0}]
    table = rmqctl("-n", master.namesrv, "cluster", "list")
    assert table.returncode == 0 and "SLAVE" in table.stdout and "TRANSFER" in table.stdout

    status = rmqctl("-n", master.namesrv, "-o", "json", "broker", "status", "broker-a#1")
    assert status.returncode == 0, status.stderr
    figures = json.loads(status.stdout)
    assert figures["haConnectionState"] == "TRANSFER"
    assert figures["commitLogMaxOffset"] == json.loads(rmqctl(
        "-n", master.namesrv, "-o", "json", "broker", "status", "broker-a").stdout)[
        "commitLogMaxOffset"]
    missing = rmqctl("-n", master.namesrv, "broker", "status", "broker-a#7")
    assert missing.returncode == 3 and "no broker named 'broker-a#7'" in missing.stderr

    # the master gone (with its name server): the slave, asked by address, says it lost it
    master.stop()

    def slave_state() -> str:
        out = rmqctl("-n", master.namesrv, "-o", "json", "broker", "status", slave.broker)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)["haConnectionState"]
    assert wait_for(lambda: (s := slave_state()) != "TRANSFER" and s, "the slave's state") \
        in ("IDLE", "CONNECTING")


def test_commits_taken_while_the_master_was_away_reach_it_when_it_returns(start_node,
                                                                           tmp_path):
    ns = start_node("--role", "namesrv", "--listen-port", "0", roles=("namesrv",))
    home = tmp_path / "master"
    home.mkdir()
    master_args = ("--role", "broker", "--listen-port", "0", "-n", ns.namesrv)
    master = start_node(*master_args, roles=("broker",), home=home)
    assert call(master.broker, RC.UPDATE_CONSUMER_OFFSET, {
        "consumerGroup": "HaG", "topic": "HaT", "queueId": 0, "commitOffset": 1}).code == 0
    slave = start_node("--role", "broker", "--listen-port", "0", "-n", ns.namesrv, "-v",
                       "-D", "registerNameServerPeriod=10000", *SLAVE_ARGS, roles=("broker",))
    slave.wait_line(f"slave.master_changed master={master.broker}")

    master.stop(signal.SIGKILL)
    slave.wait_line("slave.master_changed master=-", timeout=30)  # its next registration
    assert call(slave.broker, RC.UPDATE_CONSUMER_OFFSET, {
        "consumerGroup": "HaG", "topic": "HaT", "queueId": 0, "commitOffset": 6}).code == 0

    # back on another port: the masterless slave asks the name server every round
    master = start_node(*master_args, roles=("broker",), home=home)
    slave.wait_line(f"slave.master_changed master={master.broker}", timeout=30)

    def on_master() -> int:
        resp = call(master.broker, RC.QUERY_CONSUMER_OFFSET, {
            "consumerGroup": "HaG", "topic": "HaT", "queueId": 0})
        return int(resp.field("offset"))
    wait_for(lambda: on_master() == 6, "the slave's commit on the master")

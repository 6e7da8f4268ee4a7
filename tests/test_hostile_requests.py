"""Requests that once lost acknowledged data, escaped the store or took the node down, each
replayed over a real socket against a real node (issue: hardening)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Node
from remoting import call, call_json
from rmqnode.net import fastjson
from rmqnode.net.codes import RequestCode as RC, ResponseCode

ARGS = ("--namesrv-port", "0", "--listen-port", "0", "-D", "flushDiskType=SYNC_FLUSH")


def send_v2(broker: str, topic: str, body: bytes, sys_flag: int = 0, **fields: object):
    header = {"a": "PG", "b": topic, "c": "TBW102", "d": 4, "e": 0, "f": sys_flag, "g": 0,
              "h": 0, "i": ""} | fields
    return call(broker, RC.SEND_MESSAGE_V2, header, body)


def pull_all(broker: str, topic: str, group: str = "G") -> list[bytes]:
    from rmqnode.storage.records import decode_record
    resp = call(broker, RC.PULL_MESSAGE, {
        "consumerGroup": group, "topic": topic, "queueId": 0, "queueOffset": 0,
        "maxMsgNums": 64, "sysFlag": 4, "commitOffset": 0, "suspendTimeoutMillis": 0,
        "subscription": "*", "subVersion": 0})
    assert resp.code == ResponseCode.SUCCESS, f"{resp.code} {resp.remark}"
    out, pos = [], 0
    while pos < len(resp.body):
        msg = decode_record(resp.body, pos, check_crc=True)
        out.append(msg.body)
        pos += msg.store_size
    return out


def rmqctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rmqctl.cli", *args], capture_output=True,
                          text=True, timeout=60)


def test_client_ipv6_host_bits_cannot_break_the_commitlog(tmp_path):
    """sysFlag 0x10/0x20/0x30 from an IPv4 client once made a record whose layout did not
    match its size: pulls failed, and recovery after kill -9 cut every later message."""
    home = tmp_path / "home"
    home.mkdir()
    node = Node(list(ARGS), home).wait_started(("namesrv", "broker"))
    sent = []
    for i, flag in enumerate([0, 0x10, 0x20, 0x30, 0x31, 0x32 | 0x80, 0]):
        body = f"m{i}".encode()
        resp = send_v2(node.broker, "HostBits", body, flag)
        assert resp.code == 0, resp.remark
        sent.append(body)
    assert pull_all(node.broker, "HostBits") == sent
    node.proc.send_signal(signal.SIGKILL)
    node.proc.wait(10)
    verify = rmqctl("inspect-commitlog", str(home / "store"), "--verify", "--summary")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    node = Node(list(ARGS), home).wait_started(("namesrv", "broker"))
    try:
        assert pull_all(node.broker, "HostBits") == sent
        # And every later message after the odd ones is there too.
        assert send_v2(node.broker, "HostBits", b"after").code == 0
        assert pull_all(node.broker, "HostBits") == [*sent, b"after"]
    finally:
        node.stop()


HOSTILE_NAMES = ["../commitlog", "../config", "../../x", "/tmp/abs", "a/b", "..", ".",
                 "%DLQ%é", '%RETRY%{"a":1}', "x" * 300, "", " ", "a\x00b", "\u202e"]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_hostile_topic_and_group_names_touch_nothing(start_node, tmp_path_factory):
    """DELETE_TOPIC_IN_BROKER once removed `consumequeue/<topic>` for any topic, `../commitlog`
    included; send-back and heartbeats created files from group names outside the store."""
    sandbox = tmp_path_factory.mktemp("sandbox")
    home = sandbox / "home"
    home.mkdir()
    node = start_node(*ARGS, home=home)
    assert send_v2(node.broker, "Keep", b"kept").code == 0
    store = home / "store"
    before_outside = _tree(sandbox) - {p for p in _tree(sandbox) if p.startswith("home")}
    for name in HOSTILE_NAMES:
        resp = call(node.broker, RC.DELETE_TOPIC_IN_BROKER, {"topic": name})
        assert resp.code != 0, name
        resp = call(node.broker, RC.CONSUMER_SEND_MSG_BACK, {
            "group": name, "offset": 0, "delayLevel": 0, "originMsgId": "x",
            "originTopic": "Keep", "unitMode": False, "maxReconsumeTimes": 16})
        assert resp.code != 0, name
        heartbeat = fastjson.dumpb({"clientID": "c1", "consumerDataSet": [{
            "groupName": name, "consumeType": "CONSUME_PASSIVELY",
            "messageModel": "CLUSTERING", "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET",
            "subscriptionDataSet": [{"topic": "Keep", "subString": "*"}]}],
            "producerDataSet": []})
        assert call(node.broker, RC.HEART_BEAT, body=heartbeat).code != 0, name
        resp = call(node.broker, RC.UPDATE_CONSUMER_OFFSET, {
            "consumerGroup": name, "topic": "Keep", "queueId": 0, "commitOffset": 1})
        assert resp.code != 0, name
        resp = call(node.broker, RC.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
                    body=fastjson.dumpb({"groupName": name}))
        assert resp.code != 0, name
    # Nothing outside the node's home changed, and nothing named by a hostile name inside it.
    assert _tree(sandbox) - {p for p in _tree(sandbox) if p.startswith("home")} == before_outside
    assert (store / "commitlog").is_dir() and (store / "config" / "topics.json").is_file()
    topics = call_json(node.broker, RC.GET_ALL_TOPIC_CONFIG)["topicConfigTable"]
    assert not [t for t in topics if "%" in t and not t.startswith(("%RETRY%", "%DLQ%"))]
    assert all(".." not in t and "/" not in t for t in topics)
    assert pull_all(node.broker, "Keep") == [b"kept"]
    # System topics cannot be deleted either (TopicValidator.isSystemTopic).
    resp = call(node.broker, RC.DELETE_TOPIC_IN_BROKER, {"topic": "SCHEDULE_TOPIC_XXXX"})
    assert resp.code == ResponseCode.SYSTEM_ERROR and "system topic" in resp.remark
    node.stop()
    assert "Traceback" not in "\n".join(node.lines)


@pytest.mark.parametrize("value", ["-5", str(2 ** 63), str(10 ** 8), "abc", "1e400", "4097"])
def test_queue_counts_are_bounded(start_node, value):
    """readQueueNums of 10^8 once allocated gigabytes within seconds."""
    node = start_node(*ARGS)
    resp = call(node.broker, RC.UPDATE_AND_CREATE_TOPIC, {
        "topic": "Bounded", "readQueueNums": value, "writeQueueNums": value, "perm": 6})
    assert resp.code == ResponseCode.SYSTEM_ERROR
    assert len(resp.remark) < 200
    topics = call_json(node.broker, RC.GET_ALL_TOPIC_CONFIG)["topicConfigTable"]
    assert "Bounded" not in topics
    # The node still works.
    assert call(node.broker, RC.UPDATE_AND_CREATE_TOPIC, {
        "topic": "Bounded", "readQueueNums": 1024, "writeQueueNums": 1024, "perm": 6}).code == 0


def test_broker_config_updates_are_all_or_nothing(start_node):
    node = start_node(*ARGS)

    def config() -> dict[str, str]:
        resp = call(node.broker, RC.GET_BROKER_CONFIG)
        return dict(line.split("=", 1) for line in resp.body.decode().splitlines() if line)

    before = config()
    cases = {
        b"fileReservedTime=5\nflushDiskType=BOGUS\n": ResponseCode.NO_PERMISSION,
        b"fileReservedTime=5\ndiskMaxUsedSpaceRatio=500\n": ResponseCode.SYSTEM_ERROR,
        b"fileReservedTime=5\nnoSuchKey=1\n": ResponseCode.SYSTEM_ERROR,
        b"fileReservedTime=5\nstorePathRootDir=/tmp\n": ResponseCode.NO_PERMISSION,
        b"brokerName=zzz\nlistenPort=1\n": ResponseCode.NO_PERMISSION,
        b"fileReservedTime=abc\n": ResponseCode.SYSTEM_ERROR,
        b"\xff\xfe": ResponseCode.SYSTEM_ERROR,
    }
    for body, code in cases.items():
        resp = call(node.broker, RC.UPDATE_BROKER_CONFIG, body=body)
        assert resp.code == code, (body, resp.code, resp.remark)
    assert config() == before
    assert call(node.broker, RC.UPDATE_BROKER_CONFIG,
                body=b"fileReservedTime=5\ndeleteWhen=03;04\n").code == 0
    after = config()
    assert (after["fileReservedTime"], after["deleteWhen"]) == ("5", "03;04")
    # The runtime info still answers (a path change once broke it for good).
    assert call(node.broker, RC.GET_BROKER_RUNTIME_INFO).code == 0


@pytest.mark.parametrize("prop", [
    "mappedFileSizeCommitLog=-5", "mappedFileSizeCommitLog=100", "maxMessageSize=0",
    "flushDiskType=BOGUS", "diskMaxUsedSpaceRatio=500", "listenPort=70000",
    "messageDelayLevel=garbage"])
def test_start_refuses_unusable_settings_in_one_line(tmp_path, prop):
    from rmqnode.launch import rmqnode_argv
    proc = subprocess.run(rmqnode_argv("--namesrv-port", "0", "-D", prop), capture_output=True,
                          text=True, timeout=30, env={**os.environ, "RMQNODE_HOME": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and prop.split("=")[0] in lines[0], proc.stderr


def test_batches_with_a_transaction_type_or_a_delay_are_refused_as_in_java(tmp_path):
    """A send whose header said "prepared" (a batch, or one message without TRAN_MSG) once
    took queue offsets and wrote no entries: an all-zero slot in the consume queue, offsets
    and lag that differ from Java's (no message was seen lost across kill -9 and restart,
    which this test also checks). As in Java, a lone prepared or rolled-back record takes no
    queue offset, and asyncPutMessages' refusal of transactional and delayed batches
    (MESSAGE_ILLEGAL) is ours too; an undelayed batch (DELAY 0) goes."""
    from rmqnode.message import BatchEntry, encode_batch
    home = tmp_path / "home"
    home.mkdir()
    node = Node(list(ARGS), home).wait_started(("namesrv", "broker"))
    batch = encode_batch([BatchEntry(b"b1"), BatchEntry(b"b2")])

    def send_batch(sys_flag: int, properties: str = "") -> int:
        return send_v2(node.broker, "Batched", batch, sys_flag, i=properties, m="true").code

    assert send_v2(node.broker, "Batched", b"m0").code == 0
    # A lone record flagged prepared or rolled back (no TRAN_MSG, so not a half message) is
    # stored as Java stores it: with queue offset 0, taking none, never consumed.
    for flag in (0x4, 0xC):
        resp = send_v2(node.broker, "Batched", b"never consumed", flag)
        assert resp.code == 0 and resp.ext_fields["queueOffset"] == "0", resp
    for flag in (0x4, 0x8, 0xC, 0x4 | 0x1):
        assert send_batch(flag) == ResponseCode.MESSAGE_ILLEGAL, flag
    assert send_batch(0, "DELAY\x013") == ResponseCode.MESSAGE_ILLEGAL
    assert send_batch(0, "DELAY\x010") == 0
    assert send_v2(node.broker, "Batched", b"m1").code == 0
    assert pull_all(node.broker, "Batched") == [b"m0", b"b1", b"b2", b"m1"]
    node.proc.send_signal(signal.SIGKILL)
    node.proc.wait(10)
    node = Node(list(ARGS), home).wait_started(("namesrv", "broker"))
    try:
        assert send_v2(node.broker, "Batched", b"m2").code == 0
        assert pull_all(node.broker, "Batched") == [b"m0", b"b1", b"b2", b"m1", b"m2"]
    finally:
        node.stop()


def test_a_send_to_a_topic_without_write_queues_is_refused_in_one_line(start_node):
    """queueId -1 asks the broker to pick a write queue; with none (writeQueueNums 0) the pick
    once crashed the handler (a ValueError line in the log): Java divides by zero there and
    answers SYSTEM_ERROR, and so do we, with a remark that says why."""
    node = start_node(*ARGS)
    resp = call(node.broker, RC.UPDATE_AND_CREATE_TOPIC, {
        "topic": "NoWrite", "readQueueNums": 4, "writeQueueNums": 0, "perm": 6})
    assert resp.code == 0, resp.remark
    resp = send_v2(node.broker, "NoWrite", b"x", e=-1)
    assert resp.code == ResponseCode.SYSTEM_ERROR
    assert resp.remark == "the topic[NoWrite] has no queue to write"
    assert send_v2(node.broker, "NoWrite", b"x", e=0).code == 0  # a queue named explicitly
    node.stop()
    assert not [line for line in node.lines if "Traceback" in line or "crashed" in line]

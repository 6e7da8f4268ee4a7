"""Per-topic and per-group statistics (VIEW_BROKER_STATS_DATA, what `mqadmin statsAll`
reads): the windows' arithmetic at exact sample times, and a live node's items."""

from __future__ import annotations

import json

from remoting import call, send
from rmqnode.broker.stats import (BROKER_PUT_NUMS, DAY, GROUP_GET_NUMS, GROUP_GET_SIZE, HOUR,
                                  MINUTE, TOPIC_PUT_NUMS, TOPIC_PUT_SIZE, BrokerStats)
from rmqnode.net.codes import RequestCode as RC, ResponseCode

T0 = 1_800_000_000_000


def test_a_new_item_counts_from_zero_one_step_back():
    stats = BrokerStats("C")
    stats.put("T", 4, 400)
    stats.put("T", 2, 100)
    for window in (MINUTE, HOUR, DAY):
        stats.tick(window, T0)
    data = stats.data(TOPIC_PUT_NUMS, "T")
    # Java seeds an item's first sample with zeros one step (10 s, 10 min, 1 h) earlier
    assert data["statsMinute"] == {"avgpt": 3.0, "sum": 6, "tps": 0.6}
    assert data["statsHour"] == {"avgpt": 3.0, "sum": 6, "tps": 6 * 1000 / 600_000}
    assert data["statsDay"] == {"avgpt": 3.0, "sum": 6, "tps": 6 * 1000 / 3_600_000}
    assert stats.data(TOPIC_PUT_SIZE, "T")["statsMinute"]["sum"] == 500
    # the broker-wide item counts messages, not calls: no value per call
    assert stats.data(BROKER_PUT_NUMS, "C")["statsMinute"] == {"avgpt": 0.0, "sum": 6,
                                                              "tps": 0.6}


def test_the_minute_window_keeps_seven_samples():
    stats = BrokerStats("C")
    stats.put("T", 1, 10)
    stats.tick(MINUTE, T0)  # seeds (T0 - 10 s, 0) and (T0, 1)
    for i in range(1, 8):
        stats.put("T", 10, 100)
        stats.tick(MINUTE, T0 + i * 10_000)
    # seven samples kept: T0 + 10 s .. T0 + 70 s, six steps of 10 messages each
    assert stats.data(TOPIC_PUT_NUMS, "T")["statsMinute"] == {"avgpt": 10.0, "sum": 60,
                                                             "tps": 1.0}


def test_unsampled_and_unknown_items():
    stats = BrokerStats("C")
    stats.got("T", "G", [b"ab", b"cde"])
    assert stats.data(GROUP_GET_NUMS, "T@G")["statsMinute"] == {"avgpt": 0.0, "sum": 0,
                                                               "tps": 0.0}
    stats.tick(MINUTE, T0)
    assert stats.data(GROUP_GET_NUMS, "T@G")["statsMinute"]["sum"] == 2
    assert stats.data(GROUP_GET_SIZE, "T@G")["statsMinute"]["sum"] == 5
    assert stats.data(GROUP_GET_NUMS, "T@Other") is None
    assert stats.data("NO_SUCH_STATS", "T") is None


def test_a_live_node_keeps_items_for_what_it_served(start_node):
    node = start_node("--namesrv-port", "0", "--listen-port", "0")
    for body in (b"a", b"bb"):
        send(node.broker, "St", body)

    def stats(name, key):
        return call(node.broker, RC.VIEW_BROKER_STATS_DATA, {"statsName": name,
                                                             "statsKey": key})
    resp = stats(TOPIC_PUT_NUMS, "St")
    assert resp.code == ResponseCode.SUCCESS
    assert sorted(json.loads(resp.body)) == ["statsDay", "statsHour", "statsMinute"]
    assert call(node.broker, RC.PULL_MESSAGE, {
        "consumerGroup": "StG", "topic": "St", "queueId": 0, "queueOffset": 0,
        "maxMsgNums": 32, "sysFlag": 4, "commitOffset": 0, "suspendTimeoutMillis": 0,
        "subscription": "*", "subVersion": 0}).code == ResponseCode.SUCCESS
    assert stats(GROUP_GET_NUMS, "St@StG").code == ResponseCode.SUCCESS
    missing = stats(GROUP_GET_NUMS, "St@NoGroup")
    assert (missing.code, missing.remark) == (ResponseCode.SYSTEM_ERROR,
                                              "The stats <GROUP_GET_NUMS> <St@NoGroup> not exist")

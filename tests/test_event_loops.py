"""The node runs on uvloop when the `fast` extra is installed and on asyncio's own loop
otherwise (or with RMQNODE_LOOP=asyncio); both serve the same protocol. CI installs the extra,
so both loops are exercised here."""

from __future__ import annotations

import importlib.util

import pytest

from remoting import call, send
from rmqnode.net.codes import RequestCode, ResponseCode


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_send_and_pull_on_each_event_loop(start_node, loop):
    if loop == "uvloop":
        assert importlib.util.find_spec("uvloop"), "uvloop is missing: pip install -e '.[fast]'"
    node = start_node("--namesrv-port", "0", "--listen-port", "0", "-v",
                      env={"RMQNODE_LOOP": loop})
    assert node.wait_line(r"node\.event_loop loop=").endswith(f"loop={loop}")
    for i in range(20):
        send(node.broker, "Loops", f"m{i}".encode(), queue_id=0)
    resp = call(node.broker, RequestCode.PULL_MESSAGE, {
        "consumerGroup": "LG", "topic": "Loops", "queueId": 0, "queueOffset": 0,
        "maxMsgNums": 32, "sysFlag": 4, "commitOffset": 0, "suspendTimeoutMillis": 0,
        "subscription": "*", "subVersion": 0})
    assert resp.code == ResponseCode.SUCCESS and resp.field("nextBeginOffset") == "20"

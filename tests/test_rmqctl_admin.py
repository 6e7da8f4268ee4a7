"""rmqctl's name-server commands, run as a user runs them, against a real rmqnode."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def rmqctl(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rmqctl.cli", *args], capture_output=True,
                          text=True, timeout=30, input=input)


@pytest.fixture
def node(start_node):
    return start_node("--namesrv-port", "0", "--listen-port", "0")


def test_cluster_list(node):
    out = rmqctl("-n", node.namesrv, "cluster", "list")
    assert out.returncode == 0, out.stderr
    assert "DefaultCluster" in out.stdout and node.broker in out.stdout
    [row] = json.loads(rmqctl("-n", node.namesrv, "-o", "json", "cluster", "list").stdout)
    assert row == {"cluster": "DefaultCluster", "brokerName": "broker-a", "brokerId": 0,
                   "addr": node.broker, "role": "ASYNC_MASTER", "haState": "NO_SLAVE",
                   "lagBytes": None}


def test_topic_list_and_route(node):
    names = rmqctl("-n", node.namesrv, "-o", "raw", "topic", "list").stdout.split()
    assert {"TBW102", "DefaultCluster", "SCHEDULE_TOPIC_XXXX"} <= set(names)
    by_cluster = rmqctl("-n", node.namesrv, "-o", "raw", "topic", "list", "-c", "DefaultCluster")
    assert set(by_cluster.stdout.split()) == set(names)
    route = rmqctl("-n", node.namesrv, "topic", "route", "TBW102")
    assert route.returncode == 0 and "RWX" in route.stdout and node.broker in route.stdout
    data = json.loads(rmqctl("-n", node.namesrv, "-o", "json", "topic", "route", "TBW102").stdout)
    assert data["queueDatas"][0]["writeQueueNums"] == 8
    lines = [json.loads(line) for line in
             rmqctl("-n", node.namesrv, "-o", "ndjson", "topic", "list").stdout.splitlines()]
    assert {"topic": "TBW102", "type": "NORMAL"} in lines


def test_kv_commands(node):
    ns = node.namesrv
    assert rmqctl("-n", ns, "kv", "put", "ORDER_TOPIC_CONFIG", "T", "broker-a:4").returncode == 0
    assert rmqctl("-n", ns, "kv", "get", "ORDER_TOPIC_CONFIG", "T").stdout == "broker-a:4\n"
    listing = rmqctl("-n", ns, "-o", "json", "kv", "get", "ORDER_TOPIC_CONFIG")
    assert json.loads(listing.stdout) == [{"key": "T", "value": "broker-a:4"}]
    assert rmqctl("-n", ns, "kv", "delete", "ORDER_TOPIC_CONFIG", "T").returncode == 0
    missing = rmqctl("-n", ns, "kv", "get", "ORDER_TOPIC_CONFIG", "T")
    assert missing.returncode == 3  # not found
    assert missing.stderr == "rmqctl: no config item ORDER_TOPIC_CONFIG/T\n"


def test_failures_are_one_line_with_exit_codes(node):
    out = rmqctl("-n", node.namesrv, "topic", "route", "Nope")
    assert out.returncode == 3  # not found
    assert out.stderr == ("rmqctl: TOPIC_NOT_EXIST (17): No topic route info in name server "
                          "for the topic: Nope\n")
    out = rmqctl("-n", "127.0.0.1:1", "topic", "list")
    assert (out.returncode, out.stderr) == (1, "rmqctl: cannot connect to 127.0.0.1:1: "
                                               "connection refused\n")
    out = rmqctl("-n", "nohost", "topic", "list")
    assert (out.returncode, out.stderr) == (2, "rmqctl: name server address 'nohost' is not "
                                               "host:port\n")
    out = rmqctl("topic", "frobnicate")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    # A second name server that is down is skipped over.
    out = rmqctl("-n", f"127.0.0.1:1;{node.namesrv}", "-o", "raw", "topic", "list")
    assert out.returncode == 0 and "TBW102" in out.stdout


def test_both_commands_say_their_version():
    from importlib.metadata import version

    from rmqnode.launch import rmqnode_argv
    for argv in ([sys.executable, "-m", "rmqctl.cli"], rmqnode_argv()):
        out = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split()[1] == version("rmqnode") and "RocketMQ 4.9.8" in out.stdout

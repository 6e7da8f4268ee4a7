"""The NameServer role with real rmqnode processes: brokers come and go, KV and config."""

from __future__ import annotations

import asyncio
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest

from rmqnode.net import fastjson
from rmqnode.net.client import RemotingClient
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode as RC, ResponseCode
from remoting import call, call_json


def brokers_in_route(ns: str, topic: str = "TBW102") -> set[str]:
    resp = call(ns, RC.GET_ROUTEINFO_BY_TOPIC, {"topic": topic})
    if resp.code == ResponseCode.TOPIC_NOT_EXIST:
        return set()
    route = fastjson.loads(resp.body)
    return {b["brokerName"] for b in route["brokerDatas"]}


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def start_broker(start_node, ns: str, name: str, *extra: str):
    return start_node("--role", "broker", "--listen-port", "0", "-n", ns,
                      "-D", f"brokerName={name}", *extra, roles=("broker",))


def test_unknown_topic_is_topic_not_exist_with_rocketmq_remark(namesrv):
    resp = call(namesrv.namesrv, RC.GET_ROUTEINFO_BY_TOPIC, {"topic": "Nope"})
    assert resp.code == ResponseCode.TOPIC_NOT_EXIST
    assert resp.remark.startswith("No topic route info in name server for the topic: Nope")


def test_two_brokers_register_and_leave(start_node, namesrv):
    ns = namesrv.namesrv
    a = start_broker(start_node, ns, "broker-a")
    b = start_broker(start_node, ns, "broker-b")
    assert brokers_in_route(ns) == {"broker-a", "broker-b"}
    info = call_json(ns, RC.GET_BROKER_CLUSTER_INFO)
    assert info["clusterAddrTable"] == {"DefaultCluster": ["broker-a", "broker-b"]}
    assert info["brokerAddrTable"]["broker-b"]["brokerAddrs"] == {"0": b.broker}
    assert "DefaultCluster" in call_json(ns, RC.GET_ALL_TOPIC_LIST_FROM_NAMESERVER)["topicList"]
    assert "broker-a" in call_json(ns, RC.GET_TOPICS_BY_CLUSTER,
                                   {"cluster": "DefaultCluster"})["topicList"]

    # A clean stop unregisters at once.
    assert b.stop(signal.SIGTERM) == 0
    assert brokers_in_route(ns) == {"broker-a"}
    assert "broker-b" not in call_json(ns, RC.GET_ALL_TOPIC_LIST_FROM_NAMESERVER)["topicList"]

    # kill -9: the broker's connection closes and the name server drops it right away.
    a.stop(signal.SIGKILL)
    wait_for(lambda: not brokers_in_route(ns), 5, "broker-a to leave the route")
    assert namesrv.wait_line(r"broker\.connection_closed")


def register_silently(ns: str, name: str, **fields: object
                      ) -> tuple[asyncio.AbstractEventLoop, RemotingClient]:
    """Register a broker from a connection that then stays open but says nothing."""
    loop = asyncio.new_event_loop()
    client = RemotingClient()
    body = fastjson.dumpb({"filterServerList": [], "topicConfigSerializeWrapper": {
        "dataVersion": {"counter": 1, "timestamp": 1},
        "topicConfigTable": {"Silent": {"topicName": "Silent", "perm": 6, "readQueueNums": 2,
                                        "writeQueueNums": 2}}}})
    cmd = RemotingCommand.request(RC.REGISTER_BROKER, {
        "brokerAddr": f"127.0.0.1:{hash(name) % 1000 + 20000}", "brokerName": name,
        "clusterName": "C", "brokerId": 0, "haServerAddr": "x:1", **fields}, body)
    resp = loop.run_until_complete(client.invoke(ns, cmd))
    assert resp.code == 0
    return loop, client


# A 5.x broker sends its own timeout; one longer than the name server's is cut to it.
@pytest.mark.parametrize("fields", [{}, {"heartbeatTimeoutMillis": 10**15}])
def test_silent_broker_expires_after_its_timeout(start_node, fields):
    node = start_node("--role", "namesrv", "--listen-port", "0",
                      "-D", "brokerChannelExpiredMillis=1500",
                      "-D", "scanNotActiveBrokerIntervalMillis=200", roles=("namesrv",))
    ns = node.namesrv
    loop, client = register_silently(ns, "quiet", **fields)
    try:
        assert brokers_in_route(ns, "Silent") == {"quiet"}
        started = time.monotonic()
        wait_for(lambda: not brokers_in_route(ns, "Silent"), 10, "silent broker to expire")
        assert time.monotonic() - started >= 0.8  # not before its timeout
        node.wait_line(r"broker\.expired")
        assert fastjson.loads(call(ns, RC.GET_BROKER_CLUSTER_INFO).body) == {
            "brokerAddrTable": {}, "clusterAddrTable": {}}
    finally:
        loop.run_until_complete(client.close())
        loop.close()


def test_broker_registers_with_every_name_server(start_node):
    ns1 = start_node("--role", "namesrv", "--listen-port", "0", roles=("namesrv",)).namesrv
    ns2 = start_node("--role", "namesrv", "--listen-port", "0", roles=("namesrv",)).namesrv
    start_broker(start_node, f"{ns1};{ns2}", "broker-m")
    assert brokers_in_route(ns1) == brokers_in_route(ns2) == {"broker-m"}


def test_broker_honours_namesrv_addr_env(start_node, namesrv):
    start_node("--role", "broker", "--listen-port", "0", "-D", "brokerName=from-env",
               roles=("broker",), env={"NAMESRV_ADDR": namesrv.namesrv})
    assert brokers_in_route(namesrv.namesrv) == {"from-env"}


def test_kv_config_roundtrip_and_persistence(start_node, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    node = start_node("--role", "namesrv", "--listen-port", "0", roles=("namesrv",), home=home)
    ns = node.namesrv
    kv = {"namespace": "ORDER_TOPIC_CONFIG", "key": "OrderT", "value": "broker-a:4"}
    assert call(ns, RC.PUT_KV_CONFIG, kv).code == 0
    assert call(ns, RC.GET_KV_CONFIG, kv).field("value") == "broker-a:4"
    assert call_json(ns, RC.GET_KVLIST_BY_NAMESPACE, kv) == {"table": {"OrderT": "broker-a:4"}}
    missing = call(ns, RC.GET_KV_CONFIG, {"namespace": "N", "key": "k"})
    assert (missing.code, missing.remark) == (22, "No config item, Namespace: N Key: k")
    assert call(ns, RC.GET_KVLIST_BY_NAMESPACE, {"namespace": "N"}).code == 22

    node.stop()
    node = start_node("--role", "namesrv", "--listen-port", "0", roles=("namesrv",), home=home)
    ns = node.namesrv
    assert call(ns, RC.GET_KV_CONFIG, kv).field("value") == "broker-a:4"
    assert call(ns, RC.DELETE_KV_CONFIG, kv).code == 0
    assert call(ns, RC.GET_KV_CONFIG, kv).code == 22
    saved = fastjson.loads((home / "namesrv" / "kvConfig.json").read_bytes())
    assert saved == {"configTable": {}}


def test_order_topic_conf_in_route_when_enabled(start_node, namesrv):
    ns = namesrv.namesrv
    start_broker(start_node, ns, "broker-o")
    call(ns, RC.PUT_KV_CONFIG, {"namespace": "ORDER_TOPIC_CONFIG", "key": "TBW102",
                                "value": "broker-o:8"})
    assert "orderTopicConf" not in call_json(ns, RC.GET_ROUTEINFO_BY_TOPIC, {"topic": "TBW102"})
    resp = call(ns, RC.UPDATE_NAMESRV_CONFIG, body=b"orderMessageEnable=true\n")
    assert resp.code == 0
    assert b"orderMessageEnable=true" in call(ns, RC.GET_NAMESRV_CONFIG).body
    route = call_json(ns, RC.GET_ROUTEINFO_BY_TOPIC, {"topic": "TBW102"})
    assert route["orderTopicConf"] == "broker-o:8"
    blocked = call(ns, RC.UPDATE_NAMESRV_CONFIG, body=b"kvConfigPath=/etc/passwd\n")
    assert (blocked.code, blocked.remark) == (16, "Can not update config in black list.")


def test_delete_topic_and_write_perm(start_node, namesrv):
    ns = namesrv.namesrv
    start_broker(start_node, ns, "broker-d")
    wiped = call(ns, RC.WIPE_WRITE_PERM_OF_BROKER, {"brokerName": "broker-d"})
    assert int(wiped.field("wipeTopicCount")) > 5
    [queue] = call_json(ns, RC.GET_ROUTEINFO_BY_TOPIC, {"topic": "TBW102"})["queueDatas"]
    assert queue["perm"] == 5
    call(ns, RC.ADD_WRITE_PERM_OF_BROKER, {"brokerName": "broker-d"})
    assert call(ns, RC.DELETE_TOPIC_IN_NAMESRV, {"topic": "SELF_TEST_TOPIC"}).code == 0
    assert not brokers_in_route(ns, "SELF_TEST_TOPIC")
    assert brokers_in_route(ns, "TBW102") == {"broker-d"}


def test_bad_peers_harm_nothing_else(namesrv):
    host, port = namesrv.namesrv.split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(struct.pack(">ii", 12, 8) + b"not json")
        s.settimeout(5)
        assert s.recv(100) == b""  # closed
    resp = call(namesrv.namesrv, 4242)
    assert (resp.code, resp.remark) == (3, " request type 4242 not supported")
    resp = call(namesrv.namesrv, RC.REGISTER_BROKER, {"brokerName": "x"}, b"{")
    assert resp.code == ResponseCode.SYSTEM_ERROR
    resp = call(namesrv.namesrv, RC.REGISTER_BROKER, {"bodyCrc32": 5}, b"{}")
    assert (resp.code, resp.remark) == (1, "crc32 not match")
    assert call(namesrv.namesrv, RC.GET_ALL_TOPIC_LIST_FROM_NAMESERVER).code == 0


def rmqnode(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rmqnode.cli", *args], capture_output=True,
                          text=True, timeout=30, **kw)


def test_cli_config_file_overrides_and_misuse(tmp_path):
    conf = tmp_path / "broker.conf"
    conf.write_text("# a RocketMQ broker.conf\nbrokerName=conf-b\nlistenPort=12345\n"
                    "flushDiskType=SYNC_FLUSH\nsomeFutureKey=1\n")
    out = rmqnode("--role", "broker", "-c", str(conf), "--listen-port", "23456", "-p")
    assert out.returncode == 0, out.stderr
    assert "brokerName=conf-b" in out.stdout and "listenPort=23456" in out.stdout
    assert "flushDiskType=SYNC_FLUSH" in out.stdout
    assert "unknown config key 'someFutureKey'" in out.stderr

    conf.write_text("listenPort=abc\n")
    out = rmqnode("--role", "broker", "-c", str(conf))
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "listenPort must be a whole number" in out.stderr
    out = rmqnode("--role", "bogus")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    out = rmqnode("-c", str(tmp_path / "missing.conf"))
    assert out.returncode == 2 and "cannot read config file" in out.stderr


def test_cli_port_in_use_is_one_clear_line(namesrv):
    port = namesrv.namesrv.split(":")[1]
    out = rmqnode("--role", "namesrv", "--listen-port", port)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and "address already in use" in out.stderr.lower()

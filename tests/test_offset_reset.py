"""`rmqctl offset reset` end to end: exact offsets clamped per queue, a running `rmqctl consume`
re-seeking, the offline reset of a stopped store, and mqadmin's fallback when a Java broker
answers CONSUMER_NOT_ONLINE (a stand-in Java broker: a real remoting server registered with a
real name server, answering as 4.9.8 does)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

from rmqnode.net import fastjson
from rmqnode.net.client import RemotingClient
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode as RC
from rmqnode.net.codes import ResponseCode
from rmqnode.net.connection import Dispatcher
from rmqnode.net.fastjson import ObjectKey
from rmqnode.net.server import RemotingServer
from remoting import call, send
from test_rmqctl_admin_live import js, node  # noqa: F401 - node is a fixture
from test_rmqctl_messages import rmqctl


def wait_for(predicate, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def filled(node, topic: str, counts: list[int]) -> dict[int, int]:
    """A topic whose queue i holds counts[i] messages; its max offsets by queue."""
    ns = node.namesrv
    assert rmqctl(ns, "topic", "create", topic, "-q", str(len(counts))).returncode == 0
    for queue_id, n in enumerate(counts):
        for i in range(n):
            send(node.broker, topic, f"m{queue_id}-{i}".encode(), queue_id)
    return {r["queueId"]: r["maxOffset"]
            for r in js(rmqctl(ns, "-o", "json", "topic", "status", topic))}


def test_to_offset_sets_every_queue_clamped_and_refuses_negatives(node):
    ns = node.namesrv
    assert filled(node, "Clamp", [1, 3, 5]) == {0: 1, 1: 3, 2: 5}
    rmqctl(ns, "consume", "Clamp", "-g", "ClampG", "--from", "first", "-e")
    rows = js(rmqctl(ns, "-o", "json", "offset", "reset", "-g", "ClampG", "-t", "Clamp",
                     "--to-offset", "3", "--yes"))
    assert [(r["queueId"], r["requested"], r["after"], r["clamped"]) for r in rows] == [
        (0, 3, 1, "to max"), (1, 3, 3, None), (2, 3, 3, None)]
    progress = js(rmqctl(ns, "-o", "json", "group", "progress", "ClampG"))
    assert {r["queueId"]: r["consumerOffset"] for r in progress} == {0: 1, 1: 3, 2: 3}
    [one] = js(rmqctl(ns, "-o", "json", "offset", "reset", "-g", "ClampG", "-t", "Clamp",
                      "--to-offset", "0", "--queue", "2", "--yes"))
    assert (one["queueId"], one["after"], one["clamped"]) == (2, 0, None)
    table = rmqctl(ns, "offset", "reset", "-g", "ClampG", "-t", "Clamp", "--to-offset", "9",
                   "--yes")
    assert table.returncode == 0 and table.stdout.count("to max") == 3
    assert "no live member of ClampG" in table.stderr

    negative = rmqctl(ns, "offset", "reset", "-g", "ClampG", "-t", "Clamp", "--to-offset", "-5")
    assert negative.returncode == 2 and "-5" in negative.stderr
    refused = call(node.broker, RC.INVOKE_BROKER_TO_RESET_OFFSET, {
        "topic": "Clamp", "group": "ClampG", "timestamp": 0, "isForce": True, "offset": -5})
    assert refused.code == ResponseCode.SYSTEM_ERROR and "<offset>" in refused.remark
    bad_name = rmqctl(ns, "offset", "reset", "-g", "no good", "-t", "Clamp", "--earliest")
    assert bad_name.returncode == 2 and "illegal characters" in bad_name.stderr


def test_a_running_consume_rereads_after_a_reset_and_keeps_it(node):
    """The consumer is long-polling when the reset comes: it drops that pull, reads the
    queue again from the new offset at once, and never commits its old position."""
    ns = node.namesrv
    filled(node, "Seek", [4])
    consumer = subprocess.Popen(
        [sys.executable, "-m", "rmqctl.cli", "-n", ns, "consume", "Seek", "-g", "SeekG",
         "--from", "first", "--format", "%b"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(consumer.stdout.readline, "")),
                              daemon=True)
    reader.start()
    try:
        wait_for(lambda: len(lines) == 4, "the consumer read the 4 messages")
        wait_for(lambda: js(rmqctl(ns, "-o", "json", "group", "progress", "SeekG"))[0][
            "consumerOffset"] == 4, "the consumer committed its position")
        time.sleep(0.5)  # its next pull is held by the broker now
        asked = time.monotonic()
        reset = rmqctl(ns, "-o", "json", "offset", "reset", "-g", "SeekG", "-t", "Seek",
                       "--to-offset", "1", "--yes")
        assert [r["after"] for r in js(reset)] == [1]
        assert "rmqctl: told: " in reset.stderr and "(JAVA, version" in reset.stderr
        wait_for(lambda: len(lines) == 7, "the consumer re-read from offset 1", 10)
        assert time.monotonic() - asked < 5  # not after the held pull's 15 s
        assert [x.strip() for x in lines[4:]] == ["m0-1", "m0-2", "m0-3"]
        wait_for(lambda: js(rmqctl(ns, "-o", "json", "group", "progress", "SeekG"))[0][
            "consumerOffset"] == 4, "the consumer committed its new position")
        send(node.broker, "Seek", b"m0-4")
        wait_for(lambda: len(lines) == 8, "the consumer goes on with new messages")
    finally:
        consumer.terminate()
        consumer.wait(10)


def test_a_pop_consumer_follows_a_reset_the_broker_keeps(node):
    """POP consumers hold no position of their own: the next POP reads from the reset."""
    ns = node.namesrv
    filled(node, "PopR", [3])
    consumer = subprocess.Popen(
        [sys.executable, "-m", "rmqctl.cli", "-n", ns, "consume", "PopR", "-g", "PopRG",
         "--pop", "--format", "%b"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(consumer.stdout.readline, "")),
                     daemon=True).start()
    try:
        wait_for(lambda: len(lines) == 3, "the POP consumer read the 3 messages")
        reset = rmqctl(ns, "-o", "json", "offset", "reset", "-g", "PopRG", "-t", "PopR",
                       "--to-offset", "1", "--yes")
        assert [r["after"] for r in js(reset)] == [1]
        wait_for(lambda: len(lines) == 5, "the POP consumer read from the reset offset", 30)
        assert [x.strip() for x in lines[3:]] == ["m0-1", "m0-2"]
    finally:
        consumer.terminate()
        consumer.wait(10)


def test_offline_reset_clamps_reads_the_store_and_refuses_what_is_not_one(start_node,
                                                                        tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    node = start_node("--namesrv-port", "0", "--listen-port", "0", home=home)
    filled(node, "Off", [2, 1])
    before_last = int(time.time() * 1000)
    time.sleep(0.05)
    send(node.broker, "Off", b"late")
    rmqctl(node.namesrv, "consume", "Off", "-g", "OffG", "--from", "first", "-e")
    node.stop()
    store = str(home / "store")

    def offline(*args: str) -> list[dict]:
        return js(rmqctl("127.0.0.1:1", "-o", "json", "offset", "reset", "-g", "OffG",
                         "-t", "Off", "--offline", store, "--yes", *args))
    rows = offline("--to-offset", "10")
    assert [(r["queueId"], r["after"], r["clamped"]) for r in rows] == [
        (0, 3, "to max"), (1, 1, "to max")]
    assert [r["after"] for r in offline("--earliest")] == [0, 0]
    assert [r["after"] for r in offline("--to-timestamp", str(before_last))] == [2, 1]
    assert [r["after"] for r in offline("--latest")] == [3, 1]
    assert [r["after"] for r in offline("--to-offset", "1", "--queue", "0")] == [1]

    not_store = rmqctl("127.0.0.1:1", "offset", "reset", "-g", "OffG", "-t", "Off",
                       "--earliest", "--offline", str(tmp_path))
    assert not_store.returncode == 2 and "is not a store" in not_store.stderr
    no_topic = rmqctl("127.0.0.1:1", "offset", "reset", "-g", "OffG", "-t", "Nope",
                      "--earliest", "--offline", store)
    assert no_topic.returncode == 3 and "has no topic Nope" in no_topic.stderr

    node = start_node("--namesrv-port", "0", "--listen-port", "0", home=home)
    progress = js(rmqctl(node.namesrv, "-o", "json", "group", "progress", "OffG"))
    assert {r["queueId"]: r["diff"] for r in progress} == {0: 2, 1: 0}


class JavaBroker:
    """A 4.9.8 broker as far as a reset goes: group "Gone" has nobody online, so its reset
    is CONSUMER_NOT_ONLINE; group "Mixed" has a Java and a C++ member, and the answer is
    Java's ResetOffsetBody alone. Queues hold offsets 2..7; a timestamp finds offset 5."""

    MIN, MAX, BY_TIME = 2, 7, 5

    def __init__(self) -> None:
        self.updates: list[dict] = []
        d = Dispatcher()
        d.register(RC.INVOKE_BROKER_TO_RESET_OFFSET, self.reset)
        d.register(RC.GET_CONSUMER_CONNECTION_LIST, self.connections)
        d.register(RC.GET_MIN_OFFSET, lambda cmd, conn: cmd.response(fields={"offset": self.MIN}))
        d.register(RC.GET_MAX_OFFSET, lambda cmd, conn: cmd.response(fields={"offset": self.MAX}))
        d.register(RC.SEARCH_OFFSET_BY_TIMESTAMP,
                   lambda cmd, conn: cmd.response(fields={"offset": self.BY_TIME}))
        d.register(RC.UPDATE_CONSUMER_OFFSET, self.update)
        d.register(RC.QUERY_CONSUMER_OFFSET, self.committed)
        d.register(RC.GET_BROKER_RUNTIME_INFO, lambda cmd, conn: cmd.response(
            body=fastjson.dumpb({"table": {"brokerVersionDesc": "V4_9_8",
                                           "brokerVersion": "413"}})))
        self.resets = 0
        self.server = RemotingServer(d, "127.0.0.1", 0)
        self.client = RemotingClient()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def reset(self, cmd: RemotingCommand, conn) -> RemotingCommand:
        self.resets += 1
        if cmd.field("group") == "Gone":
            return cmd.response(ResponseCode.CONSUMER_NOT_ONLINE, "Consumer not online, so can "
                                "not reset offset, Group: Gone Topic: JavaT Timestamp: 0")
        table = {ObjectKey.of({"brokerName": "java-a", "queueId": q, "topic": "JavaT"}): self.MIN
                 for q in range(2)}
        return cmd.response(body=fastjson.dumpb({"offsetTable": table}))

    def connections(self, cmd: RemotingCommand, conn) -> RemotingCommand:
        if cmd.field("consumerGroup") != "Mixed":
            return cmd.response(ResponseCode.CONSUMER_NOT_ONLINE, "not online")
        return cmd.response(body=fastjson.dumpb({"connectionSet": [
            {"clientAddr": "10.0.0.1:1", "clientId": "java@1", "language": "JAVA",
             "version": 409},
            {"clientAddr": "10.0.0.2:1", "clientId": "cpp@2", "language": "CPP",
             "version": 409}]}))

    def committed(self, cmd: RemotingCommand, conn) -> RemotingCommand:
        """Queue 0 was committed at 4; queue 1 never, and its first message is gone."""
        if cmd.field("queueId") == "0":
            return cmd.response(fields={"offset": 4})
        return cmd.response(ResponseCode.QUERY_NOT_FOUND, "Not found, V3_0_6_SNAPSHOT maybe "
                            "this group consumer boot first")

    def update(self, cmd: RemotingCommand, conn) -> RemotingCommand:
        self.updates.append({k: cmd.field(k) for k in ("consumerGroup", "topic", "queueId",
                                                        "commitOffset")})
        return cmd.response()

    def __enter__(self) -> JavaBroker:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self

    def register(self, ns: str) -> None:
        body = fastjson.dumpb({"filterServerList": [], "topicConfigSerializeWrapper": {
            "dataVersion": {"counter": 1, "timestamp": 1}, "topicConfigTable": {
                "JavaT": {"topicName": "JavaT", "perm": 6, "readQueueNums": 2,
                          "writeQueueNums": 2}}}})

        async def register() -> int:  # on a connection kept open: its close unregisters
            resp = await self.client.invoke(ns, RemotingCommand.request(RC.REGISTER_BROKER, {
                "brokerAddr": self.addr, "brokerName": "java-a", "clusterName": "JavaC",
                "brokerId": 0, "haServerAddr": "127.0.0.1:1"}, body))
            return resp.code
        assert asyncio.run_coroutine_threadsafe(register(), self.loop).result(10) == 0

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.client.close(), self.loop).result(10)
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_consumer_not_online_falls_back_to_setting_each_queue_as_mqadmin(namesrv):
    with JavaBroker() as java:
        java.register(namesrv.namesrv)
        ns = namesrv.namesrv
        out = rmqctl(ns, "-o", "json", "offset", "reset", "-g", "Gone", "-t", "JavaT",
                     "--to-offset", "9", "--yes")
        rows = js(out)
        assert [(r["brokerName"], r["queueId"], r["after"], r["clamped"], r["via"])
                for r in rows] == [("java-a", 0, 7, "to max", "UPDATE_CONSUMER_OFFSET"),
                                   ("java-a", 1, 7, "to max", "UPDATE_CONSUMER_OFFSET")]
        assert [(r["before"], r["lagBefore"], r["lagChange"]) for r in rows] == [
            (4, 3, -3), (None, None, None)]  # queue 1 was never committed
        assert "CONSUMER_NOT_ONLINE" in out.stderr and "as mqadmin does" in out.stderr
        assert java.updates == [{"consumerGroup": "Gone", "topic": "JavaT", "queueId": str(q),
                                 "commitOffset": "7"} for q in range(2)]
        java.updates.clear()
        rows = js(rmqctl(ns, "-o", "json", "offset", "reset", "-g", "Gone", "-t", "JavaT",
                         "--to-timestamp", "1700000000000", "--queue", "1", "--yes"))
        assert [(r["queueId"], r["after"]) for r in rows] == [(1, JavaBroker.BY_TIME)]
        assert [u["commitOffset"] for u in java.updates] == [str(JavaBroker.BY_TIME)]

        # A Java broker tells every member, in the map form a C++ client cannot read.
        mixed = rmqctl(ns, "-o", "json", "offset", "reset", "-g", "Mixed", "-t", "JavaT",
                       "--earliest", "--yes")
        assert [r["via"] for r in js(mixed)] == ["reset", "reset"]
        told = [line for line in mixed.stderr.splitlines() if "told:" in line]
        may_not = [line for line in mixed.stderr.splitlines() if "may not apply it" in line]
        assert len(told) == 1 and "java@1" in told[0] and "cpp@2" not in told[0]
        assert len(may_not) == 1 and "cpp@2 (CPP" in may_not[0]

        # With members online, a 4.9.8 broker would reset every queue by time, ignoring the
        # queue and offset: refused before anything is sent, the reason in one line.
        java.resets = 0
        for per_queue in (["--to-offset", "3"], ["--earliest", "--queue", "1"]):
            refused = rmqctl(ns, "offset", "reset", "-g", "Mixed", "-t", "JavaT", *per_queue,
                             "--yes")
            assert refused.returncode == 1 and java.resets == 0, refused.stderr
            [line] = refused.stderr.splitlines()
            assert "runs RocketMQ V4_9_8, which resets every queue by time" in line

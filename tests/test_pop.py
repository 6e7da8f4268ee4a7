"""POP consumption against a real node: pop, ack, invisible time, revive through the POP
retry topic, change of invisible time, restarts (clean and kill -9), long polling, DLQ, and
the errors Java answers. The client is rmqctl's PopConsumer over real sockets."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

from remoting import call, send
from rmqnode.message import POP_CK
from rmqnode.net import fastjson
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode, ResponseCode
from rmqnode.net.client import RemotingClient
from rmqnode.net.popinfo import ExtraInfo
from rmqctl.client.namesrv import NameServerClient
from rmqctl.client.pop import PopConsumer, Popped

FAST = ("-D", "reviveInterval=200")


def start(start_node, home=None):
    return start_node("--namesrv-port", "0", "--listen-port", "0", *FAST, home=home)


async def _with_consumer(ns: str, group: str, action):
    client = RemotingClient()
    try:
        return await action(PopConsumer(client, NameServerClient(client, ns), group))
    finally:
        await client.close()


def pop(ns: str, group: str, topic: str, **kw) -> list[Popped]:
    return asyncio.run(_with_consumer(ns, group, lambda c: c.pop(topic, **kw)))


def pop_all(ns: str, group: str, topic: str, want: int, **kw) -> list[Popped]:
    """Pop until `want` messages came (POP picks queues itself), failing after 10 s."""
    got: list[Popped] = []
    deadline = time.monotonic() + 10
    while len(got) < want and time.monotonic() < deadline:
        got += pop(ns, group, topic, **kw)
    return got


def ack(ns: str, group: str, popped: list[Popped]) -> None:
    async def run(c: PopConsumer) -> None:
        for p in popped:
            await c.ack(p)
    asyncio.run(_with_consumer(ns, group, run))


def bodies(popped: list[Popped]) -> list[str]:
    return sorted(p.message.body.decode() for p in popped)


def send_n(node, topic: str, n: int, prefix: str = "m") -> list[str]:
    """Send n bodies over the topic's queues; return once the name server routes the topic
    (the first send creates it, and the broker registers it in the background)."""
    sent = [f"{prefix}{i}" for i in range(n)]
    for i, body in enumerate(sent):
        send(node.broker, topic, body.encode(), queue_id=i % 4)
    deadline = time.monotonic() + 10
    while call(node.namesrv, RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic}).code != 0:
        assert time.monotonic() < deadline, f"{topic} was never routed"
        time.sleep(0.05)
    return sorted(sent)


def test_pop_ack_then_nothing_comes_back_even_after_restart(start_node, tmp_path):
    node = start(start_node, home=tmp_path)
    sent = send_n(node, "PopT", 40)
    got = pop_all(node.namesrv, "PG", "PopT", 40, invisible_ms=1500)
    assert bodies(got) == sent, "each message popped once"
    assert all(p.message.topic == "PopT" and p.message.reconsume_times == 0 for p in got)
    ack(node.namesrv, "PG", got)
    assert pop(node.namesrv, "PG", "PopT") == []
    node.stop()
    node = start(start_node, home=tmp_path)
    time.sleep(2.0)  # past the invisible time: nothing acked may come back
    assert pop(node.namesrv, "PG", "PopT", poll_ms=500) == []


def test_unacked_messages_are_revived_once_through_the_retry_topic(start_node):
    node = start(start_node)
    sent = send_n(node, "PopR", 6)
    got = pop_all(node.namesrv, "PG", "PopR", 6, invisible_ms=1000)
    keep, drop = got[:4], got[4:]
    ack(node.namesrv, "PG", keep)
    revived = pop_all(node.namesrv, "PG", "PopR", 2, poll_ms=3000, invisible_ms=1000)
    assert bodies(revived) == bodies(drop)
    for p in revived:
        assert p.message.topic == "PopR", "delivered under the original topic"
        assert p.message.reconsume_times == 1
        assert ExtraInfo.parse(p.message.properties[POP_CK]).retry == "1"
        assert "1ST_POP_TIME" in p.message.properties
    ack(node.namesrv, "PG", revived)  # the ack names the retry topic
    time.sleep(1.6)
    assert pop(node.namesrv, "PG", "PopR", poll_ms=300) == []
    assert set(bodies(keep + revived)) == set(sent)


def test_checkpoints_survive_kill_9(start_node, tmp_path):
    node = start(start_node, home=tmp_path)
    sent = send_n(node, "PopK", 8)
    got = pop_all(node.namesrv, "PG", "PopK", 8, invisible_ms=2500)
    ack(node.namesrv, "PG", got[:5])
    node.stop(signal.SIGKILL)
    node = start(start_node, home=tmp_path)
    # Acked messages never come back, unacked ones come back once; offsets committed only
    # in memory before the kill are restored from the checkpoints.
    back = pop_all(node.namesrv, "PG", "PopK", 3, poll_ms=3000, invisible_ms=60_000)
    assert bodies(back) == bodies(got[5:])
    assert pop(node.namesrv, "PG", "PopK", poll_ms=1500) == []
    assert sorted(bodies(got[:5]) + bodies(back)) == sent


def test_change_invisible_time_postpones_revival(start_node):
    node = start(start_node)
    send_n(node, "PopC", 1)
    [p] = pop_all(node.namesrv, "PG", "PopC", 1, invisible_ms=800)

    async def extend(c: PopConsumer) -> Popped:
        return await c.change_invisible_time(p, 4000)

    later = asyncio.run(_with_consumer(node.namesrv, "PG", extend))
    assert later.info.invisible_time == 4000 and later.info.ck_queue_offset == 0
    time.sleep(1.5)
    assert pop(node.namesrv, "PG", "PopC", poll_ms=200) == [], "hidden for longer now"
    ack(node.namesrv, "PG", [later])
    time.sleep(3.5)
    assert pop(node.namesrv, "PG", "PopC", poll_ms=300) == [], "acked with the new handle"


def test_long_polling_pop_is_woken_by_a_send(start_node):
    node = start(start_node)
    send_n(node, "PopL", 1)
    ack(node.namesrv, "PG", pop_all(node.namesrv, "PG", "PopL", 1))

    async def wait_and_pop(c: PopConsumer) -> tuple[list[Popped], float]:
        began = time.monotonic()
        task = asyncio.create_task(c.pop("PopL", poll_ms=20_000))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(send, node.broker, "PopL", b"late", 2)
        return await task, time.monotonic() - began

    got, took = asyncio.run(_with_consumer(node.namesrv, "PG", wait_and_pop))
    assert bodies(got) == ["late"]
    assert took < 15, "the held pop was answered by the arrival, not its poll time"


def test_pop_and_pull_groups_each_see_everything(start_node):
    node = start(start_node)
    sent = send_n(node, "PopP", 20)
    assert bodies(pop_all(node.namesrv, "PopGroup", "PopP", 20)) == sent
    out = subprocess.run([sys.executable, "-m", "rmqctl.cli", "-n", node.namesrv, "consume",
                          "PopP", "-g", "PullGroup", "--from", "first", "-e", "--format", "%b"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.split()) == sent


def test_messages_retried_past_retry_max_times_go_to_the_dlq(start_node):
    node = start(start_node)
    body = fastjson.dumpb({"groupName": "PD", "retryMaxTimes": 1})
    assert call(node.broker, RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, body=body).code == 0
    send_n(node, "PopD", 1)
    pop_all(node.namesrv, "PD", "PopD", 1, invisible_ms=300)
    [again] = pop_all(node.namesrv, "PD", "PopD", 1, poll_ms=2000, invisible_ms=300)
    assert again.message.reconsume_times == 1
    time.sleep(1.0)
    assert pop(node.namesrv, "PD", "PopD", poll_ms=500) == []
    resp = call(node.broker, RequestCode.GET_MAX_OFFSET, {"topic": "%DLQ%PD", "queueId": 0})
    assert resp.code == 0 and resp.field("offset") == "1"


def pop_request(broker: str, **fields) -> RemotingCommand:
    base = {"consumerGroup": "PE", "topic": "PopE", "queueId": -1, "maxMsgNums": 4,
            "invisibleTime": 1000, "pollTime": 0, "bornTime": int(time.time() * 1000),
            "initMode": 0}
    return call(broker, RequestCode.POP_MESSAGE, base | fields)


def test_pop_errors_answer_javas_codes(start_node):
    node = start(start_node)
    send_n(node, "PopE", 1)
    assert pop_request(node.broker, maxMsgNums=33).code == ResponseCode.INVALID_PARAMETER
    assert pop_request(node.broker, topic="NoSuch").code == ResponseCode.TOPIC_NOT_EXIST
    assert pop_request(node.broker, queueId=9).code == ResponseCode.INVALID_PARAMETER
    ok = pop_request(node.broker)
    assert ok.code == ResponseCode.SUCCESS and ok.remark == "FOUND"
    empty = pop_request(node.broker)
    assert empty.code == ResponseCode.POLLING_TIMEOUT
    assert empty.field("restNum") == "0" and empty.field("reviveQid") is not None
    ack_fields = {"consumerGroup": "PE", "topic": "PopE", "queueId": 0,
                  "extraInfo": "0 1 1000 0 0 broker-a 0 0", "offset": 0}
    assert call(node.broker, RequestCode.ACK_MESSAGE, ack_fields).code == 0
    bad_offset = call(node.broker, RequestCode.ACK_MESSAGE, ack_fields | {"offset": 7})
    assert bad_offset.code == ResponseCode.NO_MESSAGE and "offset is illegal" in bad_offset.remark
    bad_info = call(node.broker, RequestCode.ACK_MESSAGE, ack_fields | {"extraInfo": "x"})
    assert bad_info.code == ResponseCode.INVALID_PARAMETER
    assert call(node.broker, RequestCode.ACK_MESSAGE,
                ack_fields | {"queueId": 9}).code == ResponseCode.MESSAGE_ILLEGAL
    still_up = pop_request(node.broker, pollTime=10)
    assert still_up.code == ResponseCode.POLLING_TIMEOUT


def test_pop_response_headers_describe_the_messages(start_node):
    node = start(start_node)
    send(node.broker, "PopH", b"a", queue_id=1)
    send(node.broker, "PopH", b"b", queue_id=1)
    resp = pop_request(node.broker, topic="PopH", queueId=1)
    assert resp.code == 0
    assert resp.field("startOffsetInfo") == "0 1 0"
    assert resp.field("msgOffsetInfo") == "0 1 0,1"
    assert resp.field("invisibleTime") == "1000" and resp.field("restNum") == "0"


def test_a_message_nacked_right_after_a_change_comes_back(start_node):
    """Two changes of one message in a row, the second a nack (invisible time 0), as fast
    as one connection makes them: the second's checkpoint must not be taken for the first's
    (same message, same millisecond, hence the same key), or the ack of the first cancels
    it and the message never comes back."""
    node = start(start_node)
    sent = send_n(node, "PopN", 12)

    async def nack_twice(c: PopConsumer) -> list[int]:
        times = []
        for p in popped:
            later = await c.change_invisible_time(p, 60_000)
            again = await c.change_invisible_time(later, 0)
            times.append(again.info.pop_time - later.info.pop_time)
        return times

    popped = pop_all(node.namesrv, "PN", "PopN", 12, invisible_ms=60_000)
    assert bodies(popped) == sent
    gaps = asyncio.run(_with_consumer(node.namesrv, "PN", nack_twice))
    assert all(gap >= 1 for gap in gaps), gaps  # no two checkpoints share a key
    back = pop_all(node.namesrv, "PN", "PopN", 12, invisible_ms=60_000)
    assert bodies(back) == sent
    assert all(p.message.reconsume_times == 1 for p in back)

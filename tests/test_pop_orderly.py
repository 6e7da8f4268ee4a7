"""Orderly POP (order=true) against a real node over remoting: a queue whose batch is in flight
hands out nothing more, acks move the offset along the batch, what was not acked comes back
from the same offsets with its reconsume times raised, change of invisible time and attempt
ids as Java's broker treats them, and the order info across restarts (consumerOrderInfo.json).
The requests are raw POP_MESSAGE / ACK_MESSAGE / CHANGE_MESSAGE_INVISIBLETIME, as Java's
orderly POP consumer sends them."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, replace

import pytest

from remoting import call, send
from rmqctl.client.consumer import parse_messages
from rmqnode.atomicfile import BrokenFileError
from rmqnode.broker.groups import SubscriptionGroupManager
from rmqnode.broker.order_info import ConsumerOrderInfoManager
from rmqnode.broker.topics import TopicConfigManager
from rmqnode.config import BrokerConfig
from rmqnode.message import MessageExt
from rmqnode.net import fastjson
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode, ResponseCode
from rmqnode.net.popinfo import ExtraInfo, parse_offset_info


def start(start_node, home=None):
    return start_node("--namesrv-port", "0", "--listen-port", "0", home=home)


@dataclass
class Popped:
    message: MessageExt
    info: ExtraInfo


@dataclass
class OrderPop:
    """One orderly POP_MESSAGE's answer: its messages with their extra info, and headers."""
    resp: RemotingCommand
    messages: list[Popped]

    @property
    def bodies(self) -> list[str]:
        return [p.message.body.decode() for p in self.messages]

    @property
    def offsets(self) -> list[int]:
        return [p.message.queue_offset for p in self.messages]


def pop(broker: str, topic: str, group: str = "OG", invisible_ms: int = 60_000,
        poll_ms: int = 0, **fields: object) -> OrderPop:
    resp = call(broker, RequestCode.POP_MESSAGE, {
        "consumerGroup": group, "topic": topic, "queueId": -1, "maxMsgNums": 32,
        "invisibleTime": invisible_ms, "pollTime": poll_ms, "bornTime": int(time.time() * 1000),
        "initMode": 0, "order": "true", **fields}, timeout=5 + poll_ms / 1000)
    assert resp.code in (ResponseCode.SUCCESS, ResponseCode.POLLING_TIMEOUT), resp.remark
    starts = parse_offset_info(resp.field("startOffsetInfo"))
    popped = [Popped(m, ExtraInfo(int(starts[f"0@{m.queue_id}"]), resp.int_field("popTime"),
                                  resp.int_field("invisibleTime"), resp.int_field("reviveQid"),
                                  "0", "broker-a", m.queue_id, m.queue_offset))
              for m in parse_messages(resp.body)]
    return OrderPop(resp, popped)


def _fields(p: Popped, group: str) -> dict[str, object]:
    return {"consumerGroup": group, "topic": p.message.topic, "queueId": p.info.queue_id,
            "offset": p.info.queue_offset, "extraInfo": str(p.info)}


def ack(broker: str, *popped: Popped, group: str = "OG") -> None:
    for p in popped:
        resp = call(broker, RequestCode.ACK_MESSAGE, _fields(p, group))
        assert resp.code == 0, resp.remark


def committed(broker: str, topic: str, queue_id: int = 0, group: str = "OG") -> int:
    resp = call(broker, RequestCode.QUERY_CONSUMER_OFFSET,
                {"consumerGroup": group, "topic": topic, "queueId": queue_id})
    return resp.int_field("offset") if resp.code == 0 else -1


def send_to(broker: str, topic: str, bodies: str, queue_id: int = 0) -> None:
    for body in bodies.split():
        send(broker, topic, body.encode(), queue_id=queue_id)


def test_a_queue_in_flight_blocks_until_its_whole_batch_is_acked(start_node):
    node = start(start_node)
    send_to(node.broker, "OrdB", "a b c")
    first = pop(node.broker, "OrdB")
    assert first.bodies == ["a", "b", "c"] and first.offsets == [0, 1, 2]
    assert first.resp.field("reviveQid") == "999"
    assert all(str(p.info).split(" ")[3] == "999" for p in first.messages)
    assert first.resp.field("orderCountInfo") == "0 0 0"
    assert committed(node.broker, "OrdB") == 0, "an orderly pop moves no offset"
    send_to(node.broker, "OrdB", "d")
    send_to(node.broker, "OrdB", "other", queue_id=1)
    assert pop(node.broker, "OrdB").bodies == ["other"], "only queue 0 is blocked"
    a, b, c = first.messages
    ack(node.broker, b)
    assert committed(node.broker, "OrdB") == 0, "acks move the offset from the batch's start"
    ack(node.broker, a)
    assert committed(node.broker, "OrdB") == 2
    assert pop(node.broker, "OrdB").bodies == [], "c is still in flight"
    ack(node.broker, c)
    assert committed(node.broker, "OrdB") == 3
    assert pop(node.broker, "OrdB").bodies == ["d"]
    ack(node.broker, a)  # below the committed offset: taken, nothing changes
    assert committed(node.broker, "OrdB") == 3


def test_unacked_messages_come_back_from_the_same_offsets_with_attempt_raised(start_node):
    node = start(start_node)
    send_to(node.broker, "OrdR", "a b c")
    first = pop(node.broker, "OrdR", invisible_ms=1500)
    ack(node.broker, first.messages[0])
    t0 = time.monotonic()
    # A held pop is answered when the batch becomes visible again, not at its poll time.
    again = pop(node.broker, "OrdR", invisible_ms=1500, poll_ms=10_000)
    assert 0.8 < time.monotonic() - t0 < 5
    assert again.bodies == ["b", "c"] and again.offsets == [1, 2]
    assert [p.message.reconsume_times for p in again.messages] == [1, 1]
    assert again.resp.field("orderCountInfo") == "0 qo0%1 1;0 qo0%2 1;0 0 1"
    ack(node.broker, again.messages[0])
    third = pop(node.broker, "OrdR", invisible_ms=1500, poll_ms=10_000)
    assert third.bodies == ["c"] and third.messages[0].message.reconsume_times == 2
    ack(node.broker, third.messages[0])
    assert committed(node.broker, "OrdR") == 3
    assert pop(node.broker, "OrdR", poll_ms=2500).bodies == []


def test_change_of_invisible_time_and_acks_that_do_not_fit_the_batch(start_node):
    node = start(start_node)
    send_to(node.broker, "OrdC", "a b")
    a, b = pop(node.broker, "OrdC", invisible_ms=1000).messages
    resp = call(node.broker, RequestCode.CHANGE_MESSAGE_INVISIBLETIME,
                _fields(b, "OG") | {"invisibleTime": 4000})
    assert resp.code == 0 and resp.field("reviveQid") == "999"
    assert resp.int_field("popTime") == b.info.pop_time, "the new handle acks the same batch"
    assert resp.int_field("invisibleTime") >= 4000
    ack(node.broker, a)
    time.sleep(1.5)
    assert pop(node.broker, "OrdC").bodies == [], "b is hidden for longer now"
    # The handle of an older pop of the queue (another popTime) is taken and acks nothing.
    ack(node.broker, Popped(b.message, replace(b.info, pop_time=b.info.pop_time - 1)))
    assert committed(node.broker, "OrdC") == 1
    ack(node.broker, b)
    assert committed(node.broker, "OrdC") == 2
    send_to(node.broker, "OrdC", "c d")
    (c,) = pop(node.broker, "OrdC", maxMsgNums=1).messages
    # An offset that is not in the queue's batch is refused, as Java refuses it.
    d = Popped(c.message, replace(c.info, queue_offset=3))
    resp = call(node.broker, RequestCode.ACK_MESSAGE, _fields(d, "OG") | {"offset": 3})
    assert resp.code == ResponseCode.MESSAGE_ILLEGAL and "offset is illegal" in resp.remark
    ack(node.broker, c)
    assert pop(node.broker, "OrdC").bodies == ["d"]


def test_a_retried_pop_with_the_batch_attempt_id_gets_the_batch_again(start_node):
    """A push consumer re-sends a receive whose answer it lost with the same attempt id: it
    gets the batch in flight, not counted as a new delivery; any other pop is blocked."""
    node = start(start_node)
    send_to(node.broker, "OrdA", "a b")
    first = pop(node.broker, "OrdA", attemptId="attempt-1")
    again = pop(node.broker, "OrdA", attemptId="attempt-1")
    assert again.bodies == first.bodies == ["a", "b"]
    assert [p.message.reconsume_times for p in again.messages] == [0, 0]
    assert pop(node.broker, "OrdA", attemptId="attempt-2").bodies == []
    assert pop(node.broker, "OrdA").bodies == []
    ack(node.broker, *again.messages)
    assert committed(node.broker, "OrdA") == 2


def order_file(home) -> dict:
    return fastjson.loads((home / "store" / "config" / "consumerOrderInfo.json").read_bytes())


def test_order_info_survives_a_restart(start_node, tmp_path):
    node = start(start_node, home=tmp_path)
    send_to(node.broker, "OrdS", "a b c")
    a, b, c = pop(node.broker, "OrdS", invisible_ms=8000).messages
    ack(node.broker, a)
    node.stop()
    info = order_file(tmp_path)["table"]["OrdS@OG"]["0"]
    assert info["o"] == [0, 1, 2] and info["cm"] == 1 and info["i"] == 8000
    popped_at = time.time()
    node = start(start_node, home=tmp_path)
    assert pop(node.broker, "OrdS").bodies == [], "still in flight after the restart"
    ack(node.broker, b)  # the handle from before the restart still acks
    assert committed(node.broker, "OrdS") == 2
    back = pop(node.broker, "OrdS", poll_ms=15_000)
    assert time.time() - popped_at > 8000 / 1000 - 3, "not before its invisible time"
    assert back.bodies == ["c"] and back.messages[0].message.reconsume_times == 1
    ack(node.broker, *back.messages)
    assert committed(node.broker, "OrdS") == 3


def test_messages_in_flight_at_a_kill_are_never_lost(start_node, tmp_path):
    node = start(start_node, home=tmp_path)
    send_to(node.broker, "OrdK", "a b c d")
    a, b, c, d = pop(node.broker, "OrdK", invisible_ms=2000).messages
    ack(node.broker, a, b)
    time.sleep(6)  # the offsets and the order info are persisted every 5 s
    node.stop(signal.SIGKILL)
    node = start(start_node, home=tmp_path)
    back = pop(node.broker, "OrdK", poll_ms=10_000)
    assert back.bodies == ["c", "d"] and back.offsets == [2, 3]
    assert all(p.message.reconsume_times == 1 for p in back.messages)


def test_a_broken_order_info_file_is_refused_whole_and_bad_entries_skipped(tmp_path):
    config = BrokerConfig(storePathRootDir=str(tmp_path))
    path = tmp_path / "config" / "consumerOrderInfo.json"
    path.parent.mkdir()

    def load() -> ConsumerOrderInfoManager:
        manager = ConsumerOrderInfoManager(config, TopicConfigManager(config),
                                           SubscriptionGroupManager(config))
        manager.load()
        return manager

    path.write_text('{"table": [1]}')
    with pytest.raises(BrokenFileError, match="wrong shape"):
        load()
    good = {"popTime": 5, "i": 1000, "o": [7, 2], "cm": 1, "l": 5, "oc": {7: 1}}
    path.write_bytes(fastjson.dumpb({"table": {
        "T@G": {0: good}, "bad name@G": {0: good}, "T@G2": {0: {"o": [1]}},
        "T@G3": {"x": good}, "T@G4": [1]}}))
    table = load().table
    assert list(table) == ["T@G"]
    info = table["T@G"][0]
    assert info.offsets == [7, 9] and info.consumed == {7: 1} and info.next_offset() == 9


def test_an_offset_reset_clears_the_queue_in_flight(start_node):
    """resetPopOffset clears the block: after a reset the next pop starts at the new offset at
    once, and a late ack of the old batch does not move the offset back."""
    node = start(start_node)
    send_to(node.broker, "OrdR", "a b c d")
    first = pop(node.broker, "OrdR")
    assert first.bodies == ["a", "b", "c", "d"]
    assert pop(node.broker, "OrdR").bodies == [], "blocked while the batch is in flight"
    resp = call(node.broker, RequestCode.INVOKE_BROKER_TO_RESET_OFFSET, {
        "topic": "OrdR", "group": "OG", "timestamp": 0, "isForce": True, "queueId": 0,
        "offset": 2})
    assert resp.code == 0, resp.remark
    assert pop(node.broker, "OrdR").bodies == ["c", "d"]
    ack(node.broker, first.messages[0])  # the old batch's handle: changes nothing
    assert committed(node.broker, "OrdR") == 2

"""The official RocketMQ 5.x Python client against rmqnode's gRPC endpoint when things go wrong:
a 4 MiB body both ways, a client killed mid-stream, a slow or killed push listener, and a node
restarted under a consumer (nothing lost, no ack repeated)."""

from __future__ import annotations

import time

from grpc5 import create_topics, events_of, free_port, grpc_node, kind, one, run5, script
from peers import start_peer


# -- a 4 MiB body ------------------------------------------------------------------------------

def test_a_4_mib_body_goes_through_both_ways(start_node):
    node = grpc_node(start_node)
    create_topics(node, T="NORMAL")
    events = run5(node, """
import hashlib
body = bytes(range(256)) * (4 * 1024 * 4)
assert len(body) == 4 << 20
p = producer("T")
r = p.send(message("T", body, tag="Big"))
out("sent", id=r.message_id, md5=hashlib.md5(body).hexdigest())
c = simple("GBIG", "T", wait=3)
[m] = receive_until(c, lambda g: g, seconds=20)
out("big", id=m.message_id, size=len(m.body), md5=hashlib.md5(m.body).hexdigest(), corrupted=m.corrupted)
c.ack(m)
finish(c, p)
""", timeout=90)
    sent, big = one(events, "sent"), one(events, "big")
    assert big["id"] == sent["id"] and big["size"] == 4 << 20
    assert big["md5"] == sent["md5"] and not big["corrupted"]


# -- a client killed mid-stream, a node restarted under a consumer -----------------------------

def test_a_client_killed_mid_stream_leaves_the_node_serving(start_node):
    node = grpc_node(start_node)
    create_topics(node, T="NORMAL")
    with start_peer("grpc5", script("""
p = producer("T")
r = p.send(message("T", "held", tag="K"))
out("sent", id=r.message_id)
c = simple("GK", "T", wait=10)
[m] = receive_until(c, lambda g: g, seconds=15, invisible=10)
out("polling")
while True:
    c.receive(16, 10)  # killed in here, mid long poll
"""), args=[node.addrs["grpc"]]) as peer:
        peer.wait_line(r'"kind": "polling"', timeout=30)
        time.sleep(1.5)
        peer.kill()
        first = events_of(peer.finish(timeout=5))
    msg_id = one(first, "sent")["id"]
    assert node.proc.poll() is None, "the node survived"
    events = run5(node, """
p = producer("T")
r = p.send(message("T", "after", tag="K"))
out("sent", id=r.message_id)
c = simple("GK", "T", wait=3)
receive_until(c, lambda g: len(g) >= 2, seconds=30, invisible=10)
finish(c, p)
""", timeout=90)
    got = {e["body"]: e for e in kind(events, "received")}
    assert set(got) == {"held", "after"}
    assert got["held"]["id"] == msg_id and got["held"]["attempt"] == 2, \
        "the dead client's message comes back after its invisible time"
    assert got["after"]["attempt"] == 1


def test_a_slow_push_listener_keeps_its_message_past_the_default_invisible_time(start_node):
    """A push consumer's receive carries auto_renew and no invisible time: the server keeps the
    message invisible while the listener works (spec §4.6 auto-renew), here 70 s, past the 60 s
    default, so it is neither delivered twice nor is the late ack refused."""
    node = grpc_node(start_node)
    create_topics(node, T="NORMAL")
    events = run5(node, """
calls = []
class Slow(MessageListener):
    def consume(self, m):
        calls.append(m.message_id)
        out("consuming", **view(m))
        if len(calls) == 1:
            time.sleep(70)
        out("consumed", id=m.message_id)
        return ConsumeResult.SUCCESS
c = PushConsumer(cfg(), "GSLOW", Slow(), {"T": FilterExpression()})
c.startup()
p = producer("T")
out("sent", id=p.send(message("T", "slow")).message_id)
time.sleep(80)
out("calls", n=len(calls))
finish(p, c)
""", timeout=150)
    consuming = kind(events, "consuming")
    assert [e["attempt"] for e in consuming] == [1], \
        f"one delivery while the listener works: {consuming}"


def test_a_push_consumer_killed_while_consuming_hands_its_message_on(start_node):
    """A push consumer holds an auto-renewed message (no invisible time of its own) and is
    killed: the message reaches the next member of the group, with delivery attempt 2."""
    node = grpc_node(start_node)
    create_topics(node, T="NORMAL")
    with start_peer("grpc5", script("""
class Stuck(MessageListener):
    def consume(self, m):
        out("holding", **view(m))
        time.sleep(3600)
c = PushConsumer(cfg(), "GKP", Stuck(), {"T": FilterExpression()})
c.startup()
p = producer("T")
r = p.send(message("T", "handed-on"))
out("sent", id=r.message_id)
time.sleep(3600)
"""), args=[node.addrs["grpc"]]) as first:
        first.wait_line(r'"kind": "holding"', timeout=30)
        first.kill()
        held = events_of(first.finish(timeout=5))
    killed = time.monotonic()
    msg_id = one(held, "sent")["id"]
    events = run5(node, """
got = []
class Listener(MessageListener):
    def consume(self, m):
        got.append(m)
        out("received", **view(m))
        return ConsumeResult.SUCCESS
c = PushConsumer(cfg(), "GKP", Listener(), {"T": FilterExpression()})
c.startup()
end = time.time() + 100
while not got and time.time() < end:
    time.sleep(0.1)
finish(c)
""", timeout=150)
    took = time.monotonic() - killed
    [again] = kind(events, "received")
    assert again["id"] == msg_id and again["attempt"] == 2, again
    assert took < 30, f"handed on {took:.1f}s after the kill: a client without a channel has " \
                      "its auto-renewed handles released (1 s), not left to the 60 s default " \
                      "invisible time (spec §4.6 auto-renew, §4.11)"


def test_node_restart_under_a_5x_consumer_loses_nothing_and_repeats_no_ack(start_node, tmp_path):
    port = free_port()
    home = tmp_path / "home"
    home.mkdir()
    node = grpc_node(start_node, grpc_port=port, home=home)
    create_topics(node, T="NORMAL")
    with start_peer("grpc5", script("""
p = producer("T")
ids = [p.send(message("T", f"r-{i}", props={"idx": str(i)})).message_id for i in range(10)]
out("sent", ids=ids)
c = simple("GR", "T", wait=3)
got = receive_until(c, lambda g: len(g) >= 10, seconds=20, invisible=10)
for m in got:
    if int(m.properties["idx"]) < 5:
        c.ack(m)
out("acked_half", ids=sorted(m.message_id for m in got if int(m.properties["idx"]) < 5))
wait_file("restarted", 60)
out("resumed")
end = time.time() + 40
while time.time() < end and not os.path.exists("stop"):
    try:
        for m in c.receive(16, 30):
            out("received", **view(m))
            c.ack(m)
    except Exception as e:
        out("receive_error", **error(e))
        time.sleep(0.5)
finish(c, p)
"""), args=[f"127.0.0.1:{port}"]) as peer:
        peer.wait_line(r'"kind": "acked_half"', timeout=40)
        assert node.stop() == 0
        node = grpc_node(start_node, grpc_port=port, home=home)
        (peer.home / "restarted").touch()
        peer.wait_line(r'"kind": "resumed"', timeout=10)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and \
                peer.stdout.split('"kind": "resumed"')[1].count('"kind": "received"') < 5:
            time.sleep(0.2)
        time.sleep(3)
        (peer.home / "stop").touch()
        run = peer.finish(timeout=30)
    assert run.returncode == 0, run.explain()
    events = events_of(run)
    before = kind(events[:events.index(one(events, "resumed"))], "received")
    assert sorted(int(e["props"]["idx"]) for e in before) == list(range(10))
    received = kind(events[events.index(one(events, "resumed")):], "received")
    idx = sorted(int(e["props"]["idx"]) for e in received)
    assert idx == [5, 6, 7, 8, 9], \
        f"after the restart: every unacked message once, no acked one ({idx})"
    assert all(e["attempt"] >= 2 for e in received)

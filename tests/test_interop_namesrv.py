"""A real RocketMQ client (the C++ client 1.x from PyPI) against rmqnode's name server."""

from __future__ import annotations

import time

from peers import run_cpp

SEND_TO_UNKNOWN = """
import sys, time
from rocketmq.client import Producer, Message
p = Producer('PG_INTEROP', timeout=3000)
p.set_namesrv_addr(sys.argv[1] if len(sys.argv) > 1 else '{ns}')
p.start()
m = Message('NoSuchTopic'); m.set_body(b'hi')
t = time.time()
try:
    r = p.send_sync(m)
    print('SENT', r.status, flush=True)
except Exception as e:
    print('ERR', str(e).splitlines()[0][:120], flush=True)
print('SECONDS', round(time.time() - t, 3), flush=True)
p.shutdown()
"""


def test_cpp_client_unknown_topic_fails_at_once_with_no_route(start_node):
    node = start_node("--role", "namesrv", "--listen-port", "0", "-vv", roles=("namesrv",))
    started = time.monotonic()
    run = run_cpp(SEND_TO_UNKNOWN.format(ns=node.namesrv), timeout=30)
    assert run.returncode == 0, run.explain()
    assert time.monotonic() - started < 15, "the client hung"
    [err] = [line for line in run.lines if line.startswith("ERR")]
    assert "No route info of this topic: NoSuchTopic" in err, run.explain()
    [seconds] = [float(line.split()[1]) for line in run.lines if line.startswith("SECONDS")]
    assert seconds < 5
    # It asked our name server for the topic, and then for the auto-create template.
    node.wait_line(r"request .*code=GET_ROUTEINFO_BY_TOPIC .*language=CPP")


def test_cpp_client_follows_our_route_to_the_broker(start_node):
    """With a broker registered, the unknown topic falls back to TBW102's route, and the client
    sends to the broker address in it: the route we wrote (unquoted broker ids for its
    version) parsed in the C++ client."""
    node = start_node("--namesrv-port", "0", "--listen-port", "0", "-vv")
    run = run_cpp(SEND_TO_UNKNOWN.format(ns=node.namesrv), timeout=30)
    assert run.returncode == 0, run.explain()
    node.wait_line(r"request peer=\S+ code=SEND_MESSAGE language=CPP", timeout=10)
    node.wait_line(r"request .*code=GET_ROUTEINFO_BY_TOPIC .*language=CPP")

"""Two brokers in one cluster (two rmqnode processes, one name server), driven by the real
C++ client: routes list both, producers spread over both, a consumer drains both, and a
broker killed with -9 leaves the routes while the other keeps serving."""

from __future__ import annotations

import json
import signal
import time

from peers import run_cpp
from remoting import call
from rmqnode.net import fastjson
from rmqnode.net.codes import RequestCode as RC
from test_interop_cpp import PRELUDE


def route_brokers(ns: str, topic: str) -> dict[str, str]:
    resp = call(ns, RC.GET_ROUTEINFO_BY_TOPIC, {"topic": topic})
    if resp.code != 0:
        return {}
    return {b["brokerName"]: b["brokerAddrs"]["0"] for b in fastjson.loads(resp.body)["brokerDatas"]}


def test_two_brokers_share_a_topic_and_survive_losing_one(start_node):
    ns = start_node("--role", "namesrv", "--listen-port", "0", roles=("namesrv",))
    brokers = {name: start_node("--role", "broker", "--listen-port", "0", "-n", ns.namesrv,
                                "-D", f"brokerName={name}", roles=("broker",))
               for name in ("broker-a", "broker-b")}
    for node in brokers.values():  # as `mqadmin updateTopic -c DefaultCluster` does
        assert call(node.broker, RC.UPDATE_AND_CREATE_TOPIC, {
            "topic": "Spread", "defaultTopic": "TBW102", "readQueueNums": 4,
            "writeQueueNums": 4, "perm": 6, "topicFilterType": "SINGLE_TAG",
            "order": False}).code == 0
    deadline = time.time() + 5
    while set(route_brokers(ns.namesrv, "Spread")) != {"broker-a", "broker-b"}:
        assert time.time() < deadline
        time.sleep(0.05)

    result = run_cpp(PRELUDE.format(ns=ns.namesrv) + """
p = producer("PG_SPREAD")
for i in range(100):
    r = p.send_sync(message("Spread", i, "T"))
    out("sent", id=r.msg_id)
p.shutdown()
c = Collector()
pc = consumer("CG_SPREAD", "Spread", c)
wait_for(lambda: len(c.got) >= 100)
pc.shutdown()
out("got", idx=sorted({g["idx"] for g in c.got}, key=int), n=len(c.got))
""", timeout=90)
    assert result.returncode == 0, result.explain()
    events = [json.loads(line) for line in result.lines if line.startswith("{")]
    [got] = [e for e in events if e["kind"] == "got"]
    assert got["idx"] == [str(i) for i in range(100)] and got["n"] == 100
    per_broker = {name: sum(int(call(node.broker, RC.GET_MAX_OFFSET,
                                     {"topic": "Spread", "queueId": q}).field("offset"))
                            for q in range(4)) for name, node in brokers.items()}
    assert per_broker["broker-a"] > 20 and per_broker["broker-b"] > 20, per_broker
    assert sum(per_broker.values()) == 100

    brokers["broker-b"].stop(signal.SIGKILL)
    deadline = time.time() + 5
    while set(route_brokers(ns.namesrv, "Spread")) != {"broker-a"}:
        assert time.time() < deadline, "the killed broker stayed in the route"
        time.sleep(0.05)
    result = run_cpp(PRELUDE.format(ns=ns.namesrv) + """
p = producer("PG_SPREAD2")
ok = 0
for i in range(100, 130):
    r = p.send_sync(message("Spread", i, "T"))
    ok += int(r.status) == 0
p.shutdown()
out("after", ok=ok)
""", timeout=60)
    assert result.returncode == 0, result.explain()
    assert json.loads(result.lines[-1]) == {"kind": "after", "ok": 30}
    total = sum(int(call(brokers["broker-a"].broker, RC.GET_MAX_OFFSET,
                         {"topic": "Spread", "queueId": q}).field("offset")) for q in range(4))
    assert total == per_broker["broker-a"] + 30

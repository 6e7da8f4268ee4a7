"""Transactions with the C++ client 2.1 (PyPI rocketmq-client-python 2.0.0 + the 2.1 library):
committed messages are delivered, rolled-back ones never, and an unknown outcome is settled
by the broker's check-back (CHECK_TRANSACTION_STATE) to the live producer."""

from __future__ import annotations

from peers import run_cpp21
from remoting import send
from test_rmqctl_messages import rmqctl

PRODUCER = """
import sys, threading, time
from rocketmq.client import TransactionMQProducer, Message, TransactionStatus
lock = threading.Lock()
def say(line):  # callbacks come on client threads: one whole line per write
    with lock:
        sys.stdout.write(line + "\\n")
        sys.stdout.flush()
def checker(msg):
    say("checked " + msg.body.decode())
    return TransactionStatus.COMMIT
def local(msg, arg):
    kind = msg.body.decode().split("-")[0]
    return {"commit": TransactionStatus.COMMIT, "rollback": TransactionStatus.ROLLBACK,
            "unknown": TransactionStatus.UNKNOWN}[kind]
p = TransactionMQProducer("PG_TX", checker)
p.set_name_server_address(sys.argv[1])
p.start()
time.sleep(0.5)
for kind in ("commit", "rollback", "unknown"):
    for i in range(3):
        m = Message("TxTopic")
        m.set_keys(f"{kind}-{i}")
        m.set_body(f"{kind}-{i}".encode())
        r = p.send_message_in_transaction(m, local, None)
        say(f"sent {kind}-{i} {r.status}")
time.sleep(6)  # stay alive for the broker's check-back
p.shutdown()
say("done")
"""


def test_commit_rollback_and_check_back(start_node):
    node = start_node("--namesrv-port", "0", "--listen-port", "0",
                      "-D", "transactionTimeOut=1000", "-D", "transactionCheckInterval=1000")
    send(node.broker, "TxTopic", b"warm-up")  # the topic exists before the producer starts
    run = run_cpp21(PRODUCER, timeout=60, args=[node.namesrv])
    assert run.returncode == 0 and "done" in run.lines, run.explain()
    assert len([line for line in run.lines if line.startswith("sent ")]) == 9
    checked = sorted(line.split()[1] for line in run.lines if line.startswith("checked "))
    assert checked == ["unknown-0", "unknown-1", "unknown-2"], run.explain()
    out = rmqctl(node.namesrv, "consume", "TxTopic", "-g", "TxReader", "--from", "first", "-e",
                 "--format", "%b")
    delivered = sorted(out.stdout.split())
    assert delivered == sorted(["warm-up"] + [f"commit-{i}" for i in range(3)]
                               + [f"unknown-{i}" for i in range(3)])

"""rmqctl send and consume against a real node, in pipes as scripts use them."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest


def rmqctl(ns: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rmqctl.cli", "-n", ns, *args],
                          capture_output=True, text=True, timeout=120, input=input)


@pytest.fixture
def node(start_node):
    return start_node("--namesrv-port", "0", "--listen-port", "0")


def test_seq_5000_round_trip_in_queue_order(node):
    sent = rmqctl(node.namesrv, "-o", "ndjson", "send", "Numbers",
                  input="\n".join(str(i) for i in range(1, 5001)) + "\n")
    assert sent.returncode == 0, sent.stderr
    results = [json.loads(line) for line in sent.stdout.splitlines()]
    assert len(results) == 5000 and all(r["status"] == "SEND_OK" for r in results)
    out = rmqctl(node.namesrv, "consume", "Numbers", "-g", "G", "--from", "first", "-e",
                 "--format", "%b")
    assert out.returncode == 0, out.stderr
    numbers = [int(x) for x in out.stdout.split()]
    assert sorted(numbers) == list(range(1, 5001)), "exactly 1..5000"
    by_queue: dict[int, list[int]] = {}
    for r in results:
        by_queue.setdefault(r["queueId"], []).append(int(r["queueOffset"]))
    # Within each queue, messages come out in queue-offset order (the order they were sent).
    order = {int(n): i for i, n in enumerate(numbers)}
    for q, offsets in by_queue.items():
        sent_in_q = [i + 1 for i, r in enumerate(results) if r["queueId"] == q]
        assert [order[n] for n in sent_in_q] == sorted(order[n] for n in sent_in_q)
    again = rmqctl(node.namesrv, "consume", "Numbers", "-g", "G", "-e", "--format", "%b")
    assert again.returncode == 0 and again.stdout == "", "offsets were committed"


def test_ndjson_consume_and_properties(node):
    sent = rmqctl(node.namesrv, "-o", "json", "send", "Props", "hello \u00e9", "--tags", "TagA",
                  "--keys", "k1 k2", "-p", "origin=cli", "-p", "n=1")
    assert sent.returncode == 0, sent.stderr
    [result] = json.loads(sent.stdout)
    rmqctl(node.namesrv, "send", "Props", "other", "--tags", "TagB")
    out = rmqctl(node.namesrv, "-o", "ndjson", "consume", "Props", "-g", "P", "--from",
                 "first", "-e", "--tags", "TagA")
    [row] = [json.loads(line) for line in out.stdout.splitlines()]
    assert row["body"] == "hello \u00e9" and row["tags"] == "TagA" and row["keys"] == "k1 k2"
    assert row["properties"]["origin"] == "cli" and row["msgId"] == result["msgId"]
    assert row["offsetMsgId"] == result["offsetMsgId"]
    fmt = rmqctl(node.namesrv, "consume", "Props", "-g", "P2", "--from", "first", "-e",
                 "--format", "%t|%q|%o|%T|%k|%p{origin}|%b\\n", "-c", "1", "--tags", "TagA")
    assert fmt.returncode == 0, fmt.stderr
    assert re.fullmatch("Props\\|[0-3]\\|0\\|TagA\\|k1 k2\\|cli\\|hello \u00e9\n", fmt.stdout), fmt.stdout


def test_consume_count_commits_what_it_showed(node):
    """-c N stops within a pulled batch: the next run of the group starts after the N."""
    ns = node.namesrv
    assert rmqctl(ns, "send", "Cnt", "--sharding-key", "k", input="a\nb\nc\nd\n").returncode == 0
    first = rmqctl(ns, "-o", "raw", "consume", "Cnt", "-g", "CntG", "--from", "first", "-c", "2")
    assert first.stdout.split() == ["a", "b"], first.stderr
    rest = rmqctl(ns, "-o", "raw", "consume", "Cnt", "-g", "CntG", "-e")
    assert rest.stdout.split() == ["c", "d"], rest.stderr


def test_batches_whole_input_and_compression(node):
    out = rmqctl(node.namesrv, "-o", "ndjson", "send", "Batched", "--batch", "10",
                 input="".join(f"b{i}\n" for i in range(25)))
    results = [json.loads(line) for line in out.stdout.splitlines()]
    assert out.returncode == 0 and len({r["msgId"] for r in results}) == 25
    for codec in ("zstd", "lz4"):
        sent = rmqctl(node.namesrv, "send", "Batched", "--whole", "--compress", codec,
                      input=f"{codec}1\n{codec}2\n" * 3000)
        assert sent.returncode == 0, sent.stderr
    got = rmqctl(node.namesrv, "-o", "ndjson", "consume", "Batched", "-g", "B", "--from",
                 "first", "-e")
    rows = [json.loads(line) for line in got.stdout.splitlines()]
    bodies = [row["body"] for row in rows]
    assert sorted(b for b in bodies if b.startswith("b")) == sorted(f"b{i}" for i in range(25))
    for codec in ("zstd", "lz4"):
        assert f"{codec}1\n{codec}2\n" * 3000 in bodies  # inflated on the way out
    lz4_row = next(row for row in rows if row["body"].startswith("lz4"))
    assert lz4_row["sysFlag"] & 0x701 == 0x101  # compressed, type LZ4: as 5.x consumers expect


def test_misuse_and_failures_exit_codes(node):
    out = rmqctl(node.namesrv, "send", "T", "x", "-p", "novalue")
    assert out.returncode == 2 and "KEY=VALUE" in out.stderr
    out = rmqctl(node.namesrv, "consume", "NoSuchTopic", "-g", "G", "-e")
    assert out.returncode == 3  # not found
    assert out.stderr.startswith("rmqctl: TOPIC_NOT_EXIST (17)") and out.stderr.count("\n") == 1
    out = rmqctl("127.0.0.1:1", "send", "T", "x")
    assert out.returncode == 1 and "connection refused" in out.stderr


def test_tail_shows_the_last_n_then_follows(node):
    import signal
    import time
    assert rmqctl(node.namesrv, "topic", "create", "Tailed", "-q", "1").returncode == 0
    rmqctl(node.namesrv, "send", "Tailed", input="one\ntwo\nthree\n")
    proc = subprocess.Popen([sys.executable, "-m", "rmqctl.cli", "-n", node.namesrv, "tail",
                             "Tailed", "-n", "2", "--format", "%o %b"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        rmqctl(node.namesrv, "send", "Tailed", input="four\n")
        deadline = time.time() + 10
        lines: list[str] = []
        while len(lines) < 3 and time.time() < deadline:
            lines.append(proc.stdout.readline().rstrip("\n"))
        assert lines == ["1 two", "2 three", "3 four"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert proc.returncode == 130 and "Traceback" not in proc.stderr.read()


def test_two_consumers_in_a_group_share_the_queues_and_rebalance(node):
    import signal
    import time
    ns = node.namesrv
    assert rmqctl(ns, "topic", "create", "Shared2", "-q", "4").returncode == 0

    def member() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "rmqctl.cli", "-n", ns, "consume",
                                 "Shared2", "-g", "Pair", "--from", "last", "--format", "%b"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = member()
    time.sleep(1.5)
    second = member()  # joining makes the broker notify the first, which gives up queues
    time.sleep(2.5)
    rmqctl(ns, "send", "Shared2", input="".join(f"m{i}\n" for i in range(40)))
    time.sleep(2)
    outputs = []
    for proc in (first, second):
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 130, err
        outputs.append(out.split())
    assert outputs[0] and outputs[1], "both members got a share"
    assert not set(outputs[0]) & set(outputs[1]), "no message went to both"
    assert sorted(outputs[0] + outputs[1]) == sorted(f"m{i}" for i in range(40))

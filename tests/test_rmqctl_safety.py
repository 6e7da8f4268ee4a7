"""rmqctl against a real node where a careless default would lose or hide messages: topic
updates keep what is not given, consume commits what got out, send streams and skips
empty lines, message ids of either kind, broker config refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from test_rmqctl_admin_live import js, node  # noqa: F401 - node is a fixture
from test_rmqctl_messages import rmqctl


def test_topic_update_keeps_the_queue_count_and_shrinking_needs_yes(node):
    ns = node.namesrv
    [created] = js(rmqctl(ns, "-o", "json", "topic", "create", "Wide", "-q", "16"))
    assert created["writeQueueNums"] == 16
    lines = "".join(f"m{i}\n" for i in range(64))
    assert rmqctl(ns, "send", "Wide", "--quiet", input=lines).returncode == 0
    [updated] = js(rmqctl(ns, "-o", "json", "topic", "update", "Wide", "--perm", "R"))
    assert (updated["readQueueNums"], updated["writeQueueNums"], updated["perm"]) == (16, 16, "R")
    status = js(rmqctl(ns, "-o", "json", "topic", "status", "Wide"))
    assert len(status) == 16
    behind = sum(r["maxOffset"] - r["minOffset"] for r in status if r["queueId"] >= 8)
    for command in ("create", "update"):
        refused = rmqctl(ns, "topic", command, "Wide", "-q", "8")
        assert refused.returncode == 2, refused.stderr
        assert f"hides {behind} messages in queues 8-15" in refused.stderr
        assert "--yes" in refused.stderr and refused.stderr.count("\n") == 1
    [route] = js(rmqctl(ns, "-o", "json", "topic", "route", "Wide"))["queueDatas"]
    assert route["readQueueNums"] == 16, "nothing changed without --yes"
    [shrunk] = js(rmqctl(ns, "-o", "json", "topic", "update", "Wide", "-q", "8", "--yes"))
    assert (shrunk["readQueueNums"], shrunk["perm"]) == (8, "R"), "the permission was kept"
    [grown] = js(rmqctl(ns, "-o", "json", "topic", "create", "Wide", "-q", "12"))
    assert grown["writeQueueNums"] == 12


def test_broker_config_refusals_are_one_line_and_non_zero(node):
    ns = node.namesrv
    for setting, words in [("noSuchKey=1", "unknown broker config key"),
                           ("listenPort=1", "black list"),
                           ("maxMessageSize=abc", "maxMessageSize")]:
        out = rmqctl(ns, "broker", "config", "broker-a", "--set", setting)
        assert out.returncode == 1, (setting, out.stderr)
        assert words in out.stderr and out.stderr.count("\n") == 1, out.stderr
        assert out.stdout == ""
    out = rmqctl(ns, "broker", "config", "broker-a", "--set", "maxMessageSize=4096",
                 "--set", "noSuchKey=1")
    assert out.returncode == 1
    config = js(rmqctl(ns, "-o", "json", "broker", "config", "broker-a"))
    assert config["maxMessageSize"] != "4096", "all or nothing"
    assert rmqctl(ns, "broker", "config", "nobroker").returncode == 3
    assert rmqctl(ns, "broker", "config", "127.0.0.1:99999").returncode == 2


def test_fan_out_reports_the_broker_that_failed_and_the_others_results(node, start_node):
    """A second broker registered with the same name server, then frozen (SIGSTOP: still
    registered, never answering): the first one's results still come, the frozen one is
    one line, and the exit code says what happened to it (4, a timeout)."""
    ns = node.namesrv
    other = start_node("--role", "broker", "--listen-port", "0", "-n", ns,
                       "-D", "brokerName=broker-b", roles=("broker",))
    deadline = time.monotonic() + 10
    while "broker-b" not in rmqctl(ns, "cluster", "list").stdout and time.monotonic() < deadline:
        time.sleep(0.2)
    for topic in ("Both", "%DLQ%FanG"):  # on both brokers while both answer
        assert rmqctl(ns, "topic", "create", topic, "-q", "1").returncode == 0
    os.kill(other.proc.pid, signal.SIGSTOP)
    try:
        out = rmqctl(ns, "--timeout", "1", "-o", "json", "topic", "create", "Fan", "-q", "2")
        stats = rmqctl(ns, "--timeout", "1", "-o", "json", "topic", "stats", "Both")
        dead = rmqctl(ns, "--timeout", "1", "-o", "json", "dlq", "list", "-g", "FanG")
    finally:
        os.kill(other.proc.pid, signal.SIGCONT)
    assert out.returncode == 4
    assert [r["broker"] for r in json.loads(out.stdout)] == ["broker-a"]
    [line] = out.stderr.splitlines()
    assert line.startswith(f"rmqctl: broker-b ({other.broker}): ")
    for answer in (stats, dead):
        assert answer.returncode == 4, answer.stderr
        lines = answer.stderr.splitlines()
        assert lines and all(line.startswith("rmqctl: broker-b (") for line in lines), lines
        assert json.loads(answer.stdout), "the reachable broker's rows are missing"
    assert {r["broker"] for r in json.loads(dead.stdout)} == {"broker-a"}


def test_consume_into_a_closed_pipe_commits_only_what_got_out(node):
    ns = node.namesrv
    body = "x" * 2000  # 40 of them fill a pipe: the rest cannot have got out
    lines = "".join(f"{i:04d}{body}\n" for i in range(300))
    assert rmqctl(ns, "send", "Piped", "--sharding-key", "one", "--quiet",
                  input=lines).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "rmqctl.cli", "-n", ns, "-o", "ndjson",
                             "consume", "Piped", "-g", "PipeG", "--from", "first", "-e"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    shown = [json.loads(proc.stdout.readline())["body"][:4] for _ in range(3)]
    proc.stdout.close()  # as `| head -3` does
    assert proc.wait(timeout=60) == 0
    assert proc.stderr.read() == b""
    rest = rmqctl(ns, "-o", "raw", "consume", "Piped", "-g", "PipeG", "-e", "--format", "%b")
    again = [line[:4] for line in rest.stdout.split()]
    assert shown == ["0000", "0001", "0002"]
    assert len(again) >= 300 - 3 - 40, "no more was committed than the pipe could hold"
    assert again == [f"{i:04d}" for i in range(300 - len(again), 300)], "in order, no gap"


def test_send_streams_results_skips_empty_lines_and_says_how_far_it_got(node):
    ns = node.namesrv
    proc = subprocess.Popen([sys.executable, "-m", "rmqctl.cli", "-n", ns, "-o", "ndjson",
                             "send", "Stream"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdin.write(b"first\n\nsecond\n")
    proc.stdin.flush()
    results = [json.loads(proc.stdout.readline()) for _ in range(2)]  # before stdin ends
    assert all(r["status"] == "SEND_OK" for r in results)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    assert proc.stderr.read().decode() == "rmqctl: sent 2, last line 3\n"
    got = rmqctl(ns, "-o", "raw", "consume", "Stream", "-g", "S", "--from", "first", "-e")
    assert sorted(got.stdout.splitlines()) == ["first", "second"], "the empty line was skipped"

    big = b"a\nb\n" + b"z" * (5 << 20) + b"\nc\n"
    out = subprocess.run([sys.executable, "-m", "rmqctl.cli", "-n", ns, "send", "Stream",
                          "--quiet"], input=big, capture_output=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.decode().splitlines() == [
        "rmqctl: sent 2, last line 2",
        "rmqctl: line 3 is over 4194304 bytes, the most a RocketMQ client sends in one "
        "message (maxMessageSize)"]
    empty = rmqctl(ns, "-o", "json", "send", "Stream", "--allow-empty", "--quiet", input="\n")
    assert js(empty) == {"topic": "Stream", "sent": 1, "lastLine": 1}
    assert rmqctl(ns, "send", "Stream", "").returncode == 2


def test_one_shot_sends_start_on_a_random_queue(node):
    ns = node.namesrv
    assert rmqctl(ns, "topic", "create", "Spread", "-q", "8").returncode == 0
    queues = {js(rmqctl(ns, "-o", "json", "send", "Spread", f"m{i}"))[0]["queueId"]
              for i in range(8)}
    assert len(queues) > 1, "every one-message send went to the same queue"


def test_message_get_and_trace_take_either_kind_of_id(node):
    ns = node.namesrv
    [sent] = js(rmqctl(ns, "-o", "json", "send", "Ids", "hello"))
    for msg_id, kind in [(sent["msgId"], "unique key"), (sent["offsetMsgId"], "offset id")]:
        got = js(rmqctl(ns, "-o", "json", "message", "get", msg_id))
        assert (got["idKind"], got["body"], got["msgId"]) == (kind, "hello", sent["msgId"])
        table = rmqctl(ns, "message", "get", msg_id)
        assert table.returncode == 0 and table.stderr.startswith(f"{msg_id}: {kind}, topic Ids")
        hops = rmqctl(ns, "-o", "ndjson", "message", "trace", msg_id, "-g", "G")
        assert hops.returncode == 0, hops.stderr
        assert json.loads(hops.stdout.splitlines()[0])["stage"] == "sent"
    with_topic = js(rmqctl(ns, "-o", "json", "message", "get", sent["msgId"], "-t", "Ids"))
    assert with_topic["offsetMsgId"] == sent["offsetMsgId"]
    missing = sent["msgId"][:-4] + "FFFF"
    out = rmqctl(ns, "message", "get", missing)
    assert out.returncode == 3 and out.stderr == (f"rmqctl: no message {missing} (a unique "
                                                  "key) in any topic\n")
    out = rmqctl(ns, "message", "get", sent["offsetMsgId"][:-8] + "7FFFFFFF")
    assert out.returncode == 3 and "has no message at commit log offset" in out.stderr
    assert rmqctl(ns, "message", "get", "not-an-id").returncode == 2


def test_rmqctl_started_with_sigint_ignored_still_stops_on_ctrl_c(node):
    assert rmqctl(node.namesrv, "topic", "create", "Quiet", "-q", "2").returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "rmqctl.cli", "-n", node.namesrv,
                             "consume", "Quiet", "-g", "Q"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    time.sleep(3)  # joined, and waiting in a long poll
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 130
    assert proc.stderr.read() == b"", "nothing, not 'Task exception was never retrieved'"
    proc = subprocess.Popen([sys.executable, "-m", "rmqctl.cli", "-n", node.namesrv,
                             "tail", "Quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(3)
    proc.terminate()
    assert proc.wait(timeout=20) == 143 and proc.stderr.read() == b""


def test_bytes_that_are_not_utf8_and_unreadable_files_are_one_line(node, tmp_path):
    ns = node.namesrv
    out = subprocess.run([sys.executable, "-m", "rmqctl.cli", "-n", ns, "-o", "json", "send",
                          "Raw", b"\xff\xfebytes"], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr  # the shell's bytes, sent as they are
    got = rmqctl(ns, "-o", "json", "consume", "Raw", "-g", "R", "--from", "first", "-e",
                 "--body", "hex")
    assert json.loads(got.stdout)["body"] == "fffe6279746573"
    out = subprocess.run([sys.executable, "-m", "rmqctl.cli", "-n", ns, "topic", "route",
                          b"T\xff"], capture_output=True, timeout=60)
    assert out.returncode == 2 and out.stderr.startswith(b"rmqctl: not valid UTF-8")
    log = tmp_path / "00000000000000000000"
    log.mkdir()  # a file that cannot be read (root reads every file, whatever its mode)
    out = rmqctl(ns, "inspect-commitlog", str(tmp_path))
    assert out.returncode == 1 and out.stderr == f"rmqctl: {log}: Is a directory\n"
    log.rmdir()
    log.write_bytes(b"\0" * 64)
    log.chmod(0)
    if not os.access(log, os.R_OK):
        out = rmqctl(ns, "inspect-commitlog", str(tmp_path))
        assert out.returncode == 1 and out.stderr == f"rmqctl: {log}: Permission denied\n"

"""rmqctl consume running a command per message: retries through %RETRY%<group>, the DLQ
past --max-retries, exit code 3 with the offset kept when a handler fails without --retry,
POP consumption, and `message trace` of a retried message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from test_rmqctl_messages import rmqctl

FAST = " ".join(["1s"] * 18)

# Fails each odd-numbered message the first time it sees it; logs "body reconsumes topic".
FLAKY = ('b=$(cat); case $b in *[13579]) if [ ! -e "$STATE/$b" ]; then touch "$STATE/$b"; '
         'exit 1; fi;; esac; echo "$b $RMQ_RECONSUME_TIMES $RMQ_TOPIC"')


@pytest.fixture
def node(start_node):
    return start_node("--namesrv-port", "0", "--listen-port", "0",
                      "-D", f"messageDelayLevel={FAST}")


def send_lines(ns: str, topic: str, lines: list[str], *extra: str) -> list[dict]:
    sent = rmqctl(ns, "-o", "ndjson", "send", topic, "--keys", "batch-key", *extra,
                  input="".join(line + "\n" for line in lines))
    assert sent.returncode == 0, sent.stderr
    return [json.loads(line) for line in sent.stdout.splitlines()]


def consume_env(tmp_path) -> dict:
    return dict(os.environ, STATE=str(tmp_path))


def test_failed_messages_come_back_through_the_retry_topic(node, tmp_path):
    sent = send_lines(node.namesrv, "Jobs", [f"job{i}" for i in range(8)])
    out = subprocess.run([sys.executable, "-m", "rmqctl.cli", "-n", node.namesrv, "consume",
                          "Jobs", "-g", "Workers", "--from", "first", "--exec", FLAKY,
                          "--retry", "-c", "8"], capture_output=True, text=True, timeout=60,
                         env=consume_env(tmp_path))
    assert out.returncode == 0, out.stderr
    handled = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines()}
    assert sorted(handled) == [f"job{i}" for i in range(8)], out.stdout
    assert len(out.stdout.splitlines()) == 8, "each job handled successfully exactly once"
    for name, (times, topic) in handled.items():
        assert topic == "Jobs", "a retried message shows its original topic"
        assert times == ("1" if int(name[-1]) % 2 else "0")

    job1 = sent[1]["msgId"]
    traced = rmqctl(node.namesrv, "-o", "ndjson", "message", "trace", job1, "-g", "Workers",
                    "-t", "Jobs")
    assert traced.returncode == 0, traced.stderr
    hops = [json.loads(line) for line in traced.stdout.splitlines()]
    assert [h["stage"] for h in hops] == ["sent", "waiting %RETRY%Workers", "retry"]
    assert [h["reconsumeTimes"] for h in hops] == [0, 1, 1]
    assert hops[0]["consumedByGroup"] is True and hops[-1]["consumedByGroup"] is True


def test_a_failing_handler_without_retry_stops_and_keeps_the_offset(node, tmp_path):
    send_lines(node.namesrv, "Strict", ["ok0", "bad1", "ok2"], "--sharding-key", "one-queue")
    cmd = 'b=$(cat); [ "$b" != bad1 ] && echo "$b"'
    first = rmqctl(node.namesrv, "consume", "Strict", "-g", "S", "--from", "first", "-e",
                   "--exec", cmd)
    assert first.returncode == 1  # an error (3 is "not found")
    assert first.stdout.split() == ["ok0"]
    [reason] = first.stderr.strip().splitlines()
    assert "handler failed Strict/" in reason and "not committed" in reason
    again = rmqctl(node.namesrv, "consume", "Strict", "-g", "S", "-e", "--format", "%b")
    assert again.stdout.split() == ["bad1", "ok2"], "the failed message was not skipped"


def test_retried_past_max_retries_goes_to_the_dlq(node, tmp_path):
    send_lines(node.namesrv, "Poison", ["poison"])
    proc = subprocess.Popen([sys.executable, "-m", "rmqctl.cli", "-n", node.namesrv, "consume",
                             "Poison", "-g", "P", "--from", "first", "--exec", "exit 1",
                             "--retry", "--max-retries", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            listed = rmqctl(node.namesrv, "-o", "json", "dlq", "list", "-g", "P")
            rows = json.loads(listed.stdout or "[]")
            if rows and rows[0]["messages"] == 1:
                break
            assert time.monotonic() < deadline, f"never reached the DLQ: {listed.stderr}"
            time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(10)
    shown = rmqctl(node.namesrv, "-o", "ndjson", "dlq", "show", "-g", "P")
    [dead] = [json.loads(line) for line in shown.stdout.splitlines()]
    assert dead["body"] == "poison" and dead["originTopic"] == "Poison"
    assert dead["reconsumeTimes"] == 2


def test_pop_consumption_acks_what_the_command_handled(node, tmp_path):
    send_lines(node.namesrv, "PopJobs", [f"p{i}" for i in range(6)])
    out = subprocess.run([sys.executable, "-m", "rmqctl.cli", "-n", node.namesrv, "consume",
                          "PopJobs", "-g", "Poppers", "--pop", "-e", "--exec",
                          'b=$(cat); echo "$b"'], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.split()) == [f"p{i}" for i in range(6)]
    again = rmqctl(node.namesrv, "consume", "PopJobs", "-g", "Poppers", "--pop", "-e",
                   "--invisible", "1")
    assert again.returncode == 0 and again.stdout == "", "acked messages never come back"


@pytest.mark.parametrize("args, reason", [
    (["--retry"], "--retry needs --exec"),
    (["--pop", "--from", "first"], "--pop takes neither"),
])
def test_consume_misuse_is_one_line_and_exit_2(node, args, reason):
    out = rmqctl(node.namesrv, "consume", "Jobs", "-g", "G", *args)
    assert out.returncode == 2 and reason in out.stderr

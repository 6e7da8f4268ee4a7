"""Positions and ranges: `--from`/`--to`/`--idle-timeout`/`--queue` on consume and tail, and
`offset at`, against a real node, with messages whose store times are read back from it;
and the parser (rmqctl.positions) on its own."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from rmqctl.positions import (Kind, Position, PositionError, Span, parse_position,
                              parse_queue_ids, parse_span, parse_time, with_end)

NOW = 1_795_946_400_000  # 2026-11-29T10:00:00Z


def rmqctl(ns: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rmqctl.cli", "-n", ns, *args],
                          capture_output=True, text=True, timeout=120, input=input)


def rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    from conftest import Node
    n = Node(["--namesrv-port", "0", "--listen-port", "0"], tmp_path_factory.mktemp("positions"))
    n.wait_started(("namesrv", "broker"))
    yield n
    n.stop()


@pytest.fixture(scope="module")
def timed(node):
    """Topic Timed, 2 queues: a0..a4 then, after a gap, b0..b4, all on one queue (a sharding
    key); the other queue stays empty. Returns (queue id, rows as stored, in offset order)."""
    ns = node.namesrv
    assert rmqctl(ns, "topic", "create", "Timed", "-q", "2").returncode == 0
    for batch in ("a", "b"):
        sent = rmqctl(ns, "send", "Timed", "--sharding-key", "k",
                      input="".join(f"{batch}{i}\n" for i in range(5)))
        assert sent.returncode == 0, sent.stderr
        time.sleep(1.2)  # b0 is stored well after a4: a time between them selects b0..b4
    rows = ndjson(rmqctl(ns, "-o", "ndjson", "tail", "Timed", "--from", "first:end"))
    assert [r["body"] for r in rows] == [f"{b}{i}" for b in "ab" for i in range(5)]
    assert rows[5]["storeTimestamp"] > rows[4]["storeTimestamp"] + 500
    return rows[0]["queueId"], rows


def ndjson(out: subprocess.CompletedProcess) -> list[dict]:
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def bodies(out: subprocess.CompletedProcess) -> list[str]:
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def tail(ns: str, *args: str) -> list[str]:
    return bodies(rmqctl(ns, "-o", "raw", "tail", "Timed", *args))


A = [f"a{i}" for i in range(5)]
B = [f"b{i}" for i in range(5)]


def test_time_positions_select_by_store_time(node, timed):
    ns = node.namesrv
    _, rows = timed
    b0, a4 = rows[5]["storeTimestamp"], rows[4]["storeTimestamp"]
    assert tail(ns, "--from", f"@{b0}:end") == B
    assert tail(ns, "--from", f"@{a4 + 1}:end") == B  # the first stored at or after
    assert tail(ns, "--from", f"@{rfc3339(b0)}:end") == B
    plus_one = datetime.fromtimestamp(b0 / 1000, timezone(timedelta(hours=1)))
    assert tail(ns, "--from", f"@{plus_one.isoformat(timespec='milliseconds')}:end") == B
    assert tail(ns, "--from", f"@{rows[0]['storeTimestamp']}:{b0}") == A  # @T1:T2
    assert tail(ns, "--from", f"@{rows[0]['storeTimestamp']}:@{rfc3339(b0)}") == A
    assert tail(ns, "--from", f"@:{b0}") == []  # tail starts at the end by default
    assert tail(ns, "--from", "@-1h:end") == A + B  # relative to now
    assert tail(ns, "--from", "@2000-01-01:end") == A + B
    assert tail(ns, "--from", "@+1h:end") == []


def test_offset_positions_and_ranges(node, timed):
    ns = node.namesrv
    queue, _ = timed
    q = ("--queue", str(queue))
    assert tail(ns, "--from", "-2:end") == ["b3", "b4"]
    assert tail(ns, "--from", "+3:end") == ["a3", "a4"] + B
    assert tail(ns, "--from", "2:4", *q) == ["a2", "a3"]
    assert tail(ns, "--from", "first", "--to", "3", *q) == ["a0", "a1", "a2"]
    assert tail(ns, "--from", "start:+2", *q) == ["a0", "a1"]
    assert tail(ns, "--from", "8:", "--to", "end") == ["b3", "b4"]
    assert tail(ns, "--from", "last:end") == []


def test_to_time_and_exit_when_every_queue_ends(node, timed):
    """--to @T stops each queue at its first message stored at or after T; the empty queue
    ends at once (T passed), so the command exits."""
    ns = node.namesrv
    _, rows = timed
    b0 = rows[5]["storeTimestamp"]
    out = rmqctl(ns, "-o", "raw", "consume", "Timed", "-g", "ToTime", "--from", "first",
                 "--to", f"@{b0}")
    assert bodies(out) == A
    # The group's offset is where it stopped: the next run starts at b0.
    assert bodies(rmqctl(ns, "-o", "raw", "consume", "Timed", "-g", "ToTime", "-e")) == B
    # A time ahead: everything there is, then the command exits once the time has passed.
    assert tail(ns, "--from", "first", "--to", "@+2s") == A + B


def test_colon_end_reads_to_the_end_as_of_start(node, timed):
    """:end starts where the group is and stops at the end the queues have at start."""
    ns = node.namesrv
    first = rmqctl(ns, "-o", "raw", "consume", "Timed", "-g", "ToEnd", "--from", "first",
                   "-c", "3")
    assert bodies(first) == A[:3]
    _, rows = timed
    before_b = rmqctl(ns, "-o", "raw", "consume", "Timed", "-g", "ToEnd", "--from",
                      f"@:{rows[5]['storeTimestamp']}")
    assert bodies(before_b) == A[3:]  # from the group's offset up to the time
    assert bodies(rmqctl(ns, "-o", "raw", "consume", "Timed", "-g", "ToEnd", "--from",
                         ":end")) == B
    assert bodies(rmqctl(ns, "-o", "raw", "consume", "Timed", "-g", "ToEnd", "--from",
                         ":end")) == []


def test_idle_timeout_stops_a_follower(node, timed):
    ns = node.namesrv
    assert tail(ns, "--from", "-1", "--idle-timeout", "1") == ["b4"]
    out = rmqctl(ns, "-o", "raw", "consume", "Timed", "-g", "Idle", "--from", "+8",
                 "--idle-timeout", "1")
    assert bodies(out) == ["b3", "b4"]
    again = rmqctl(ns, "-o", "raw", "consume", "Timed", "-g", "Idle", "--idle-timeout", "1")
    assert bodies(again) == []  # committed


def test_queue_selects_queues_and_pins_a_group_member(node):
    ns = node.namesrv
    assert rmqctl(ns, "topic", "create", "Four", "-q", "4").returncode == 0
    sent = ndjson(rmqctl(ns, "-o", "ndjson", "send", "Four",
                         input="".join(f"m{i}\n" for i in range(12))))
    by_queue = {q: [f"m{i}" for i, r in enumerate(sent) if r["queueId"] == q] for q in range(4)}
    assert all(len(v) == 3 for v in by_queue.values())
    got = ndjson(rmqctl(ns, "-o", "ndjson", "tail", "Four", "--from", "first:end",
                        "--queue", "1,3"))
    assert sorted(r["body"] for r in got) == sorted(by_queue[1] + by_queue[3])
    got = ndjson(rmqctl(ns, "-o", "ndjson", "tail", "Four", "--from", "first:end",
                        "--queue", "2", "--queue", "0", "--broker", "broker-a"))
    assert sorted(r["body"] for r in got) == sorted(by_queue[0] + by_queue[2])
    # A pinned member reads its queue, commits, and leaves the others to the group.
    pinned = rmqctl(ns, "-o", "raw", "consume", "Four", "-g", "Pin", "--queue", "2",
                    "--from", "first", "-e")
    assert bodies(pinned) == by_queue[2]
    again = rmqctl(ns, "-o", "raw", "consume", "Four", "-g", "Pin", "--queue", "2", "-e")
    assert bodies(again) == []  # committed
    progress = ndjson(rmqctl(ns, "-o", "ndjson", "group", "progress", "Pin"))
    assert {r["queueId"]: int(r["consumerOffset"]) for r in progress} == {0: 0, 1: 0, 2: 3, 3: 0}
    # The group's rebalancing members read the rest: the pinned reader took no share.
    member = rmqctl(ns, "-o", "raw", "consume", "Four", "-g", "Pin", "-e")
    assert sorted(bodies(member)) == sorted(by_queue[0] + by_queue[1] + by_queue[3])
    missing = rmqctl(ns, "tail", "Four", "--queue", "9")
    assert missing.returncode == 3 and missing.stderr.count("\n") == 1
    assert "no queue 9" in missing.stderr and "0, 1, 2, 3" in missing.stderr
    broker = rmqctl(ns, "tail", "Four", "--broker", "nope")
    assert broker.returncode == 3 and "broker-a" in broker.stderr


def test_offset_at(node, timed):
    ns = node.namesrv
    queue, rows = timed
    b0 = rows[5]["storeTimestamp"]
    other = 1 - queue
    for time_value in (str(b0), f"@{b0}", rfc3339(b0)):
        out = ndjson(rmqctl(ns, "-o", "ndjson", "offset", "at", "Timed", "--time", time_value))
        assert out == [{"brokerName": "broker-a", "queueId": 0,
                        "offset": 5 if queue == 0 else 0, "minOffset": 0,
                        "maxOffset": 10 if queue == 0 else 0},
                       {"brokerName": "broker-a", "queueId": 1,
                        "offset": 5 if queue == 1 else 0, "minOffset": 0,
                        "maxOffset": 10 if queue == 1 else 0}]
    one = json.loads(rmqctl(ns, "-o", "json", "offset", "at", "Timed", "--time", "-1h",
                            "--queue", str(queue)).stdout)
    assert one == [{"brokerName": "broker-a", "queueId": queue, "offset": 0, "minOffset": 0,
                    "maxOffset": 10}]
    ahead = ndjson(rmqctl(ns, "-o", "ndjson", "offset", "at", "Timed", "--time", "2999-01-01",
                          "--queue", f"{queue},{other}"))
    assert {r["queueId"]: r["offset"] for r in ahead} == {queue: 10, other: 0}
    table = rmqctl(ns, "offset", "at", "Timed", "--time", str(b0))
    assert table.stdout.split("\n")[0].split() == ["brokerName", "queueId", "offset",
                                                   "minOffset", "maxOffset"]


@pytest.mark.parametrize("args, named", [
    (("tail", "Timed", "--from", "yesterday"), "--from 'yesterday'"),
    (("tail", "Timed", "--from", "@2026-11-29T10:00:00"), "zone"),
    (("tail", "Timed", "--from", "@1h"), "sign"),
    (("tail", "Timed", "--from", "@2026-02-30"), "not a date"),
    (("tail", "Timed", "--from", "5:x"), "'x'"),
    (("consume", "Timed", "-g", "G", "--to", "1:2"), "--to '1:2'"),
    (("consume", "Timed", "-g", "G", "--from", "1:2", "--to", "3"), "given twice"),
    (("consume", "Timed", "-g", "G", "--queue", "1,x"), "--queue '1,x'"),
    (("tail", "Timed", "-n", "2", "--from", "first"), "-n N and --from"),
    (("offset", "at", "Timed", "--time", "soon"), "--time 'soon'"),
    (("offset", "at", "Timed", "--time", "1:2"), "--time '1:2'"),
])
def test_malformed_values_are_one_line_misuse(node, timed, args, named):
    out = rmqctl(node.namesrv, *args)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("rmqctl: "), out.stderr
    assert named in out.stderr and out.stdout == ""


# -- the parser on its own -------------------------------------------------------------------

def at(ms: int) -> Position:
    return Position(Kind.TIME, ms)


@pytest.mark.parametrize("text, span", [
    ("17", Span(Position(Kind.OFFSET, 17), None)),
    ("first", Span(Position(Kind.FIRST), None)),
    ("start", Span(Position(Kind.FIRST), None)),
    ("last", Span(Position(Kind.END), None)),
    ("end", Span(Position(Kind.END), None)),
    ("-3", Span(Position(Kind.BEFORE_END, 3), None)),
    ("+3", Span(Position(Kind.AFTER_FIRST, 3), None)),
    ("@1795946400123", Span(at(1_795_946_400_123), None)),
    ("@1795946400", Span(at(NOW), None)),  # 10 digits: seconds
    ("@179594640", Span(at(179_594_640_000), None)),  # 9 digits: seconds
    ("@2026-11-29", Span(at(NOW - 10 * 3_600_000), None)),
    ("@2026-11-29T10:00:00Z", Span(at(NOW), None)),
    ("@2026-11-29T10:00Z", Span(at(NOW), None)),
    ("@2026-11-29T10:00:00.25Z", Span(at(NOW + 250), None)),
    ("@2026-11-29T18:00:00+08:00", Span(at(NOW), None)),
    ("@2026-11-29T05:30:00-04:30", Span(at(NOW), None)),
    ("@-1h", Span(at(NOW - 3_600_000), None)),
    ("@-15m", Span(at(NOW - 900_000), None)),
    ("@-1m30s", Span(at(NOW - 90_000), None)),
    ("@-1d2h", Span(at(NOW - 26 * 3_600_000), None)),
    ("@-500ms", Span(at(NOW - 500), None)),
    ("@+10m", Span(at(NOW + 600_000), None)),
    ("10:20", Span(Position(Kind.OFFSET, 10), Position(Kind.OFFSET, 20))),
    ("10:", Span(Position(Kind.OFFSET, 10), None)),
    (":20", Span(None, Position(Kind.OFFSET, 20))),
    (":end", Span(None, Position(Kind.END))),
    ("-5:end", Span(Position(Kind.BEFORE_END, 5), Position(Kind.END))),
    ("first:+2", Span(Position(Kind.FIRST), Position(Kind.AFTER_FIRST, 2))),
    ("3:@-1h", Span(Position(Kind.OFFSET, 3), at(NOW - 3_600_000))),
    ("@-1h:end", Span(at(NOW - 3_600_000), Position(Kind.END))),
    ("@-1h:", Span(at(NOW - 3_600_000), None)),
    ("@-2h:-1h", Span(at(NOW - 7_200_000), at(NOW - 3_600_000))),
    ("@2026-11-29T10:00:00Z:2026-11-29T11:00:00Z", Span(at(NOW), at(NOW + 3_600_000))),
    ("@2026-11-29T10:00:00Z:@2026-11-29T11:00:00+01:00", Span(at(NOW), at(NOW))),
    ("@1795946400000:1795946401000", Span(at(NOW), at(NOW + 1000))),
    ("@2026-11-29T10:00:00Z:1h30m", Span(at(NOW), at(NOW + 5_400_000))),  # after the start
    ("@:2026-11-29T10:00:00Z", Span(None, at(NOW))),
])
def test_parse_span(text, span):
    assert parse_span(text, NOW) == span


@pytest.mark.parametrize("text", [
    "", "x", "1.5", "--5", "+-5", "@", "@x", "@1h", "@-1x", "@2026-11-29T10:00:00",
    "@2026-13-01", "@2026-11-29T25:00:00Z", "@-1h:x", "@-1h:end:1", "5:x", "x:5",
    "@-100000000000000000000d", "99999999999999999999",
])
def test_parse_span_rejects_with_one_line_naming_the_value(text):
    with pytest.raises(PositionError) as exc:
        parse_span(text, NOW)
    message = str(exc.value)
    assert message.startswith(repr(text)) and "\n" not in message
    assert "-N (N before the end)" in message and "@-1h:end" in message  # the forms


def test_parse_position_and_time():
    assert parse_position("@-1h", NOW) == at(NOW - 3_600_000)
    assert parse_position("end", NOW) == Position(Kind.END)
    with pytest.raises(PositionError, match="'1:2'"):
        parse_position("1:2", NOW)
    assert parse_time("2026-11-29T10:00:00Z", NOW) == NOW
    assert parse_time("@2026-11-29T10:00:00Z", NOW) == NOW
    assert parse_time("-1m30s", NOW) == NOW - 90_000
    assert parse_time("1795946400", NOW) == NOW
    for bad in ("", "@", "end", "first", "1:2", "@-1h:end", "noon"):
        with pytest.raises(PositionError) as exc:
            parse_time(bad, NOW)
        assert str(exc.value).startswith(repr(bad)) and "2026-11-29T10:00:00Z" in str(exc.value)


def test_with_end_and_queue_ids():
    assert with_end(Span(None, None), Position(Kind.END)) == Span(None, Position(Kind.END))
    assert with_end(Span(Position(Kind.FIRST), None), None) == Span(Position(Kind.FIRST), None)
    with pytest.raises(PositionError, match="given twice"):
        with_end(Span(None, Position(Kind.END)), Position(Kind.OFFSET, 3))
    assert parse_queue_ids(["0,2", "3", " 2 "]) == (0, 2, 3)
    for bad in (["x"], ["1,"], ["-1"], ["1.5"], ["99999999999"]):
        with pytest.raises(PositionError, match="--queue"):
            parse_queue_ids(bad)


def test_broker_chooses_among_brokers_that_share_a_topic(start_node):
    """A queue id is one broker's: with two brokers, --queue needs --broker (exit 2 naming
    them), and --broker alone reads that broker's queues."""
    ns = start_node("--role", "namesrv", "--listen-port", "0", roles=("namesrv",)).namesrv
    for name in ("broker-a", "broker-b"):
        start_node("--role", "broker", "--listen-port", "0", "-n", ns, "-D",
                   f"brokerName={name}", roles=("broker",))
    assert rmqctl(ns, "topic", "create", "Shared", "-q", "2").returncode == 0  # on both
    sent = ndjson(rmqctl(ns, "-o", "ndjson", "send", "Shared",
                         input="".join(f"s{i}\n" for i in range(8))))
    where = {i: (r["brokerName"], r["queueId"]) for i, r in enumerate(sent)}
    assert len(set(where.values())) == 4  # round robin over both brokers' queues
    ambiguous = rmqctl(ns, "tail", "Shared", "--queue", "0")
    assert ambiguous.returncode == 2 and ambiguous.stderr.count("\n") == 1
    assert "broker-a, broker-b" in ambiguous.stderr and "--broker" in ambiguous.stderr
    got = bodies(rmqctl(ns, "-o", "raw", "tail", "Shared", "--from", "first:end", "--broker",
                        "broker-b", "--queue", "1"))
    assert sorted(got) == sorted(f"s{i}" for i, w in where.items() if w == ("broker-b", 1))
    got = bodies(rmqctl(ns, "-o", "raw", "consume", "Shared", "-g", "B", "--from", "first",
                        "-e", "--broker", "broker-a"))
    assert sorted(got) == sorted(f"s{i}" for i, w in where.items() if w[0] == "broker-a")
    rows = ndjson(rmqctl(ns, "-o", "ndjson", "offset", "at", "Shared", "--time", "-1h"))
    assert [(r["brokerName"], r["queueId"]) for r in rows] == [
        ("broker-a", 0), ("broker-a", 1), ("broker-b", 0), ("broker-b", 1)]
    assert sum(r["maxOffset"] for r in rows) == 8 and all(r["offset"] == 0 for r in rows)

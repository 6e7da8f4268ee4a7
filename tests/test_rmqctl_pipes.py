"""rmqctl's pipe helpers over a real node: --from msgid:ID, --translate, --dump, and send's
--file, --length-prefixed and --tee, round-tripping through consume's output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def rmqctl(ns: str, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    """rmqctl as a script runs it, bytes in and out."""
    return subprocess.run([sys.executable, "-m", "rmqctl.cli", "-n", ns, *args],
                          capture_output=True, timeout=120, input=input)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr.decode()
    return result


@pytest.fixture
def node(start_node):
    return start_node("--namesrv-port", "0", "--listen-port", "0")


BLOBS = [b"\x00\x01\x02 binary \xff\xfe\n\r\n", b"plain text\n", b"\n", b"\x00" * 3,
         bytes(range(256)) * 40, "h\u00e9llo w\u00f6rld".encode()]


def send_files(ns: str, topic: str, tmp: Path, bodies: list[bytes], *extra: str) -> list[dict]:
    """Each body as a --file of its own (in tmp); the delivery reports."""
    tmp.mkdir(exist_ok=True)
    paths = []
    for i, body in enumerate(bodies):
        paths += ["--file", str(tmp / f"in-{i}")]
        (tmp / f"in-{i}").write_bytes(body)
    out = ok(rmqctl(ns, "-o", "ndjson", "send", topic, *paths, *extra))
    return [json.loads(line) for line in out.stdout.splitlines()]


def dumped(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


# --- --from msgid:ID ---------------------------------------------------------------------------

@pytest.fixture
def rounds(node):
    """Anchors: 3 queues, and 3 rounds of one message per queue, each sent by its own rmqctl
    (so every message has a store time of its own, after the one before)."""
    ok(rmqctl(node.namesrv, "topic", "create", "Anchors", "-q", "3"))
    sent = {}
    for r in range(1, 4):
        for q in range(3):
            [row] = json.loads(ok(rmqctl(node.namesrv, "-o", "json", "send", "Anchors",
                                         f"r{r}-q{q}", "--queue", str(q))).stdout)
            sent[f"r{r}-q{q}"] = row
    return sent


def test_from_msgid_both_id_kinds(node, rounds):
    """The message's queue starts at it; every other queue at its first message stored at or
    after it: r2-q1 given, queue 0 starts at round 3 (its r2 message is older)."""
    anchor = rounds["r2-q1"]
    want = sorted(["r2-q1", "r3-q1", "r3-q0", "r2-q2", "r3-q2"])
    for kind in ("msgId", "offsetMsgId"):
        out = ok(rmqctl(node.namesrv, "tail", "Anchors", "--from",
                        f"msgid:{anchor[kind]}:end", "-f", "%b"))
        assert sorted(out.stdout.decode().split()) == want, kind
        assert f"Anchors/1@{anchor['queueOffset']}".encode() in out.stderr  # says which
    # A group starts there too (and commits), and a lowercase id is the same id.
    out = ok(rmqctl(node.namesrv, "-o", "raw", "consume", "Anchors", "-g", "from-msg", "-e",
                    "--from", f"msgid:{anchor['offsetMsgId'].lower()}"))
    assert sorted(out.stdout.decode().split()) == want
    assert out.stderr == b""  # -o raw: nothing said beside the bodies
    again = ok(rmqctl(node.namesrv, "-o", "raw", "consume", "Anchors", "-g", "from-msg", "-e"))
    assert again.stdout == b""
    # --queue: only that queue, still from the message's store time.
    out = ok(rmqctl(node.namesrv, "tail", "Anchors", "--queue", "0", "--from",
                    f"msgid:{anchor['msgId']}:end", "-f", "%b"))
    assert out.stdout.decode().split() == ["r3-q0"]


def test_from_msgid_errors(node, rounds):
    ns = node.namesrv
    bad = rmqctl(ns, "tail", "Anchors", "--from", "msgid:xyz")
    assert bad.returncode == 2 and b"--from 'msgid:xyz'" in bad.stderr
    assert b"Traceback" not in bad.stderr
    to = rmqctl(ns, "tail", "Anchors", "--to", f"msgid:{rounds['r1-q0']['msgId']}")
    assert to.returncode == 2 and b"not a position" in to.stderr
    # A unique key nobody sent: the same shape as a 4.x client's, not found.
    missing = rmqctl(ns, "tail", "Anchors", "--from", "msgid:7F0000014DAC478E98D07BF9B51D1388")
    assert missing.returncode == 3 and b"no message" in missing.stderr, missing.stderr
    # An offset id of another topic's message.
    [other] = json.loads(ok(rmqctl(ns, "-o", "json", "send", "Elsewhere", "x")).stdout)
    wrong = rmqctl(ns, "consume", "Anchors", "-g", "g", "-e", "--from",
                   f"msgid:{other['offsetMsgId']}")
    assert wrong.returncode == 3 and b"a message of Elsewhere, not Anchors" in wrong.stderr


# --- --translate -------------------------------------------------------------------------------

def test_translate_upper_and_a_failing_command(node):
    ns = node.namesrv
    ok(rmqctl(ns, "send", "Words", "--queue", "0", input=b"abc\ndef\nghi\n"))
    out = ok(rmqctl(ns, "tail", "Words", "--from", "first:end", "--translate", "tr a-z A-Z",
                    "-f", "%o %b"))
    assert out.stdout == b"0 ABC\n1 DEF\n2 GHI\n"
    # Fails on offset 1 only: said once on stderr, with its exit code; the body shown as is.
    script = 'case "$RMQ_QUEUE_OFFSET" in 1) exit 7;; esac; tr a-z A-Z'
    out = ok(rmqctl(ns, "-o", "raw", "consume", "Words", "-g", "tr", "--from", "first", "-e",
                    "--translate", script))
    assert out.stdout == b"ABC\ndef\nGHI\n"
    [line] = out.stderr.decode().splitlines()
    assert "--translate exited 7 on Words/0@1" in line and "shown as it is" in line
    # The translated body is what --exec and --dump get too.
    out = ok(rmqctl(ns, "consume", "Words", "-g", "tr-exec", "--from", "first", "-e",
                    "--translate", "rev", "--exec", "cat; echo"))
    assert out.stdout == b"cba\nfed\nihg\n"


# --- --dump ----------------------------------------------------------------------------------

def test_dump_dir_holds_each_body_exactly(node, tmp_path):
    ns = node.namesrv
    reports = send_files(ns, "Blobs", tmp_path, BLOBS)
    big = bytes(range(256)) * 100  # compressed on the way: dumped inflated
    reports += send_files(ns, "Blobs", tmp_path / "big", [big], "--compress", "zlib")
    bodies = BLOBS + [big]
    out = ok(rmqctl(ns, "consume", "Blobs", "-g", "dumper", "--from", "first", "-e",
                    "--dump", str(tmp_path / "out")))
    assert out.stdout == b""
    files = dumped(tmp_path / "out")
    want = {f"Blobs-{r['queueId']}-{r['queueOffset']}-{r['offsetMsgId']}": body
            for r, body in zip(reports, bodies)}
    assert files == want
    # The name's last part is what `message get` reads.
    name = next(iter(want))
    got = ok(rmqctl(ns, "-o", "json", "message", "get", name.rsplit("-", 1)[1], "--body",
                    "base64"))
    assert json.loads(got.stdout)["offsetMsgId"] == name.rsplit("-", 1)[1]
    # tail dumps the same files.
    ok(rmqctl(ns, "tail", "Blobs", "--from", "first:end", "--dump", str(tmp_path / "t")))
    assert dumped(tmp_path / "t") == want


def test_dump_stdout_is_raw_nul_delimited(node, tmp_path):
    ns = node.namesrv
    send_files(ns, "Nul", tmp_path, BLOBS, "--queue", "0")
    out = ok(rmqctl(ns, "tail", "Nul", "--from", "first:end", "--dump", "-"))
    assert out.stdout == b"".join(body + b"\0" for body in BLOBS)
    same = ok(rmqctl(ns, "-o", "raw", "tail", "Nul", "--from", "first:end",
                     "--delimiter", "\\0"))
    assert same.stdout == out.stdout
    counted = ok(rmqctl(ns, "consume", "Nul", "-g", "n", "--from", "first", "-c", "2",
                        "--dump", "-"))
    assert counted.stdout == BLOBS[0] + b"\0" + BLOBS[1] + b"\0"


def test_dump_misuse(node, tmp_path):
    ns = node.namesrv
    (tmp_path / "file").write_bytes(b"")
    for args, code, says in [
            (["--dump", "-", "-f", "%b"], 2, b"no --format"),
            (["--dump", str(tmp_path / "d"), "--delimiter", "x"], 2, b"no --format"),
            (["--dump", str(tmp_path / "d"), "--exec", "cat"], 2, b"--exec and --dump"),
            (["--dump", str(tmp_path / "file")], 1, b"--dump " + str(tmp_path).encode())]:
        out = rmqctl(ns, "consume", "T", "-g", "g", "-e", *args)
        assert out.returncode == code and says in out.stderr, (args, out.stderr)
        assert b"Traceback" not in out.stderr
    js = rmqctl(ns, "-o", "json", "tail", "T", "--dump", "-")
    assert js.returncode == 2 and b"not -o json" in js.stderr


# --- send: files, length-prefixed, tee ---------------------------------------------------------

def test_send_files_then_length_prefixed_round_trip(node, tmp_path):
    """consume's %R%b output is what send --length-prefixed reads: binary bodies go round
    unchanged (a body holding NUL and newlines too)."""
    ns = node.namesrv
    reports = send_files(ns, "Src", tmp_path, BLOBS)
    assert [r["line"] for r in reports] == list(range(1, len(BLOBS) + 1))
    framed = ok(rmqctl(ns, "-o", "raw", "consume", "Src", "-g", "copy", "--from", "first",
                       "-e", "-f", "%R%b", "--delimiter", "")).stdout
    assert len(framed) == sum(4 + len(b) for b in BLOBS)
    sent = ok(rmqctl(ns, "-o", "ndjson", "send", "Dst", "--length-prefixed", input=framed))
    assert len(sent.stdout.splitlines()) == len(BLOBS)
    ok(rmqctl(ns, "tail", "Dst", "--from", "first:end", "--dump", str(tmp_path / "dst")))
    assert sorted(dumped(tmp_path / "dst").values()) == sorted(BLOBS)
    # An empty framed message is skipped unless --allow-empty, as an empty line is.
    empty = b"\0\0\0\0" + b"\0\0\0\x02hi"
    out = ok(rmqctl(ns, "-o", "ndjson", "send", "Dst", "--length-prefixed", input=empty))
    assert [json.loads(x)["line"] for x in out.stdout.splitlines()] == [2]


def test_length_prefixed_bad_input(node):
    ns = node.namesrv
    cut = b"\0\0\0\x03one" + b"\0\0\0\x05tw"
    out = rmqctl(ns, "-o", "ndjson", "send", "Cut", "--length-prefixed", input=cut)
    assert out.returncode == 2 and b"stdin ends inside message 2" in out.stderr
    assert [json.loads(x)["line"] for x in out.stdout.splitlines()] == [1]  # 1 is sent
    assert b"sent 1, last line 1" in out.stderr
    text = rmqctl(ns, "send", "Cut", "--length-prefixed", input=b"hello\n")
    assert text.returncode == 2 and b"message 1 says it is 1751477356 bytes" in text.stderr
    for args in (["--whole"], ["--delimiter", ","]):
        both = rmqctl(ns, "send", "Cut", "--length-prefixed", *args, input=b"x")
        assert both.returncode == 2 and b"two ways to split stdin" in both.stderr


def test_send_file_misuse(node, tmp_path):
    ns = node.namesrv
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "a").write_bytes(b"a")
    missing = rmqctl(ns, "send", "F", "--file", str(tmp_path / "nope"))
    assert missing.returncode == 2 and b"does not exist" in missing.stderr
    with_body = rmqctl(ns, "send", "F", "body", "--file", str(tmp_path / "a"))
    assert with_body.returncode == 2 and b"no BODY with it" in with_body.stderr
    whole = rmqctl(ns, "send", "F", "--whole", "--file", str(tmp_path / "a"))
    assert whole.returncode == 2 and b"no --whole with it" in whole.stderr
    empty = rmqctl(ns, "-o", "ndjson", "send", "F", "--file", str(tmp_path / "a"),
                   "--file", str(tmp_path / "empty"))
    assert empty.returncode == 2 and b"is empty" in empty.stderr
    assert len(empty.stdout.splitlines()) == 1  # the file before it is sent
    # --json-input reads each file as one JSON message.
    (tmp_path / "m.json").write_text('{"body": "from json", "tags": "J"}')
    ok(rmqctl(ns, "send", "F", "--json-input", "--file", str(tmp_path / "m.json")))
    out = ok(rmqctl(ns, "tail", "F", "--from", "first:end", "--tags", "J", "-f", "%T %b"))
    assert out.stdout == b"J from json\n"


def test_tee_echoes_what_was_sent(node):
    ns = node.namesrv
    out = ok(rmqctl(ns, "-o", "ndjson", "send", "Tee", "--tee", input=b"a\nb\n\nc\n"))
    assert out.stdout == b"a\nb\nc\n"  # the empty line is not sent, so not echoed
    reports = [json.loads(x) for x in out.stderr.splitlines()]
    assert [r["line"] for r in reports] == [1, 2, 4]
    quiet = ok(rmqctl(ns, "send", "Tee", "--tee", "-q", "--delimiter", "\\0",
                      input=b"x\0y\0"))
    assert quiet.stdout == b"x\0y\0" and b"sent" in quiet.stderr
    framed = b"\0\0\0\x01\xff\0\0\0\x02\x00\n"
    out = ok(rmqctl(ns, "send", "Tee", "--tee", "--length-prefixed", "--mode", "async",
                    input=framed))
    assert sorted([out.stdout[:5], out.stdout[5:]]) == sorted([framed[:5], framed[5:]])
    body = ok(rmqctl(ns, "send", "Tee", "--tee", "one"))
    assert body.stdout == b"one\n"
    # In the middle of a pipe: what comes out is what went in, and it is all stored.
    left = subprocess.Popen([sys.executable, "-m", "rmqctl.cli", "-n", ns, "send", "Mid",
                             "--tee", "-q"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    left.stdin.write(b"".join(b"%d\n" % i for i in range(100)))  # type: ignore[union-attr]
    left.stdin.close()  # type: ignore[union-attr]
    right = subprocess.run(["wc", "-l"], stdin=left.stdout, capture_output=True, timeout=120)
    assert left.wait(timeout=120) == 0 and right.stdout.split() == [b"100"]
    stored = ok(rmqctl(ns, "-o", "raw", "tail", "Mid", "--from", "first:end"))
    assert sorted(int(x) for x in stored.stdout.split()) == list(range(100))

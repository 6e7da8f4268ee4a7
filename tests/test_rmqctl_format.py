"""rmqctl's output against a real node: format strings over every message field, raw bodies
byte for byte, CSV, typed JSON, colour and human times in tables."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import pty
import re
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from rmqctl.render import MESSAGE_COLUMNS

ANSI = re.compile(rb"\x1b\[[0-9;]*m")
LOCAL_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d")
# Bodies a text tool would mangle: NUL inside, bytes that are not UTF-8, CSV's specials.
BINARY = [b"plain", b"nul\x00inside\x00", b"\xff\xfe not utf-8 \x80", b'a,"b"\r\nc', b"\x00"]


def rmqctl(ns: str, *args: str, input: bytes | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """rmqctl as scripts run it: bytes in, bytes out."""
    return subprocess.run([sys.executable, "-m", "rmqctl.cli", "-n", ns, *args],
                          capture_output=True, timeout=120, input=input,
                          env={**os.environ, **(env or {})})


def ok(out: subprocess.CompletedProcess) -> bytes:
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout


@pytest.fixture
def node(start_node):
    return start_node("--namesrv-port", "0", "--listen-port", "0")


def send_binary(ns: str, topic: str, bodies: list[bytes]) -> None:
    """Each body as one whole message, all to one queue (the same sharding key), in order."""
    for body in bodies:
        ok(rmqctl(ns, "send", topic, "--whole", "--sharding-key", "one", "--quiet",
                  input=body))


def test_format_tokens_show_every_field(node):
    ns = node.namesrv
    [sent] = json.loads(ok(rmqctl(ns, "-o", "json", "send", "Fmt", "hello \u00e9", "--tags",
                                  "TagA", "--keys", "k1 k2", "-p", "origin=cli",
                                  "-p", "n=1")))
    row = json.loads(ok(rmqctl(ns, "-o", "ndjson", "consume", "Fmt", "-g", "Row", "--from",
                               "first", "-e")))
    fields = ["%t", "%q", "%o", "%O", "%i", "%I", "%k", "%T", "%b", "%B", "%s", "%d", "%h",
              "%H", "%r", "%f", "%F", "%S", "%p{origin}", "%p{absent}", "%P"]
    out = ok(rmqctl(ns, "consume", "Fmt", "-g", "F", "--from", "first", "-e", "--format",
                    "|".join(fields) + "|%%|\\t|\\x41\\n"))
    body = "hello \u00e9".encode()
    assert out.decode().split("|") == [
        "Fmt", str(row["queueId"]), str(row["queueOffset"]), str(row["commitLogOffset"]),
        sent["msgId"], sent["offsetMsgId"], "k1 k2", "TagA", "hello \u00e9", str(len(body)),
        str(row["storeTimestamp"]), str(row["bornTimestamp"]), row["bornHost"],
        row["storeHost"], "0", str(row["sysFlag"]), "0", str(row["storeSize"]), "cli", "",
        ",".join(f"{k}={v}" for k, v in row["properties"].items()), "%", "\t", "A\n"]

    store = row["storeTimestamp"]
    utc = datetime.fromtimestamp(store / 1000, timezone.utc)
    out = ok(rmqctl(ns, "consume", "Fmt", "-g", "F2", "--from", "first", "-e", "--format",
                    "%b{hex} %b{base64} %t{hex} %O{hex} %s{unix}|%s{iso}|%s{strftime[%F %T]}|"
                    "%d{strftime[[%Y]]}|%s{local}|%P{json}", env={"TZ": "UTC"}))
    hex_body, b64, topic_hex, offset_hex, rest = out.decode().split(" ", 4)
    assert bytes.fromhex(hex_body) == body and base64.b64decode(b64) == body
    assert bytes.fromhex(topic_hex) == b"Fmt" and int(offset_hex, 16) == row["commitLogOffset"]
    unix, iso, stamp, born_year, local, props = rest.rstrip("\n").split("|")
    assert unix == str(store // 1000)
    assert iso == utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{store % 1000:03d}Z"
    assert stamp == utc.strftime("%Y-%m-%d %H:%M:%S")
    assert born_year == f"[{datetime.fromtimestamp(row['bornTimestamp'] / 1000).year}]"
    assert LOCAL_ISO.fullmatch(local) and local.endswith("+00:00")
    assert json.loads(props) == row["properties"]


def test_unknown_tokens_warn_once_and_print_as_they_are(node):
    ns = node.namesrv
    ok(rmqctl(ns, "send", "Unknown", input=b"a\nb\nc\n"))
    out = rmqctl(ns, "consume", "Unknown", "-g", "U", "--from", "first", "-e", "--format",
                 "%z %b 100% %y")
    assert sorted(ok(out).decode().splitlines()) == [f"%z {b} 100% %y" for b in "abc"]
    assert out.stderr.decode().splitlines() == [
        "rmqctl: --format: unknown %z, %y printed as is (see --help)"]


def test_format_misuse_is_one_line_and_exit_2(node):
    ns = node.namesrv
    for fmt, says in [("%b{bogus}", "%b does not take {bogus}"), ("%s{hex}", "%s does not"),
                      ("%p", "%p needs a property name"), ("%b{hex", "no closing brace")]:
        out = rmqctl(ns, "consume", "Any", "-g", "M", "-e", "--format", fmt)
        assert out.returncode == 2 and says in out.stderr.decode(), (fmt, out.stderr)
        assert b"Traceback" not in out.stderr
    out = rmqctl(ns, "-o", "json", "consume", "Any", "-g", "M", "-e", "--format", "%b")
    assert out.returncode == 2 and b"prints every field" in out.stderr


def test_raw_bodies_byte_for_byte_with_a_nul_delimiter(node):
    ns = node.namesrv
    send_binary(ns, "Blobs", BINARY)
    out = ok(rmqctl(ns, "-o", "raw", "consume", "Blobs", "-g", "R", "--from", "first", "-e",
                    "--delimiter", "\\0"))
    assert out == b"".join(body + b"\0" for body in BINARY)
    # A format in raw output: %b is the stored bytes; here length-prefixed framing.
    out = ok(rmqctl(ns, "-o", "raw", "consume", "Blobs", "-g", "R2", "--from", "first", "-e",
                    "--format", "%B:%b", "--delimiter", ""))
    assert out == b"".join(b"%d:%s" % (len(body), body) for body in BINARY)
    # Table output never writes bytes that are not text: auto is base64, escape is readable.
    out = ok(rmqctl(ns, "consume", "Blobs", "-g", "R3", "--from", "first", "-e", "--format",
                    "%b|%b{escape}|%b{base64}"))
    lines = out.decode("utf-8").splitlines()
    assert lines[0] == "plain|plain|cGxhaW4="
    assert lines[2].split("|")[0] == "base64:" + base64.b64encode(BINARY[2]).decode()
    assert lines[2].split("|")[1] == "\\xff\\xfe not utf-8 \\x80"
    assert [base64.b64decode(line.rsplit("|", 1)[1]) for line in lines[:3]] == BINARY[:3]


def test_tail_raw_with_nul_delimiter(node):
    ns = node.namesrv
    ok(rmqctl(ns, "topic", "create", "TailBlobs", "-q", "1"))
    send_binary(ns, "TailBlobs", BINARY[:3])
    proc = subprocess.Popen([sys.executable, "-m", "rmqctl.cli", "-n", ns, "-o", "raw", "tail",
                             "TailBlobs", "-n", "2", "--delimiter", "\\0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        expected = BINARY[1] + b"\0" + BINARY[2] + b"\0"
        assert proc.stdout.read(len(expected)) == expected
    finally:
        proc.terminate()
        proc.wait(30)


def test_csv_parses_back_with_the_csv_module(node):
    ns = node.namesrv
    send_binary(ns, "Csv", BINARY)
    out = ok(rmqctl(ns, "-o", "csv", "consume", "Csv", "-g", "C", "--from", "first", "-e"))
    header, *rows = list(csv.reader(io.StringIO(out.decode(), newline="")))
    assert header == MESSAGE_COLUMNS
    records = [dict(zip(header, r)) for r in rows]
    assert [r["body"] for r in records] == [
        "plain", "nul\x00inside\x00", "base64:" + base64.b64encode(BINARY[2]).decode(),
        'a,"b"\r\nc', "\x00"]
    for r in records:  # nested values as JSON; properties strings, as RocketMQ has them
        assert all(isinstance(v, str) for v in json.loads(r["properties"]).values())
    assert [int(r["queueOffset"]) for r in records] == list(range(len(BINARY)))

    # emit_rows, RowStream and emit_object: a header and rows, quoted as RFC 4180.
    clusters = list(csv.DictReader(io.StringIO(ok(rmqctl(ns, "-o", "csv", "cluster",
                                                          "list")).decode())))
    assert clusters and clusters[0]["brokerId"] == "0" and clusters[0]["addr"] == node.broker
    sent = list(csv.DictReader(io.StringIO(ok(rmqctl(ns, "-o", "csv", "send", "Csv",
                                                     'x,"y"')).decode())))
    assert {"msgId", "queueId", "queueOffset", "status"} <= set(sent[0])
    assert sent[0]["status"] == "SEND_OK" and int(sent[0]["queueOffset"]) >= 0
    got = list(csv.DictReader(io.StringIO(ok(rmqctl(ns, "-o", "csv", "message", "get",
                                                    sent[0]["msgId"])).decode())))
    assert len(got) == 1 and got[0]["body"] == 'x,"y"' and got[0]["msgId"] == sent[0]["msgId"]


def test_json_values_keep_their_types(node):
    ns = node.namesrv
    ok(rmqctl(ns, "topic", "create", "Typed", "-q", "2"))
    [sent] = json.loads(ok(rmqctl(ns, "-o", "json", "send", "Typed", "1", "-p", "n=42")))
    assert isinstance(sent["queueId"], int) and isinstance(sent["queueOffset"], int)
    rows = [json.loads(line) for line in ok(rmqctl(
        ns, "-o", "ndjson", "consume", "Typed", "-g", "J", "--from", "first", "-e")).splitlines()]
    got = json.loads(ok(rmqctl(ns, "-o", "json", "message", "get", sent["msgId"])))
    for row in rows + [got]:
        for name in ("queueId", "queueOffset", "commitLogOffset", "bornTimestamp",
                     "storeTimestamp", "sysFlag", "reconsumeTimes", "storeSize", "bodyCRC"):
            assert type(row[name]) is int, (name, row[name])
        assert row["properties"]["n"] == "42", "properties are strings, as RocketMQ has them"
        assert row["body"] == "1"
    status = json.loads(ok(rmqctl(ns, "-o", "json", "topic", "status", "Typed")))
    for row in status:
        for name in ("queueId", "minOffset", "maxOffset", "lastUpdateTimestamp"):
            assert type(row[name]) is int, (name, row)


def run_on_a_terminal(args: list[str], env: dict[str, str]) -> bytes:
    """rmqctl with its stdout on a pseudo-terminal (what `auto` colour looks for)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "rmqctl.cli", *args], stdout=slave,
                            stderr=subprocess.PIPE, env={**os.environ, **env})
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other end closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(60) == 0, proc.stderr.read()
    return b"".join(chunks)


def test_color_only_on_tables_and_when_wanted(node):
    ns = node.namesrv
    sent = ok(rmqctl(ns, "--color", "always", "send", "Colour", "x"))
    assert sent.startswith(b"\x1b[1m") and b"\x1b[32mSEND_OK\x1b[0m" in sent  # a RowStream
    table = ok(rmqctl(ns, "--color", "always", "topic", "status", "Colour"))
    assert b"\x1b[1mqueueId" in table
    assert ANSI.sub(b"", table).split(b"\n")[0].split() == ok(rmqctl(
        ns, "--color", "never", "topic", "status", "Colour")).split(b"\n")[0].split()
    for fmt in ("json", "ndjson", "csv", "raw"):
        out = ok(rmqctl(ns, "--color", "always", "-o", fmt, "topic", "status", "Colour"))
        assert b"\x1b" not in out, fmt
    msg = ok(rmqctl(ns, "--color", "always", "consume", "Colour", "-g", "C", "--from",
                    "first", "-e"))
    assert b"\x1b" not in msg, "message lines are data: no colour"
    assert b"\x1b" not in ok(rmqctl(ns, "--color", "never", "topic", "status", "Colour"))
    assert b"\x1b" not in ok(rmqctl(ns, "topic", "status", "Colour")), "auto: not a terminal"
    on_tty = run_on_a_terminal(["-n", ns, "topic", "status", "Colour"], {})
    assert b"\x1b[1mqueueId" in on_tty
    env = {"NO_COLOR": "1"}
    assert b"\x1b" not in run_on_a_terminal(["-n", ns, "topic", "status", "Colour"], env)
    assert b"\x1b[1m" in run_on_a_terminal(["-n", ns, "--color", "always", "topic", "status",
                                            "Colour"], env)


def test_tables_show_epoch_milliseconds_as_local_time(node):
    ns = node.namesrv
    [sent] = json.loads(ok(rmqctl(ns, "-o", "json", "send", "Times", "x")))
    table = ok(rmqctl(ns, "message", "get", sent["msgId"])).decode()
    stamps = dict(line.split(None, 1) for line in table.splitlines()
                  if line.split(None, 1)[0] in ("storeTimestamp", "bornTimestamp"))
    assert all(LOCAL_ISO.fullmatch(v.strip()) for v in stamps.values()), stamps
    row = json.loads(ok(rmqctl(ns, "-o", "json", "message", "get", sent["msgId"])))
    store = row["storeTimestamp"]
    assert stamps["storeTimestamp"].strip() == datetime.fromtimestamp(
        store / 1000).astimezone().isoformat(timespec="milliseconds")
    status = ok(rmqctl(ns, "topic", "status", "Times")).decode()
    assert LOCAL_ISO.search(status), status
    raw = ok(rmqctl(ns, "-o", "csv", "message", "get", sent["msgId"])).decode()
    assert str(store) in raw, "only tables show times"

"""rmqctl send's input modes against a real node: --parse line formats, JSON lines replayed
from consume's output, templates with --count, --rate, --queue, and the delivery reports."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import uuid

import pytest

import test_rmqctl_messages

node = test_rmqctl_messages.node  # a fresh node per test: namesrv and broker on free ports


def run(ns: str, *args: str, input: bytes | str = b"") -> subprocess.CompletedProcess:
    data = input.encode() if isinstance(input, str) else input
    out = subprocess.run([sys.executable, "-m", "rmqctl.cli", "-n", ns, *args],
                         capture_output=True, timeout=120, input=data)
    out.stdout, out.stderr = out.stdout.decode(), out.stderr.decode()
    return out


def rows(out: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in out.stdout.splitlines()]


def consumed(ns: str, topic: str, *extra: str) -> list[dict]:
    out = run(ns, "-o", "ndjson", "consume", topic, "-g", f"check-{uuid.uuid4().hex[:8]}",
              "--from", "first", "-e", *extra)
    assert out.returncode == 0, out.stderr
    return rows(out)


def user_properties(row: dict) -> dict:
    return {k: v for k, v in row["properties"].items() if k.islower()}


REPORT_FIELDS = {"line", "msgId", "offsetMsgId", "topic", "brokerName", "queueId",
                 "queueOffset", "status"}


def test_parse_splits_each_line_into_keys_tag_properties_and_body(node):
    ns = node.namesrv
    lines = ("order-1 order-x\tTagA\tweb\thello\tworld\n"   # the body keeps its tab
             "order-2\t\t\tplain\n"                          # no tag, no property: defaults
             "\n"                                            # skipped
             "order-3\tTagB\tapp\t\u00e9t\u00e9\n")
    out = run(ns, "-o", "ndjson", "send", "Parsed", "--parse", "key\\ttag\\tp:origin\\tbody",
              "--tags", "Default", "-p", "team=core", input=lines)
    assert out.returncode == 0, out.stderr
    reports = rows(out)
    assert [r["line"] for r in reports] == [1, 2, 4]
    assert all(set(r) == REPORT_FIELDS and r["status"] == "SEND_OK" for r in reports)
    got = {r["msgId"]: r for r in consumed(ns, "Parsed")}
    first, second, third = (got[r["msgId"]] for r in reports)
    assert (first["body"], first["keys"], first["tags"]) == ("hello\tworld", "order-1 order-x",
                                                             "TagA")
    assert user_properties(first) == {"origin": "web", "team": "core"}
    assert (second["body"], second["keys"], second["tags"]) == ("plain", "order-2", "Default")
    assert user_properties(second) == {"team": "core"}
    assert (third["body"], third["tags"], user_properties(third)["origin"]) == (
        "\u00e9t\u00e9", "TagB", "app")
    # The key index finds them: the keys went in as keys, not as part of the body.
    found = run(ns, "-o", "json", "message", "query", "-t", "Parsed", "-k", "order-x")
    assert found.returncode == 0, found.stderr
    assert [m["body"] for m in json.loads(found.stdout)] == ["hello\tworld"]

    csv = run(ns, "-o", "ndjson", "send", "Parsed2", "--parse", "tag,key,body",
              "--mode", "async", input="T1,k1,a,b\nT2,k2,c\n")
    assert csv.returncode == 0, csv.stderr
    back = sorted((r["tags"], r["keys"], r["body"]) for r in consumed(ns, "Parsed2"))
    assert back == [("T1", "k1", "a,b"), ("T2", "k2", "c")]


def test_a_line_that_does_not_match_stops_with_its_number_after_the_lines_before(node):
    ns = node.namesrv
    lines = "k1\tone\nk2\ttwo\nno tab here\nk4\tfour\n"
    for mode in ("sync", "async"):
        out = run(ns, "-o", "ndjson", "send", "Strict", "--parse", "key\\tbody",
                  "--mode", mode, input=lines)
        assert out.returncode == 2, out.stderr
        assert out.stderr.splitlines() == [
            "rmqctl: sent 2, last line 2",
            "rmqctl: line 3 does not match --parse 'key\\tbody': no '\\t' after its key field"]
        assert sorted(r["line"] for r in rows(out)) == [1, 2]
    bodies = sorted(r["body"] for r in consumed(ns, "Strict"))
    assert bodies == ["one", "one", "two", "two"], "line 4 was never sent"
    as_json = run(ns, "-o", "json", "send", "Strict", "--parse", "key\\tbody",
                  input="k\tv\nbad\n")
    assert as_json.returncode == 2
    assert [r["line"] for r in json.loads(as_json.stdout)] == [1], "the reports so far"

    batched = run(ns, "send", "Strict", "--parse", "<key>body", "--batch", "10",
                  input="<a>x\n<b>y\nc>z\n")
    assert batched.returncode == 2
    assert batched.stderr.splitlines() == [
        "rmqctl: sent 2, last line 2",
        "rmqctl: line 3 does not match --parse '<key>body': it does not start with '<'"]

    binary_key = run(ns, "send", "Strict", "--parse", "key,body", input=b"\xff\xfe,x\n")
    assert binary_key.returncode == 2
    assert binary_key.stderr.splitlines()[-1] == "rmqctl: line 1: the key field is not UTF-8 text"
    separator = run(ns, "send", "Strict", "--parse", "p:a,body", input=b"x\x01y,body\n")
    assert separator.returncode == 2
    assert separator.stderr.splitlines()[-1].startswith("rmqctl: line 1: property 'a': ")
    for bad, why in [("key\\tkey\\tbody", "key appears twice"), ("keybody", "need a separator"),
                     ("key,tag", "no body field")]:
        out = run(ns, "send", "Strict", "x", "--parse", bad)
        assert out.returncode == 2 and why in out.stderr, out.stderr


def test_json_lines_replay_consume_output_with_bodies_keys_tags_and_properties(node):
    ns = node.namesrv
    binary = bytes(range(256))
    source = [
        {"body": "caf\u00e9 \u2603", "keys": "k1 k2", "tags": "TagA",
         "properties": {"origin": "json", "n": "1"}},
        {"bodyBase64": base64.b64encode(binary).decode(), "keys": ["bin-1"], "tags": "Bin"},
        {"body": "no tag", "keys": None, "tags": None, "properties": None, "delayLevel": 0},
    ]
    sent = run(ns, "-o", "ndjson", "send", "Source", "--json-input",
               input="".join(json.dumps(m) + "\n" for m in source))
    assert sent.returncode == 0, sent.stderr
    assert [r["line"] for r in rows(sent)] == [1, 2, 3]
    original = consumed(ns, "Source")
    assert len(original) == 3
    # consume's output, as it is, into send
    dump = run(ns, "-o", "ndjson", "consume", "Source", "-g", "copier", "--from", "first", "-e")
    replay = run(ns, "-o", "ndjson", "send", "Copy", "--json-input", input=dump.stdout)
    assert replay.returncode == 0, replay.stderr
    copies = consumed(ns, "Copy")

    def view(row: dict) -> tuple:
        return (row["body"], row["bodyCRC"], row["keys"], row["tags"], user_properties(row))
    assert sorted(map(view, copies), key=str) == sorted(map(view, original), key=str)
    by_tag = {row["tags"]: row for row in copies}
    assert base64.b64decode(by_tag["Bin"]["body"].removeprefix("base64:")) == binary
    assert user_properties(by_tag["TagA"]) == {"origin": "json", "n": "1"}
    assert {r["msgId"] for r in copies}.isdisjoint(r["msgId"] for r in original), \
        "a replayed message is a new message"


def test_json_lines_that_do_not_fit_name_their_line(node):
    ns = node.namesrv
    good = '{"body": "ok"}\n'
    cases = [
        ('{"body": "x", "bodyy": 1}', "line 2: unknown field 'bodyy' (fields: body, "
         "bodyBase64, keys, tags, properties, delayLevel)"),
        ('{"body": "x", "keys": 5}', "line 2: keys must be text or a list of text, not 5"),
        ('{"body": "x", "delayLevel": 19}', "line 2: delayLevel must be 0-18, not 19"),
        ('{"body": "x", "delayLevel": true}', "line 2: delayLevel must be a number 0-18, "
         "not true"),
        ('{"body": "x", "properties": {"a": 1}}', "line 2: property values must be text"),
        ('{"keys": "k"}', "line 2: give one of body and bodyBase64"),
        ('{"bodyBase64": "***"}', "line 2: bodyBase64 is not base64"),
        ('["body"]', "line 2: a JSON list, not an object"),
        ('{"body": ', "line 2: not JSON"),
        ('{"body": ""}', "line 2: the body is empty"),
    ]
    for line, message in cases:
        out = run(ns, "send", "JsonBad", "--json-input", input=good + line + "\n" + good)
        assert out.returncode == 2, (line, out.stderr)
        progress, error = out.stderr.splitlines()
        assert progress == "rmqctl: sent 1, last line 1"
        assert error.startswith("rmqctl: " + message), (line, error)


def test_templates_with_count_send_numbered_test_data(node):
    ns = node.namesrv
    before = int(time.time() * 1000)
    out = run(ns, "-o", "ndjson", "send", "Generated", "n={{seq}} id={{ uuid }} t={{now}} "
              "r={{random 5 7}} at={{now_iso}}", "--template", "-c", "5", "--keys",
              "key-{{seq}} all", "--tags", "T{{seq}}", "-p", "stamp={{now}}")
    after = int(time.time() * 1000)
    assert out.returncode == 0, out.stderr
    assert [r["line"] for r in rows(out)] == [1, 2, 3, 4, 5]
    got = sorted(consumed(ns, "Generated"), key=lambda r: r["tags"])
    assert [r["tags"] for r in got] == ["T1", "T2", "T3", "T4", "T5"]
    ids = set()
    for i, row in enumerate(got, 1):
        fields = dict(part.split("=", 1) for part in row["body"].split())
        assert fields["n"] == str(i) and row["keys"] == f"key-{i} all"
        ids.add(str(uuid.UUID(fields["id"])))
        assert before <= int(fields["t"]) <= after and 5 <= int(fields["r"]) <= 7
        assert fields["at"].endswith("Z") and fields["at"][:4] == time.strftime("%Y")
        assert before <= int(row["properties"]["stamp"]) <= after
    assert len(ids) == 5
    plain = run(ns, "send", "Generated", "{{seq}}", "-c", "2", "--quiet", "-o", "json")
    assert json.loads(plain.stdout)["sent"] == 2  # without --template: the text as it is
    assert {r["body"] for r in consumed(ns, "Generated")} >= {"{{seq}}"}
    for bad in ["{{sequence}}", "{{random 9 1}}", "{{random a b}}"]:
        out = run(ns, "send", "Generated", bad, "--template")
        assert out.returncode == 2 and "unknown placeholder" in out.stderr, out.stderr
    out = run(ns, "send", "Generated", "x", "--template", "--keys", "{{nope}}")
    assert out.returncode == 2 and "--keys: unknown placeholder {{nope}}" in out.stderr
    head = run(ns, "-o", "ndjson", "send", "Generated", "-c", "2", input="a\nb\nc\n")
    assert [r["line"] for r in rows(head)] == [1, 2], "with stdin, -c stops after N"


@pytest.mark.parametrize("how, spread", [((), 0.3), (("--mode", "async"), 0.3),
                                          (("--batch", "5"), 0.2)])
def test_rate_spaces_the_sends(node, how, spread):
    """20 messages at 50 a second span about 0.38 s of born times (batches of 5: 0.3 s);
    without --rate they go out as fast as the node takes them."""
    ns = node.namesrv
    out = run(ns, "send", "Paced", "--rate", "50", "--quiet", *how,
              input="".join(f"m{i}\n" for i in range(20)))
    assert out.returncode == 0, out.stderr
    born = [r["bornTimestamp"] for r in consumed(ns, "Paced")]
    assert len(born) == 20
    assert (max(born) - min(born)) / 1000 >= spread


def test_queue_sends_to_that_queue(node):
    ns = node.namesrv
    assert run(ns, "topic", "create", "Aimed", "-q", "8").returncode == 0
    out = run(ns, "-o", "ndjson", "send", "Aimed", "--queue", "5",
              input="".join(f"m{i}\n" for i in range(10)))
    assert out.returncode == 0, out.stderr
    reports = rows(out)
    assert {r["queueId"] for r in reports} == {5}
    assert [r["queueOffset"] for r in reports] == list(range(10))
    broker = reports[0]["brokerName"]
    assert {r["queueId"] for r in consumed(ns, "Aimed")} == {5}
    named = run(ns, "-o", "json", "send", "Aimed", "x", "--queue", "2", "--broker", broker)
    assert named.returncode == 0 and json.loads(named.stdout)[0]["queueId"] == 2
    missing = run(ns, "send", "Aimed", "x", "--queue", "8")
    assert missing.returncode == 2
    assert missing.stderr == f"rmqctl: Aimed has no writable queue 8 (its queues: {broker}: 0-7)\n"
    elsewhere = run(ns, "send", "Aimed", "x", "--queue", "1", "--broker", "nobody")
    assert elsewhere.returncode == 2 and "no writable queue 1 on nobody" in elsewhere.stderr
    both = run(ns, "send", "Aimed", "x", "--queue", "1", "--sharding-key", "k")
    assert both.returncode == 2


def test_async_reports_a_failed_message_with_its_error_and_stops(node):
    """The broker refuses a message whose properties pass 32767 bytes: its report says so,
    the others' reports stand, and the send ends with the refusal (exit 1)."""
    ns = node.namesrv
    huge = json.dumps({"body": "too big", "properties": {"blob": "x" * 40000}})
    lines = "".join(json.dumps({"body": f"m{i}"}) + "\n" for i in range(3)) + huge + "\n"
    out = run(ns, "-o", "ndjson", "send", "Refused", "--json-input", "--mode", "async",
              input=lines)
    assert out.returncode == 1, out.stderr
    reports = {r["line"]: r for r in rows(out)}
    assert reports[4]["status"] == "FAILED" and reports[4]["error"].startswith("MESSAGE_ILLEGAL")
    assert set(reports[4]) == {"line", "topic", "status", "error"}
    assert all(reports[n]["status"] == "SEND_OK" for n in (1, 2, 3))
    assert out.stderr.splitlines()[0] == "rmqctl: sent 3, last line 3"
    assert out.stderr.splitlines()[1].startswith("rmqctl: MESSAGE_ILLEGAL")
    assert sorted(r["body"] for r in consumed(ns, "Refused")) == ["m0", "m1", "m2"]

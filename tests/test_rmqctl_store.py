"""rmqctl's offline store commands on the real 4.9.8 store, checked against its manifest."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys


def rmqctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rmqctl.cli", *args], capture_output=True,
                          text=True, timeout=60)


def body_bytes(text: str) -> bytes:
    if text.startswith("base64:"):
        return base64.b64decode(text[7:])
    return text.encode("utf-8")


def test_inspect_commitlog_agrees_with_the_manifest(java_store_pristine, manifest):
    out = rmqctl("-o", "ndjson", "inspect-commitlog", str(java_store_pristine))
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == len(manifest)
    for row, m in zip(rows, manifest):
        assert (row["topic"], row["queueId"], row["queueOffset"], row["commitLogOffset"]) == \
            (m["topic"], m["queueId"], m["queueOffset"], m["commitLogOffset"])
        assert row["keys"] == (m["keys"] or "") and row["tags"] == m["tags"]
        assert row["properties"] == m["properties"]
        body = body_bytes(row["body"])  # compressed bodies come out inflated
        assert (len(body), hashlib.sha256(body).hexdigest()) == (m["bodyLength"],
                                                                 m["bodySha256"])
        assert row["storeHost"] == "127.0.0.1:10911"


def test_inspect_filters_and_summary(java_store_pristine, manifest):
    out = rmqctl("-o", "json", "inspect-commitlog", str(java_store_pristine), "-t", "PubOns",
                 "--body", "none")
    rows = json.loads(out.stdout)
    assert len(rows) == sum(1 for m in manifest if m["topic"] == "PubOns")
    assert "body" not in rows[0]
    window = rmqctl("-o", "json", "inspect-commitlog",
                    str(java_store_pristine / "commitlog" / "00000000000001048576"),
                    "--from-offset", "1048576", "--to-offset", "1100000")
    offsets = [r["commitLogOffset"] for r in json.loads(window.stdout)]
    assert offsets and all(1048576 <= o < 1100000 for o in offsets)
    summary = json.loads(rmqctl("-o", "json", "inspect-commitlog", str(java_store_pristine),
                                "--summary").stdout)
    counts = {(r["topic"], r["queueId"]): r["messages"] for r in summary}
    assert counts[("PubA", 0)] == sum(1 for m in manifest
                                      if m["topic"] == "PubA" and m["queueId"] == 0)
    assert sum(counts.values()) == len(manifest)


def test_verify_names_the_offset_of_a_flipped_byte(java_store, manifest):
    assert rmqctl("inspect-commitlog", str(java_store), "--verify", "--summary").returncode == 0
    victim = manifest[100]
    log = java_store / "commitlog" / "00000000000000000000"
    data = bytearray(log.read_bytes())
    data[victim["commitLogOffset"] + 88] ^= 0x20  # first body byte
    log.write_bytes(data)
    out = rmqctl("inspect-commitlog", str(java_store), "--verify", "--summary")
    assert out.returncode == 1
    [line] = out.stderr.splitlines()
    assert f"offset {victim['commitLogOffset']}" in line and "CRC" in line
    assert str(log) in line


def test_dump_consumequeue_agrees_and_flags_dangling_entries(java_store, manifest):
    out = rmqctl("-o", "ndjson", "dump-consumequeue", str(java_store), "-t", "PubA", "-q", "2",
                 "--resolve")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    expected = [m for m in manifest if m["topic"] == "PubA" and m["queueId"] == 2]
    assert [(r["queueOffset"], r["commitLogOffset"]) for r in rows] == \
        [(m["queueOffset"], m["commitLogOffset"]) for m in expected]
    assert all(r["message"]["queueOffset"] == r["queueOffset"] for r in rows)
    assert "problem" not in rows[0]
    # Point entry 3 somewhere no message starts.
    cq = java_store / "consumequeue" / "PubA" / "2" / "00000000000000000000"
    data = bytearray(cq.read_bytes())
    data[3 * 20:3 * 20 + 8] = (rows[3]["commitLogOffset"] + 7).to_bytes(8, "big")
    cq.write_bytes(data)
    out = rmqctl("-o", "json", "dump-consumequeue", str(java_store), "-t", "PubA", "-q", "2")
    assert out.returncode == 1 and "1 entries point nowhere" in out.stderr
    flagged = [r for r in json.loads(out.stdout) if "problem" in r]
    assert [r["queueOffset"] for r in flagged] == [3]


def test_offline_misuse_is_one_line(tmp_path):
    out = rmqctl("inspect-commitlog", str(tmp_path))
    assert out.returncode == 2 and "holds no CommitLog files" in out.stderr
    out = rmqctl("dump-consumequeue", str(tmp_path), "-t", "T", "-q", "0")
    assert out.returncode == 1 and out.stderr == f"rmqctl: no consume queue T/0 in {tmp_path}\n"

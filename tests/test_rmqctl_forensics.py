"""Offline forensics (rmqctl store check, store index, inspect-commitlog and dump-consumequeue
past damage) on the real Java 4.9.8 stores and on damaged copies of them; the recovery
forecast checked against a real rmqnode started on the damaged store."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import STORE_FIXTURE

FILE = 1048576  # the fixture's mappedFileSizeCommitLog
JAVA_SIZES = ["-D", f"mappedFileSizeCommitLog={FILE}", "-D", "mappedFileSizeConsumeQueue=6000",
              "-D", "maxHashSlotNum=5000", "-D", "maxIndexNum=20000"]


def rmqctl(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rmqctl.cli", *args], capture_output=True,
                          text=True, timeout=120, **kw)


def check(store: Path) -> tuple[int, dict]:
    out = rmqctl("-o", "json", "store", "check", str(store))
    assert out.stderr == ""
    return out.returncode, json.loads(out.stdout)


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns,
                                       hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def log_file(store: Path, offset: int) -> Path:
    return store / "commitlog" / f"{offset - offset % FILE:020d}"


def store_size(store: Path, offset: int) -> int:
    """The stored size of the record at `offset` (the manifest has it only for served ones)."""
    with open(log_file(store, offset), "rb") as f:
        f.seek(offset % FILE)
        return int.from_bytes(f.read(4), "big")


def patch(store: Path, offset: int, at: int, data: bytes) -> None:
    """Overwrite bytes at `at` within the record at global `offset`."""
    path = log_file(store, offset)
    with open(path, "r+b") as f:
        f.seek(offset % FILE + at)
        f.write(data)


def test_clean_java_store_checks_clean_and_nothing_is_touched(java_store_pristine, manifest):
    before = snapshot(java_store_pristine)
    code, report = check(java_store_pristine)
    assert code == 0, report
    assert report["commitlog"] == {"files": 3, "fileSize": FILE, "records": len(manifest),
                                   "recordsOk": len(manifest), "recordsBad": 0}
    assert report["consumeQueues"]["entries"] == report["consumeQueues"]["entriesOk"] == \
        len(manifest)
    assert report["problems"] == report["damage"] == report["badEntries"] == []
    # The broker left its abort file: a crash recovery that cuts nothing.
    assert report["cleanShutdown"] is False and report["lockHolder"] is None
    last = manifest[-1]
    assert report["recovery"] == {"mode": "crash", "truncate": [], "queueEntriesDropped": [],
                                  "commitlogEnd": last["commitLogOffset"] +
                                  store_size(java_store_pristine, last["commitLogOffset"])}
    table = rmqctl("store", "check", str(java_store_pristine))
    assert table.returncode == 0
    assert table.stdout.splitlines()[-1] == f"{len(manifest)} records OK, 0 bad"
    assert "not clean (abort file present)" in table.stdout
    # Every offline command opens files read-only: no byte, mtime or file changes.
    for args in (["inspect-commitlog", "--verify", "--summary"],
                 ["dump-consumequeue", "-t", "PubA", "--resolve"],
                 ["store", "index", "--key", "ka7"]):
        out = rmqctl(*args[:1 + (args[0] == "store")], str(java_store_pristine),
                     *args[1 + (args[0] == "store"):])
        assert out.returncode == 0, out.stderr
    assert snapshot(java_store_pristine) == before


def test_killed_mid_load_store_keeps_every_acknowledged_message(java_crashed_pristine):
    acked = set((STORE_FIXTURE / "store-crashed-acked.txt").read_text().split())
    code, report = check(java_crashed_pristine)
    assert code == 0, report
    assert report["cleanShutdown"] is False and report["recovery"]["truncate"] == []
    out = rmqctl("-o", "ndjson", "inspect-commitlog", str(java_crashed_pristine), "-t", "PubA")
    bodies = {json.loads(line)["body"] for line in out.stdout.splitlines()}
    assert acked <= bodies
    assert report["commitlog"]["recordsOk"] == report["commitlog"]["records"] > len(acked)


def test_a_flipped_body_byte_is_a_crc_mismatch_and_the_crash_recovery_cuts_it(java_store,
                                                                             manifest):
    early, last = manifest[100], manifest[-1]
    size = store_size(java_store, last["commitLogOffset"])
    for victim in (early, last):
        patch(java_store, victim["commitLogOffset"], 88, bytes([0xFF]))  # first body byte
    code, report = check(java_store)
    assert code == 1
    assert [(d["offset"], d["kind"]) for d in report["damage"]] == \
        [(early["commitLogOffset"], "crc"), (last["commitLogOffset"], "crc")]
    assert report["commitlog"]["recordsBad"] == 2
    assert sorted(e["queueOffset"] for e in report["badEntries"]) == \
        sorted([early["queueOffset"], last["queueOffset"]])
    assert all("CRC" in e["problem"] for e in report["badEntries"])
    # Only the tail is in the crash recovery's reach (it starts at the checkpoint's file).
    assert report["recovery"]["truncate"] == [
        {"file": str(log_file(java_store, last["commitLogOffset"])), "action": "cut",
         "offset": last["commitLogOffset"], "bytes": size, "records": 1}]
    table = rmqctl("store", "check", str(java_store))
    assert table.stdout.splitlines()[-1] == f"{len(manifest) - 2} records OK, 2 bad"


def test_a_bad_magic_mid_file_is_passed_and_everything_after_it_would_be_cut(java_store,
                                                                            manifest):
    victim = [m for m in manifest if m["commitLogOffset"] > FILE][200]
    at = victim["commitLogOffset"]
    patch(java_store, at, 4, b"\x01\x02\x03\x04")
    out = rmqctl("-o", "json", "inspect-commitlog", str(java_store), "--summary")
    assert out.returncode == 1
    counts = sum(r["messages"] for r in json.loads(out.stdout))
    assert counts == len(manifest) - 1  # the walk went on past it
    lines = out.stderr.splitlines()
    assert f"{log_file(java_store, at)} offset {at}: bad magic code 0x01020304" in lines[0]
    assert "the summary is partial: 1 damaged regions" in lines[1]
    code, report = check(java_store)
    assert code == 1
    [cut] = report["recovery"]["truncate"]
    after = [m for m in manifest if m["commitLogOffset"] >= at]
    assert (cut["offset"], cut["records"], cut["action"]) == (at, len(after), "cut")
    assert cut["bytes"] == after[-1]["commitLogOffset"] + \
        store_size(java_store, after[-1]["commitLogOffset"]) - at
    dropped = {(q["topic"], q["queueId"]): q["dropped"]
               for q in report["recovery"]["queueEntriesDropped"]}
    lost: dict = {}
    for m in after:
        lost[(m["topic"], m["queueId"])] = lost.get((m["topic"], m["queueId"]), 0) + 1
    assert dropped == lost


def test_a_torn_tail_and_a_truncated_file(java_store, manifest):
    last = manifest[-1]
    size = store_size(java_store, last["commitLogOffset"])
    patch(java_store, last["commitLogOffset"], size // 2, bytes(size - size // 2))
    code, report = check(java_store)
    assert code == 1
    assert report["damage"][0]["offset"] == last["commitLogOffset"]
    assert "corrupt record" in report["badEntries"][0]["problem"]
    [cut] = report["recovery"]["truncate"]
    assert (cut["offset"], cut["records"]) == (last["commitLogOffset"], 1)
    # A file cut short on disk: the node would refuse it, and the walk says where it ends.
    path = log_file(java_store, last["commitLogOffset"])
    os.truncate(path, last["commitLogOffset"] % FILE + 50)
    code, report = check(java_store)
    assert code == 1
    assert "would not start" in report["problems"][0] and "size" in report["recovery"]["refused"]
    kinds = {(d["kind"], d["offset"]) for d in report["damage"]}
    assert ("layout", FILE) in kinds and ("corrupt", last["commitLogOffset"]) in kinds


def test_a_queue_entry_of_the_wrong_size(java_store, manifest):
    entries = [m for m in manifest if (m["topic"], m["queueId"]) == ("PubA", 2)]
    victim = entries[-1]
    size = store_size(java_store, victim["commitLogOffset"])
    cq = java_store / "consumequeue" / "PubA" / "2" / f"{victim['queueOffset'] // 300 * 6000:020d}"
    with open(cq, "r+b") as f:
        f.seek(victim["queueOffset"] % 300 * 20 + 8)
        f.write((size + 1).to_bytes(4, "big"))
    code, report = check(java_store)
    assert code == 1
    [bad] = report["badEntries"]
    assert (bad["topic"], bad["queueId"], bad["queueOffset"], bad["file"]) == \
        ("PubA", 2, victim["queueOffset"], str(cq))
    assert bad["problem"] == f"size {size + 1} differs from its record's {size}"
    assert report["recovery"]["queueEntriesDropped"] == [
        {"topic": "PubA", "queueId": 2, "entries": len(entries), "kept": len(entries) - 1,
         "dropped": 1}]
    assert report["commitlog"]["recordsBad"] == 0
    # dump-consumequeue without -q walks all four queues and flags the same entry.
    out = rmqctl("-o", "json", "dump-consumequeue", str(java_store), "-t", "PubA")
    assert out.returncode == 1
    rows = json.loads(out.stdout)
    assert len(rows) == sum(1 for m in manifest if m["topic"] == "PubA")
    assert [(r["queueId"], r["queueOffset"]) for r in rows if "problem" in r] == \
        [(2, victim["queueOffset"])]


def test_missing_checkpoint_and_a_held_lock(java_store, manifest):
    (java_store / "checkpoint").unlink()
    code, report = check(java_store)
    assert code == 1 and report["checkpoint"] is None
    assert report["problems"] == ["no checkpoint file: an abnormal recovery would check every "
                                  "CommitLog file"]
    assert report["recovery"]["truncate"] == [] and report["commitlog"]["recordsBad"] == 0
    fd = os.open(java_store / "lock", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        code, report = check(java_store)
        assert report["lockHolder"] == os.getpid()
        assert any(f"process {os.getpid()} holds" in p for p in report["problems"])
    finally:
        os.close(fd)
    assert not (java_store / "checkpoint").exists()  # a check creates nothing


def test_the_forecast_is_what_a_real_node_does(java_crashed, start_node, tmp_path):
    """Without a checkpoint the crash recovery checks every file: a bad magic in the third
    file cuts it there and deletes the fourth. The node started on the store does just that."""
    (java_crashed / "checkpoint").unlink()
    bad = 2 * FILE + 300_000
    rows = rmqctl("-o", "json", "inspect-commitlog", str(log_file(java_crashed, bad)),
                  "--from-offset", str(bad), "--body", "none")
    at = json.loads(rows.stdout)[0]["commitLogOffset"]
    patch(java_crashed, at, 4, b"\0\0\0\1")
    code, report = check(java_crashed)
    assert code == 1
    cuts = report["recovery"]["truncate"]
    assert [(c["action"], Path(c["file"]).name, c["offset"]) for c in cuts] == \
        [("cut", f"{2 * FILE:020d}", at), ("delete", f"{3 * FILE:020d}", 3 * FILE)]
    kept = report["commitlog"]["records"] - sum(c["records"] for c in cuts)
    (tmp_path / "home").mkdir()
    node = start_node("--namesrv-port", "0", "--listen-port", "0", "--store", str(java_crashed),
                      "--no-grpc", "-v", *JAVA_SIZES, home=tmp_path / "home")
    line = node.wait_line(r"recover\.commitlog_end")
    assert re.search(rf"\boffset={at}\b", line) and "after_crash=True" in line
    assert node.stop() == 0
    assert not log_file(java_crashed, 3 * FILE).exists()
    code, after = check(java_crashed)
    assert after["damage"] == [] and after["badEntries"] == []
    assert after["cleanShutdown"] is True
    assert after["commitlog"]["recordsOk"] >= kept  # the node may have stored more since


def test_index_lookup_by_key_message_id_and_time(java_store_pristine, manifest):
    want = [m for m in manifest if m["topic"] == "PubA" and "kb7" in (m["keys"] or "").split()]
    out = rmqctl("-o", "json", "store", "index", str(java_store_pristine), "--key", "kb7",
                 "-t", "PubA", "--body", "none")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["commitLogOffset"] for r in rows] == [m["commitLogOffset"] for m in want]
    one = [m for m in manifest if m["topic"] == "PubA" and "UNIQ_KEY" in m["properties"]][-1]
    out = rmqctl("-o", "json", "store", "index", str(java_store_pristine), "-k",
                 one["properties"]["UNIQ_KEY"])
    assert [r["commitLogOffset"] for r in json.loads(out.stdout)] == [one["commitLogOffset"]]
    stamp = want[0]["storeTimestamp"]
    out = rmqctl("-o", "json", "store", "index", str(java_store_pristine), "-k", "kb7",
                 "-t", "PubA", "--begin", str(stamp), "--end", str(stamp))
    assert [r["commitLogOffset"] for r in json.loads(out.stdout)] == \
        [m["commitLogOffset"] for m in want if m["storeTimestamp"] == stamp]
    out = rmqctl("store", "index", str(java_store_pristine), "-k", "kb7", "-t", "PubA",
                 "--end", str(stamp - 10_000))
    assert out.returncode == 3 and out.stderr.startswith("rmqctl: no message with key kb7")
    out = rmqctl("store", "index", str(java_store_pristine), "-k", "x", "--begin", "yesterday")
    assert out.returncode == 2 and "--begin" in out.stderr


def test_misuse_and_progress_only_on_a_terminal(java_store_pristine, tmp_path):
    out = rmqctl("store", "check", str(tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.splitlines()[-1] == f"Error: {tmp_path} is not a store: it has no " \
                                          "commitlog/ folder"
    (tmp_path / "commitlog").mkdir()
    out = rmqctl("store", "index", str(tmp_path), "-k", "k")
    assert out.returncode == 3 and out.stderr == f"rmqctl: {tmp_path} has no index files\n"
    assert rmqctl("store", "check", str(java_store_pristine)).stderr == ""
    primary, secondary = os.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "rmqctl.cli", "store", "check",
                               str(java_store_pristine)], stdout=subprocess.DEVNULL,
                              stderr=secondary, timeout=120)
        os.close(secondary)
        seen = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(primary)
    assert proc.returncode == 0 and b"checking" in seen

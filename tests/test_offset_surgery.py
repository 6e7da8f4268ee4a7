"""`rmqctl offset reset`'s preview, --dry-run and confirmation (answered through a real
pseudo-terminal), `--to-group`, and `offset export` / `reset --to-file`, live and on a stopped
node's store, over a real node; offsets are read back from the broker or the store."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

from rmqnode.net.codes import RequestCode as RC
from remoting import call
from test_offset_reset import filled
from test_rmqctl_admin_live import js, node  # noqa: F401 - node is a fixture
from test_rmqctl_messages import rmqctl


def commit(node, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commit offsets as a consumer does (UPDATE_CONSUMER_OFFSET)."""
    for queue_id, offset in offsets.items():
        resp = call(node.broker, RC.UPDATE_CONSUMER_OFFSET, {
            "consumerGroup": group, "topic": topic, "queueId": queue_id, "commitOffset": offset})
        assert resp.code == 0, resp.remark


def committed(node, group: str, topic: str) -> dict[int, int]:
    """What the broker holds for the group, queue by queue (never-committed queues left out)."""
    out = {}
    for queue_id in range(8):
        resp = call(node.broker, RC.QUERY_CONSUMER_OFFSET, {
            "consumerGroup": group, "topic": topic, "queueId": queue_id,
            "setZeroIfNotFound": False})
        if resp.code == 0:
            out[queue_id] = int(resp.field("offset"))
    return out


def a_group(node, group: str, topic: str, offsets: dict[int, int]) -> None:
    """A subscription group (a reset moves only known groups) with these offsets."""
    assert rmqctl(node.namesrv, "group", "create", group).returncode == 0
    commit(node, group, topic, offsets)


def on_terminal(ns: str, args: list[str], answer: bytes) -> tuple[int, str, str]:
    """rmqctl with stdin and stdout on a pseudo-terminal: waits for its question, answers,
    and returns the exit code, what the terminal showed and stderr."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "rmqctl.cli", "-n", ns, *args],
                            stdin=slave, stdout=slave, stderr=subprocess.PIPE,
                            env=os.environ | {"NO_COLOR": "1"})  # plain tables to compare
    os.close(slave)
    shown = b""
    answered = False
    deadline = time.monotonic() + 60
    try:
        while True:
            assert time.monotonic() < deadline, f"no end; the terminal showed {shown!r}"
            if not answered and b"[y/N]" in shown:
                os.write(master, answer + b"\n")
                answered = True
            if not select.select([master], [], [], 0.5)[0]:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the process closed the terminal (it ended)
                break
            if not chunk:
                break
            shown += chunk
        code = proc.wait(60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return code, shown.decode().replace("\r\n", "\n"), proc.stderr.read().decode()


def test_preview_shows_before_after_and_lag_and_dry_run_changes_nothing(node):
    ns = node.namesrv
    assert filled(node, "Sur", [5, 3, 4]) == {0: 5, 1: 3, 2: 4}
    a_group(node, "SurG", "Sur", {0: 2, 1: 1})  # queue 2 never committed

    rows = js(rmqctl(ns, "-o", "json", "offset", "reset", "-g", "SurG", "-t", "Sur",
                     "--to-offset", "4", "--dry-run"))
    assert [(r["queueId"], r["before"], r["after"], r["maxOffset"], r["lagBefore"],
             r["lagAfter"], r["lagChange"], r["clamped"]) for r in rows] == [
        (0, 2, 4, 5, 3, 1, -2, None), (1, 1, 3, 3, 2, 0, -2, "to max"),
        (2, None, 4, 4, None, 0, None, None)]
    assert committed(node, "SurG", "Sur") == {0: 2, 1: 1}

    earliest = rmqctl(ns, "offset", "reset", "-g", "SurG", "-t", "Sur", "--earliest",
                      "--dry-run")
    assert earliest.returncode == 0 and "dry run: nothing changed" in earliest.stderr
    header, _, *lines = earliest.stdout.splitlines()
    assert header.split() == ["topic", "brokerName", "queueId", "before", "after", "maxOffset",
                              "lagBefore", "lagAfter", "lagChange"]
    assert [line.split()[2:] for line in lines] == [
        ["0", "2", "0", "5", "3", "5", "2"], ["1", "1", "0", "3", "2", "3", "1"],
        ["2", "0", "4", "4"]]  # never committed: no before, no lag before
    assert committed(node, "SurG", "Sur") == {0: 2, 1: 1}

    # No terminal and no --yes: the reset is refused, and nothing changes.
    refused = rmqctl(ns, "offset", "reset", "-g", "SurG", "-t", "Sur", "--latest")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip() == (
        "rmqctl: Reset 3 queues of group SurG on topic Sur: give --yes to reset without a "
        "terminal to ask on (--dry-run shows what would change)")
    assert committed(node, "SurG", "Sur") == {0: 2, 1: 1}

    done = js(rmqctl(ns, "-o", "json", "offset", "reset", "-g", "SurG", "-t", "Sur",
                     "--latest", "--yes"))
    assert [(r["before"], r["after"], r["lagAfter"], r["via"]) for r in done] == [
        (2, 5, 0, "reset"), (1, 3, 0, "reset"), (None, 4, 0, "reset")]
    assert committed(node, "SurG", "Sur") == {0: 5, 1: 3, 2: 4}
    no_queue = rmqctl(ns, "offset", "reset", "-g", "SurG", "-t", "Sur", "--earliest",
                      "--queue", "7", "--dry-run")
    assert no_queue.returncode == 3 and "Sur has no readable queue 7" in no_queue.stderr


def test_a_terminal_is_asked_and_no_changes_nothing(node):
    ns = node.namesrv
    filled(node, "Ask", [3, 2])
    a_group(node, "AskG", "Ask", {0: 3, 1: 2})
    reset = ["offset", "reset", "-g", "AskG", "-t", "Ask", "--earliest"]

    code, shown, stderr = on_terminal(ns, reset, b"n")
    preview, question = shown.split("Reset 2 queues of group AskG on topic Ask? [y/N]")
    assert preview.splitlines()[0].split()[3:6] == ["before", "after", "maxOffset"]
    assert code == 2 and stderr.strip() == "rmqctl: nothing changed"
    assert committed(node, "AskG", "Ask") == {0: 3, 1: 2}

    code, shown, stderr = on_terminal(ns, reset, b"y")
    assert code == 0, stderr
    _, after = shown.split("[y/N]")
    assert "via" in after and after.count("reset") == 2  # the rows as the reset left them
    assert committed(node, "AskG", "Ask") == {0: 0, 1: 0}

    code, shown, stderr = on_terminal(ns, reset + ["--to-offset", "1"], b"y")
    assert code == 2 and "[y/N]" not in shown and "give exactly one of" in stderr


def test_to_group_copies_what_the_other_group_committed(node):
    ns = node.namesrv
    filled(node, "Copy", [6, 6, 6])
    a_group(node, "CopyG", "Copy", {0: 1, 1: 1, 2: 1})
    commit(node, "CopySrc", "Copy", {0: 4, 2: 9})  # queue 1 never; 9 is past the end

    rows = js(rmqctl(ns, "-o", "json", "offset", "reset", "-g", "CopyG", "-t", "Copy",
                     "--to-group", "CopySrc", "--yes"))
    assert [(r["queueId"], r["before"], r["requested"], r["after"], r["clamped"],
             r["unchanged"], r.get("via")) for r in rows] == [
        (0, 1, 4, 4, None, None, "reset"),
        (1, 1, None, 1, None, "no offset in group CopySrc", None),
        (2, 1, 9, 6, "to max", None, "reset")]
    assert committed(node, "CopyG", "Copy") == {0: 4, 1: 1, 2: 6}

    nothing = rmqctl(ns, "offset", "reset", "-g", "CopyG", "-t", "Copy", "--to-group",
                     "NeverCommitted", "--yes")
    assert nothing.returncode == 3 and "group NeverCommitted has no offset" in nothing.stderr
    itself = rmqctl(ns, "offset", "reset", "-g", "CopyG", "-t", "Copy", "--to-group", "CopyG")
    assert itself.returncode == 2 and "is the group being reset" in itself.stderr


def test_export_then_reset_to_file_restores_exactly(node, tmp_path):
    ns = node.namesrv
    filled(node, "Save", [4, 4])
    filled(node, "Save2", [3])
    a_group(node, "SaveG", "Save", {0: 3, 1: 1})
    commit(node, "SaveG", "Save2", {0: 2})

    exported = rmqctl(ns, "offset", "export", "-g", "SaveG")
    assert exported.returncode == 0, exported.stderr
    broker = js(rmqctl(ns, "-o", "json", "topic", "route", "Save"))["brokerDatas"][0][
        "brokerName"]
    assert json.loads(exported.stdout) == {"group": "SaveG", "topics": {
        "Save": [{"brokerName": broker, "queueId": 0, "offset": 3},
                 {"brokerName": broker, "queueId": 1, "offset": 1}],
        "Save2": [{"brokerName": broker, "queueId": 0, "offset": 2}]}}
    saved = tmp_path / "saved.json"
    wrote = rmqctl(ns, "offset", "export", "-g", "SaveG", "-t", "Save", "--file", str(saved))
    assert wrote.returncode == 0 and "saved 2 queues of SaveG on Save" in wrote.stderr
    assert json.loads(saved.read_text())["topics"] == {
        "Save": json.loads(exported.stdout)["topics"]["Save"]}

    js(rmqctl(ns, "-o", "json", "offset", "reset", "-g", "SaveG", "-t", "Save", "--latest",
              "--yes"))
    assert committed(node, "SaveG", "Save") == {0: 4, 1: 4}
    preview = js(rmqctl(ns, "-o", "json", "offset", "reset", "--to-file", str(saved),
                        "--dry-run"))
    assert [(r["before"], r["after"], r["lagChange"]) for r in preview] == [(4, 3, 1),
                                                                            (4, 1, 3)]
    assert committed(node, "SaveG", "Save") == {0: 4, 1: 4}
    js(rmqctl(ns, "-o", "json", "offset", "reset", "--to-file", str(saved), "--yes"))
    assert committed(node, "SaveG", "Save") == {0: 3, 1: 1}

    # The same file onto another group: -g overrides the file's.
    a_group(node, "SaveCopy", "Save", {})
    js(rmqctl(ns, "-o", "json", "offset", "reset", "-g", "SaveCopy", "--to-file", str(saved),
              "--yes"))
    assert committed(node, "SaveCopy", "Save") == {0: 3, 1: 1}

    missing = rmqctl(ns, "offset", "reset", "--to-file", str(saved), "-t", "Save2", "--yes")
    assert missing.returncode == 3 and "has no offsets of topic Save2" in missing.stderr
    none = rmqctl(ns, "offset", "export", "-g", "NobodyG")
    assert none.returncode == 3 and "has no committed offsets" in none.stderr


def test_export_and_restore_on_a_stopped_store(start_node, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    node = start_node("--namesrv-port", "0", "--listen-port", "0", home=home)
    filled(node, "OffS", [5, 2])
    a_group(node, "OffSG", "OffS", {0: 4, 1: 1})
    commit(node, "OffSrc", "OffS", {1: 2})
    node.stop()
    store = str(home / "store")

    def offline(*args: str):
        return rmqctl("127.0.0.1:1", *args[:2], "--offline", store, *args[2:])
    exported = offline("offset", "export", "-g", "OffSG")
    assert json.loads(exported.stdout) == {"group": "OffSG", "topics": {"OffS": [
        {"brokerName": "broker-a", "queueId": 0, "offset": 4},
        {"brokerName": "broker-a", "queueId": 1, "offset": 1}]}}
    saved = tmp_path / "offsets.json"
    saved.write_text(exported.stdout)

    dry = js(rmqctl("127.0.0.1:1", "-o", "json", "offset", "reset", "-g", "OffSG", "-t",
                    "OffS", "--earliest", "--dry-run", "--offline", store))
    assert [(r["before"], r["after"], r["maxOffset"], r["lagChange"]) for r in dry] == [
        (4, 0, 5, 4), (1, 0, 2, 1)]
    assert offline("offset", "export", "-g", "OffSG").stdout == exported.stdout

    moved = js(rmqctl("127.0.0.1:1", "-o", "json", "offset", "reset", "-g", "OffSG", "-t",
                      "OffS", "--to-group", "OffSrc", "--yes", "--offline", store))
    assert [(r["after"], r["unchanged"]) for r in moved] == [
        (4, "no offset in group OffSrc"), (2, None)]
    js(rmqctl("127.0.0.1:1", "-o", "json", "offset", "reset", "-g", "OffSG", "-t", "OffS",
              "--latest", "--yes", "--offline", store))
    refused = rmqctl("127.0.0.1:1", "offset", "reset", "--to-file", str(saved), "--offline",
                     store)
    assert refused.returncode == 2 and "give --yes" in refused.stderr
    restored = js(rmqctl("127.0.0.1:1", "-o", "json", "offset", "reset", "--to-file",
                         str(saved), "--yes", "--offline", store))
    assert [(r["before"], r["after"]) for r in restored] == [(5, 4), (2, 1)]
    assert offline("offset", "export", "-g", "OffSG").stdout == exported.stdout

    two = json.loads(exported.stdout)
    two["topics"]["OffS"].append({"brokerName": "broker-b", "queueId": 0, "offset": 1})
    saved.write_text(json.dumps(two))
    ambiguous = rmqctl("127.0.0.1:1", "offset", "reset", "--to-file", str(saved), "--yes",
                       "--offline", store)
    assert ambiguous.returncode == 2 and "give --broker-name" in ambiguous.stderr
    chosen = js(rmqctl("127.0.0.1:1", "-o", "json", "offset", "reset", "--to-file",
                       str(saved), "--broker-name", "broker-b", "--yes", "--offline", store))
    assert [(r["after"], r["unchanged"]) for r in chosen] == [
        (1, None), (1, "no offset in " + str(saved))]

    node = start_node("--namesrv-port", "0", "--listen-port", "0", home=home)
    assert committed(node, "OffSG", "OffS") == {0: 1, 1: 1}


def test_a_malformed_file_is_refused_in_one_line(tmp_path):
    good = {"group": "G", "topics": {"T": [{"brokerName": "broker-a", "queueId": 0,
                                            "offset": 1}]}}

    def entry(**change):
        return {"group": "G", "topics": {"T": [good["topics"]["T"][0] | change]}}
    cases = [
        ("{not json", "not a JSON offsets file"),
        ("[]", "the file: not an object with group and topics"),
        ({"topics": {}}, "group: not a group name: 'None'"),
        ({"group": "G", "topics": []}, "topics: missing, or not an object"),
        ({"group": "G", "topics": {"a b": []}}, "topics: not a topic name: 'a b'"),
        ({"group": "G", "topics": {"T": {}}}, "topics.T: not a list of queues"),
        (entry(offset=-1), "topics.T[0].offset: not an offset: -1"),
        (entry(offset="7"), "topics.T[0].offset: not an offset: '7'"),
        (entry(queueId=True), "topics.T[0].queueId: not a queue id: True"),
        (entry(brokerName="b/../c"), "topics.T[0].brokerName: not a broker name"),
        (entry(extra=1), "topics.T[0]: not an object of exactly brokerName, queueId, offset"),
        ({"group": "G", "topics": {"T": good["topics"]["T"] * 2}},
         "topics.T[1]: queue 0 of broker-a a second time"),
    ]
    path = tmp_path / "bad.json"
    for content, why in cases:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        out = rmqctl("127.0.0.1:1", "offset", "reset", "--to-file", str(path), "--yes")
        assert out.returncode == 2, (content, out.stderr)
        assert out.stderr.count("\n") == 1 and f"{path}: {why}" in out.stderr, out.stderr
    path.write_bytes(b"\xff\xfe")
    out = rmqctl("127.0.0.1:1", "offset", "reset", "--to-file", str(path), "--yes")
    assert out.returncode == 2 and "not a JSON offsets file" in out.stderr

"""Seeded fuzzing of one real node (name server and broker in one process) over its sockets.

Every request code the node answers gets requests built from a valid template (the captured
requests of real Java clients and mqadmin, and our own for the codes no capture holds) with
fields removed, of the wrong type, out of range, huge, or naming hostile paths, and bodies cut
or replaced; throwaway connections get codec-level garbage. A peer must never be able to make
the node crash a handler (a Traceback, a `request.crashed` line, or a SYSTEM_ERROR whose remark
is a Python exception), write outside its home, or stop serving: afterwards it must still
store and return a message and exit 0 on SIGTERM.

The requests (tests/fuzz_requests.py) and the mutations and load (tests/fuzz_load.py) are
shared with benchmarks/fuzz_soak.py, which runs the same ones much longer; the seed is fixed
(RMQ_FUZZ_SEED overrides it) and printed with every failure.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

from conftest import Node
from fuzz_load import (ANSWER_TIMEOUT, Findings, Fuzzer, Link, Signer, frame, json_header,
                       run_frames, unsigned)
from fuzz_requests import OUTSIDE, PRODUCER, TOPIC, Template, captured_templates, own_templates
from remoting import call
from rmqnode.net.codec import SERIALIZE_JSON
from rmqnode.net.codes import RequestCode as RC
from rmqnode.net.codes import ResponseCode

SEED = int(os.environ.get("RMQ_FUZZ_SEED", "20250601"))
TEST_FRAMES = 60_000
CRASH_LINE = re.compile(r"Traceback|request\.crashed")
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


# -- the node and what it must still do -----------------------------------------------------


def handled_codes(node: Node) -> dict[int, str]:
    """Request code -> the address that serves it, learnt by asking both servers about every
    code RocketMQ defines (an empty request; unknown codes answer REQUEST_CODE_NOT_SUPPORTED)."""
    codes = {v for k, v in vars(RC).items() if k.isupper() and isinstance(v, int)}
    served: dict[int, str] = {}

    async def probe(code: int, addr: str) -> None:
        link = await Link.open(addr)
        try:
            fut = link.send(frame(SERIALIZE_JSON, json_header(
                {"code": code, "flag": 0, "language": "JAVA", "opaque": code,
                 "version": 409}, {}), b""), code)
            answer = await asyncio.wait_for(fut, ANSWER_TIMEOUT)
            if answer is not None and answer.code != ResponseCode.REQUEST_CODE_NOT_SUPPORTED:
                served[code] = addr
        except asyncio.TimeoutError:
            served[code] = addr  # held: served, just slow
        finally:
            await link.close()

    async def probe_all() -> None:
        await asyncio.gather(*(probe(code, addr) for code in sorted(codes)
                               for addr in (node.namesrv, node.broker)))

    asyncio.run(probe_all())
    return served


def tree(root: Path, skip: Path) -> set[str]:
    """Every path under `root` except under `skip`, relative to `root`."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == skip:
            dirnames.clear()
            continue
        out.update(str((here / n).relative_to(root)) for n in [*dirnames, *filenames])
    return out


def crash_lines(node: Node) -> list[str]:
    return [line for line in node.lines if CRASH_LINE.search(line)]


def crash_signatures(lines: list[str]) -> dict[str, list]:
    """Each distinct crash in a log, as `REQUEST: Exception @ file:line` (the innermost frame
    of its traceback) -> [how often, the first message]: what an owner must fix. REQUEST is
    the request.crashed line's code, else the event logged with the traceback; a crash
    logged on one line (no traceback) counts as that line."""
    found: dict[str, list] = {}

    def add(key: str, message: str) -> None:
        found.setdefault(key, [0, message])[0] += 1

    code, where, in_traceback, recent = "?", "?", False, ["", "", ""]
    for line in lines:
        if "request.crashed" in line:
            match = re.search(r"code=(\S+)", line)
            code, in_traceback = match.group(1) if match else "?", False
            error, at = re.search(r"error=(\S+)", line), re.search(r"at=(\S+)", line)
            if error:  # a crash logged on one line, with where it happened
                add(f"{code}: {error.group(1)} @ {at.group(1) if at else '?'}",
                    line.split("request.crashed", 1)[1].strip()[:200])
        elif line.startswith("Traceback"):
            in_traceback, where = True, "?"
            if code == "?":
                code = _crash_context(recent)
        elif in_traceback and (frame_line := re.match(r'\s+File "(.+?)", line (\d+), in (\S+)',
                                                      line)):
            path, number, function = frame_line.groups()
            if "/rmqnode/" in path or where == "?":  # the innermost frame of ours
                where = f"{os.path.relpath(path)}:{number} in {function}"
        elif in_traceback and line and not line[0].isspace():
            add(f"{code}: {line.split(':', 1)[0]} @ {where}", line[:200])
            in_traceback, code = False, "?"
        recent = [*recent[1:], line]
    return found


def _crash_context(recent: list[str]) -> str:
    """What a traceback that is not a handler's was logged under: the log event, asyncio's
    'Fatal error on transport' (a crash in data_received) or a task nobody awaited."""
    for line in reversed(recent):
        if LOG_LINE.match(line):
            return line.split()[4]  # date time LEVEL logger event
        if line.startswith(("Fatal error on transport", "Task exception was never retrieved")):
            return line.split(" TCP")[0]
        if line.startswith("future: <Task") and (coro := re.search(r"coro=<(\S+)\(", line)):
            return f"task {coro.group(1)}"
    return "?"


def still_serves(node: Node, topic: str, group: str, sign: Signer = unsigned) -> list[str]:
    """What is wrong with the node's basic service: a topic created, a message sent with
    SEND_MESSAGE_V2 and pulled back with PULL_MESSAGE (empty when all is well)."""
    created = call(node.broker, RC.UPDATE_AND_CREATE_TOPIC, sign({
        "topic": topic, "defaultTopic": "TBW102", "readQueueNums": 1, "writeQueueNums": 1,
        "perm": 6, "topicFilterType": "SINGLE_TAG", "topicSysFlag": 0, "order": "false"}, b""))
    if created.code != 0:
        return [f"UPDATE_AND_CREATE_TOPIC: {created.code} {created.remark}"]
    sent = call(node.broker, RC.SEND_MESSAGE_V2, sign({
        "a": PRODUCER, "b": topic, "c": "TBW102", "d": 1, "e": 0, "f": 0,
        "g": int(time.time() * 1000), "h": 0, "i": "WAIT\x01true\x02", "j": 0, "k": "false",
        "m": "false"}, b"still alive"), b"still alive")
    if sent.code != 0:
        return [f"SEND_MESSAGE_V2: {sent.code} {sent.remark}"]
    pulled = call(node.broker, RC.PULL_MESSAGE, sign({
        "consumerGroup": group, "topic": topic, "queueId": 0, "queueOffset": 0,
        "maxMsgNums": 1, "sysFlag": 4, "commitOffset": 0, "suspendTimeoutMillis": 0,
        "subscription": "*", "subVersion": 0, "expressionType": "TAG"}, b""))
    if pulled.code != 0 or b"still alive" not in pulled.body:
        return [f"PULL_MESSAGE: {pulled.code} {pulled.remark} body {pulled.body[:100]!r}"]
    return []


def sandbox(root: Path) -> tuple[Path, Path]:
    """(home, outside): the node's home three levels below `root` so that hostile relative
    names of any depth land in `root`, which is watched; `outside` is home's watched sibling."""
    home = root / "a" / "b" / "c" / "home"
    home.mkdir(parents=True)
    outside = home.parent / OUTSIDE
    outside.mkdir()
    return home, outside


def templates_by_code(node: Node, outside: Path) -> dict[int, list[Template]]:
    by_code: dict[int, list[Template]] = {}
    for template in [*own_templates(node.broker, outside), *captured_templates()]:
        by_code.setdefault(template.code, []).append(template)
    return by_code


def seed_node(node: Node, sign: Signer = unsigned) -> None:
    """The fuzzed topic exists and holds messages, so requests reach past 'topic not exist'."""
    call(node.broker, RC.UPDATE_AND_CREATE_TOPIC, sign({
        "topic": TOPIC, "readQueueNums": 4, "writeQueueNums": 4, "perm": 6}, b""))
    for queue_id in range(4):
        for i in range(3):
            call(node.broker, RC.SEND_MESSAGE_V2, sign({
                "a": PRODUCER, "b": TOPIC, "c": "TBW102", "d": 4, "e": queue_id, "f": 0,
                "g": 0, "h": 0, "i": f"KEYS\x01k{i}\x02TAGS\x01t\x02"}, b"seed"), b"seed")


def test_fuzz_every_request_code(tmp_path, start_node):
    fuzz(tmp_path, start_node, TEST_FRAMES)


def fuzz(tmp_path: Path, start_node, frames: int, *args: str, sign: Signer = unsigned,
         home: Path | None = None) -> None:
    """`frames` hostile frames at a node started with `args` (in `home`, made by sandbox),
    signed by `sign` where the fuzzer chooses to; then every check of the module."""
    if home is None:
        home, outside = sandbox(tmp_path)
    else:
        outside = home.parent / OUTSIDE
    node = start_node("--namesrv-port", "0", "--listen-port", "0", "--store",
                      str(home / "store"), *args, home=home)
    before = tree(tmp_path, home)
    served = handled_codes(node)
    templates = templates_by_code(node, outside)
    missing = sorted(set(served) - set(templates))
    assert not missing, f"request codes the node serves with no fuzz template: {missing}"
    seed_node(node, sign)

    fuzzer = Fuzzer(SEED, outside, templates, sign=None if sign is unsigned else sign)
    findings = Findings(SEED)
    started = time.monotonic()
    asyncio.run(run_frames(fuzzer.frames(frames, served), findings))
    elapsed = time.monotonic() - started

    where = f"seed {SEED} (RMQ_FUZZ_SEED), {frames} frames in {elapsed:.1f} s"
    problems = [f"answer: {c}" for c in dict.fromkeys(findings.crashes)]
    problems += [f"created outside the home: {p}" for p in sorted(tree(tmp_path, home) - before)]
    problems += still_serves(node, "FuzzStillServes", "FuzzStillServesGroup", sign)
    code = node.stop()
    problems += [f"SIGTERM exit code {code}"] if code != 0 else []
    problems += [f"crash x{n}: {sig}: {example}"
                 for sig, (n, example) in crash_signatures(node.lines).items()]
    problems += [f"log: {line}" for line in crash_lines(node)
                 if "Traceback" not in line and "request.crashed" not in line]
    assert findings.answered > frames // 2, f"{where}: only {findings} answered"
    assert not problems, f"{where}: {len(problems)} problems:\n" + "\n".join(problems[:80])

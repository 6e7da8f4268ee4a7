"""The fuzz's mutations and load: templates (tests/fuzz_requests.py) turned into hostile frames
reproducibly from one seed, sent over a few connections with many in flight, and the answers
that are crashes collected."""

from __future__ import annotations

import asyncio
import json
import random
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fuzz_requests import (JSON_ONLY, NUMBERS, STRINGS, Raw, Template, Value, garbage_json_bodies,
                           hostile_names)
from rmqnode.net.codec import (SERIALIZE_JSON, SERIALIZE_ROCKETMQ, FrameDecoder, RemotingCommand,
                               decode_frame)
from rmqnode.net.codes import ResponseCode

# A remark that is a Python exception's repr: the transport's answer to a handler crash.
CRASH_REMARK = re.compile(r"^[A-Z]\w*(Error|Exception|Iteration|Exit)\b")
ANSWER_TIMEOUT = 3.0  # a held pull or POP long poll that outlives this is simply abandoned


# -- mutation -----------------------------------------------------------------------------


Signer = Callable[[dict, bytes], dict]


def unsigned(fields: dict, body: bytes) -> dict:
    return fields


@dataclass
class Fuzzer:
    """Turns templates into hostile frames, reproducibly from one seed."""

    seed: int
    outside: Path
    templates: dict[int, list[Template]]
    rng: random.Random = field(init=False)
    names: list[str] = field(init=False)
    opaque: int = 0
    # With ACL on: signs most frames after their mutation (Signer), so they reach handlers.
    sign: Signer | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.names = hostile_names(self.outside)

    def value(self, json_header: bool) -> Value:
        rng = self.rng
        pools: list[list] = [self.names, NUMBERS, STRINGS]
        if json_header:
            pools.append(JSON_ONLY)
        return rng.choice(rng.choice(pools))

    def mutate_fields(self, fields: dict[str, str], json_header: bool) -> dict[str, Value]:
        rng = self.rng
        out: dict[str, Value] = dict(fields)
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            action = rng.randrange(10)
            key = rng.choice(list(out)) if out else "topic"
            if action == 0:
                out.pop(key, None)
            elif action == 1:
                out[rng.choice(("topic", "consumerGroup", "queueId", "x" * 300, "é", ""))] = \
                    self.value(json_header)
            else:
                out[key] = self.value(json_header)
        return out

    def mutate_body(self, body: bytes) -> bytes:
        rng = self.rng
        action = rng.randrange(8)
        if action == 0 and body:
            return body[:rng.randrange(len(body))]
        if action == 1:
            return rng.randbytes(rng.randrange(1, 300))
        if action == 2:
            return rng.choice(garbage_json_bodies())
        if action == 3 and body[:1] == b"{":
            return self.mutate_json_body(body)
        if action == 4 and body:
            flipped = bytearray(body)
            for _ in range(rng.randrange(1, 8)):
                flipped[rng.randrange(len(flipped))] = rng.randrange(256)
            return bytes(flipped)
        return body

    def mutate_json_body(self, body: bytes) -> bytes:
        """One value somewhere in a JSON body replaced by a hostile one (any type)."""
        try:
            data = json.loads(body)
        except ValueError:
            return body
        nodes: list[tuple[object, object]] = []

        def walk(node: object) -> None:
            items = node.items() if isinstance(node, dict) else \
                enumerate(node) if isinstance(node, list) else ()
            for key, child in items:
                nodes.append((node, key))
                walk(child)

        walk(data)
        if not nodes:
            return body
        parent, key = self.rng.choice(nodes)
        parent[key] = self.rng.choice([*self.names, *NUMBERS, None, [], {}, -1, 2 ** 70, 1.5,
                                       True, [None], {"": None}])  # type: ignore[index]
        return json.dumps(data).encode()

    def request(self, template: Template) -> tuple[bytes, int]:
        """A mutated request of the template's code, as a whole frame, and its opaque."""
        rng = self.rng
        self.opaque += 1
        st = template.serialize_type if rng.random() < 0.8 else rng.choice(
            (SERIALIZE_JSON, SERIALIZE_ROCKETMQ))
        fields = self.mutate_fields(template.fields, st == SERIALIZE_JSON) \
            if rng.random() < 0.85 else dict(template.fields)
        body = self.mutate_body(template.body) if rng.random() < 0.4 else template.body
        if self.sign is not None and rng.random() < 0.8:
            fields = self.sign(fields, body)
        header = {"code": template.code, "flag": 0, "language": "JAVA", "opaque": self.opaque,
                  "version": rng.choice((409, 409, 409, 0, -1, 121, 2 ** 31 - 1))}
        if st == SERIALIZE_ROCKETMQ:
            return frame(st, binary_header(header, fields), body), self.opaque
        if rng.random() < 0.05:
            header["language"] = rng.choice((Raw("1"), "", "x" * 1000, Raw("null")))
        return frame(st, json_header(header, fields), body), self.opaque

    def garbage(self) -> bytes:
        """Bytes for a throwaway connection: frames the codec must refuse, or half of one."""
        rng = self.rng
        code = rng.choice(list(self.templates))
        good, _ = self.request(rng.choice(self.templates[code]))
        kind = rng.randrange(12)
        if kind == 0:
            return rng.randbytes(rng.randrange(1, 200))
        if kind == 1:
            return struct.pack(">i", rng.choice((-1, 0, 1, 3, 2 ** 31 - 1, 16 << 20))) + good[4:]
        if kind == 2:
            return good[:4] + struct.pack(">i", (good[4] << 24) | rng.choice(
                (0xFFFFFF, len(good), 0))) + good[8:]
        if kind == 3:
            return good[:4] + bytes([rng.randrange(2, 256)]) + good[5:]
        if kind == 4:
            return good[:rng.randrange(1, len(good))]
        if kind == 5:
            return frame(SERIALIZE_JSON, rng.choice(
                (b"", b"{", b"[]", b"1", b'{"code":"x"}', b'{"code":1e400}', b'{"code":NaN}',
                 b'{"code":10,"extFields":[]}', b'{"code":10,"opaque":"x"}',
                 b'{"code":10,"flag":1e400}', b'{"code":10,"extFields":{"a":' * 2000,
                 b'{"code":10,"remark":"\\ud800"}', b"\xff" * 10, b'{"code":true}',
                 b'{"code":10,"version":"x"}', b'{"code":' + b"9" * 400 + b"}")), b"")
        if kind == 6:
            return frame(SERIALIZE_ROCKETMQ, rng.randbytes(rng.randrange(0, 40)), b"")
        if kind == 7:
            head = struct.pack(">hbhiii", 10, 0, 409, 1, 0, rng.choice((-1, 5, 1000)))
            return frame(SERIALIZE_ROCKETMQ, head + b"ab" + struct.pack(
                ">i", rng.choice((-1, 3, 1 << 30))) + b"\x00\x01k", b"")
        if kind == 8:
            return frame(SERIALIZE_ROCKETMQ, binary_header(
                {"code": 10, "flag": 0, "language": "JAVA", "opaque": 1, "version": 409},
                {"topic": "\udcff"}), b"")
        if kind == 9:  # a frame announcing more than is sent: the node must wait, not crash
            return struct.pack(">i", len(good) + 1000) + good[4:]
        if kind == 10:  # a response nobody asked for, then a request
            return frame(SERIALIZE_JSON, b'{"code":0,"flag":1,"opaque":99999}', b"") + good
        return good + rng.randbytes(rng.randrange(1, 50))

    def frames(self, count: int, addrs: dict[int, str]) -> Iterator[tuple[str, bytes, int]]:
        """`count` items (address, bytes, opaque); opaque 0 marks garbage for a throwaway
        connection. Codes are drawn evenly, so the rare ones get their share."""
        codes = sorted(self.templates)
        for _ in range(count):
            if self.rng.random() < 0.08:
                yield self.rng.choice(list(addrs.values())), self.garbage(), 0
                continue
            code = self.rng.choice(codes)
            data, opaque = self.request(self.rng.choice(self.templates[code]))
            yield addrs.get(code, self.rng.choice(list(addrs.values()))), data, opaque


def json_text(value: object) -> str:
    """JSON with Raw literals kept; str escaped as ASCII, so lone surrogates go as escapes."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{json_text(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def json_header(header: dict[str, object], fields: dict[str, Value]) -> bytes:
    return json_text({**header, "extFields": fields}).encode()


def binary_header(header: dict[str, object], fields: dict[str, Value]) -> bytes:
    """The ROCKETMQ serialization, written by hand so that it can carry what our encoder
    never writes (strings that are not UTF-8, out-of-range numbers cut to their width)."""
    def utf8(text: str) -> bytes:
        return text.encode("utf-8", "surrogatepass")

    ext = b"".join(struct.pack(">h", len(utf8(k)) & 0x7FFF) + utf8(k) + struct.pack(
        ">i", len(utf8(v))) + utf8(v) for k, v in fields.items())
    version = int(header["version"])  # type: ignore[call-overload]
    return struct.pack(">hbhiii", int(header["code"]) & 0x7FFF, 0,  # type: ignore[call-overload]
                       max(-32768, min(version, 32767)), int(header["opaque"]),  # type: ignore
                       0, 0) + struct.pack(">i", len(ext)) + ext


def frame(serialize_type: int, header: bytes, body: bytes) -> bytes:
    return struct.pack(">ii", 4 + len(header) + len(body),
                       (serialize_type << 24) | len(header)) + header + body


# -- load ---------------------------------------------------------------------------------


@dataclass
class Findings:
    """What a run saw: answers that are crashes, and how many frames got what."""

    seed: int
    sent: int = 0
    answered: int = 0
    unanswered: int = 0
    garbage: int = 0
    unconnected: int = 0  # frames not sent: this side could not open a connection
    crashes: list[str] = field(default_factory=list)

    def check(self, request: bytes, answer: RemotingCommand) -> None:
        if answer.code == ResponseCode.SYSTEM_ERROR and CRASH_REMARK.match(answer.remark or ""):
            cmd = decode_frame(request[4:])
            fields = {k: v[:80] for k, v in (cmd.ext_fields or {}).items()}
            self.crashes.append(f"code {cmd.code} {fields} body {cmd.body[:80]!r}: "
                                f"{answer.remark[:300]}")


class Link:
    """One fuzzing connection; answers are matched to requests by opaque."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.waiting: dict[int, asyncio.Future[RemotingCommand | None]] = {}
        self.task = asyncio.create_task(self._read(reader))

    @classmethod
    async def open(cls, addr: str) -> Link:
        host, port = addr.rsplit(":", 1)
        return cls(*await asyncio.open_connection(host, int(port)))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        decoder = FrameDecoder()
        try:
            while data := await reader.read(1 << 16):
                for cmd in decoder.feed(data):
                    fut = self.waiting.pop(cmd.opaque, None)
                    if fut is not None and not fut.done():
                        fut.set_result(cmd)
        except (OSError, ValueError):
            pass
        finally:
            for fut in self.waiting.values():
                if not fut.done():
                    fut.set_result(None)
            self.waiting.clear()

    @property
    def alive(self) -> bool:
        return not self.task.done() and not self.writer.is_closing()

    def send(self, data: bytes, opaque: int) -> asyncio.Future[RemotingCommand | None]:
        fut: asyncio.Future[RemotingCommand | None] = asyncio.get_running_loop().create_future()
        self.waiting[opaque] = fut
        self.writer.write(data)
        return fut

    async def close(self) -> None:
        self.writer.close()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def throwaway(addr: str, data: bytes, linger: float) -> None:
    """Garbage on its own connection: written, read from briefly, then dropped."""
    try:
        link = await Link.open(addr)
    except OSError:
        return
    try:
        link.writer.write(data)
        await asyncio.wait([link.task], timeout=linger)
    finally:
        await link.close()


async def run_frames(items: Iterator[tuple[str, bytes, int]], findings: Findings,
                     links_per_addr: int = 4, in_flight: int = 64,
                     timeout: float = ANSWER_TIMEOUT) -> None:
    """Send everything, at most `in_flight` unanswered at a time, over a few connections
    per address (reopened when the node drops one)."""
    links: dict[tuple[str, int], Link] = {}
    opening: dict[tuple[str, int], asyncio.Future[Link]] = {}
    slots = asyncio.Semaphore(in_flight)
    tasks: set[asyncio.Task] = set()

    async def connect(key: tuple[str, int], addr: str) -> Link:
        """The live link for `key`; senders that find it dropped wait for one replacement
        (each opening its own would leave all but one open until the end)."""
        link = links.get(key)
        if link is not None and link.alive:
            return link
        pending = opening.get(key)
        if pending is None:
            pending = opening[key] = asyncio.ensure_future(replace(key, addr, link))
            pending.add_done_callback(lambda _: opening.pop(key, None))
        return await pending

    async def replace(key: tuple[str, int], addr: str, dropped: Link | None) -> Link:
        if dropped is not None:
            await dropped.close()
        link = links[key] = await Link.open(addr)
        return link

    async def one(addr: str, data: bytes, opaque: int) -> None:
        try:
            if not opaque:
                findings.garbage += 1
                await throwaway(addr, data, 0.05)
                return
            try:
                link = await connect((addr, opaque % links_per_addr), addr)
            except OSError:  # the node is checked for life at the end
                findings.unconnected += 1
                return
            fut = link.send(data, opaque)
            findings.sent += 1
            try:
                answer = await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                findings.unanswered += 1
                return
            if answer is not None:
                findings.answered += 1
                findings.check(data, answer)
        finally:
            slots.release()

    for addr, data, opaque in items:
        await slots.acquire()
        task = asyncio.create_task(one(addr, data, opaque))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks)
    for link in links.values():
        await link.close()

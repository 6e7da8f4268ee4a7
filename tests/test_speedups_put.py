"""The send that waits for nothing in C (csrc/put.c) against its pure-Python original
(broker/send.py's stored_at_once): two brokers, each with its own store, take the same sends
in the same order, one through each; every answer, record, queue offset, reput request and
count must come out the same. The sends mix the common case with everything the compiled one
hands back to the original: delays, transactions, batches, refusals, a read-only store, a
slave, files rolling over, odd arguments."""

from __future__ import annotations

import asyncio
import dataclasses
import random

import pytest

from rmqnode import speedups
from rmqnode.broker.controller import BrokerController
from rmqnode.broker import send as send_module
from rmqnode.broker.send import SendProcessor, handle_send, stored_at_once  # noqa: F401
from rmqnode.broker.topics import TopicConfig
from rmqnode.config import BrokerConfig
from rmqnode.message import BatchEntry, encode_batch, encode_properties, host_bytes
from rmqnode.net.codec import FLAG_ONEWAY, RemotingCommand
from rmqnode.net.codes import PERM_READ, RequestCode
from rmqnode.net.connection import Connection
from rmqnode.storage.store import Message
from twins import counted_fallbacks, java_records, outcome

TOPICS = ["TopicA", "TopicB", "%RETRY%GroupC"]
MAX_BODY = 2048


def started_broker(root, flush: str = "ASYNC_FLUSH") -> BrokerController:
    """A broker whose store is open and started (inside a running loop), its network not."""
    # Small CommitLog files: records reach the end of a file, and the zeros ahead, often.
    broker = BrokerController(BrokerConfig(
        storePathRootDir=str(root), mappedFileSizeCommitLog=48 * 1024, brokerIP1="127.0.0.1",
        listenPort=10911, grpcServerPort=-1, maxMessageSize=MAX_BODY, namesrvAddr="",
        flushDiskType=flush))
    broker.store.open()
    broker.store.start()
    return broker


def stored_records(root) -> list:
    """Every record of the CommitLog under `root`, without its store time (each broker
    stored at its own moment)."""
    return [dataclasses.replace(rec, store_timestamp=0) for _, rec in java_records(root)]


def plan(seed: int, n: int) -> list[tuple]:
    """The sends, as (kind, arguments) made afresh for each broker (a put changes its
    message)."""
    rng = random.Random(seed)
    kinds = ["plain"] * 12 + ["oneway", "binary", "delay", "prepared", "commit", "rollback",
                              "big", "batch", "batch", "mixed_batch", "readonly", "slave", "odd"]
    return [(rng.choice(kinds), rng.choice(TOPICS), rng.randrange(4), rng.randrange(1, 900),
             rng.randrange(1 << 30), i) for i in range(n)]


def message(topic: str, queue_id: int, size: int, i: int, **props: str) -> Message:
    props = {"TAGS": f"tag{i % 3}", "KEYS": f"k{i} j{i}", "UNIQ_KEY": f"U{i:030d}",
             "CLUSTER": "DefaultCluster", **props}
    return Message(topic, queue_id, bytes([i % 251]) * size, props, i % 7, 0,
                   1_700_000_000_000 + i, host_bytes("10.1.2.3:5555"), 0)


def arguments(broker: BrokerController, send: SendProcessor, step: tuple) -> tuple:
    kind, topic, queue_id, size, opaque, i = step
    cmd = RemotingCommand(RequestCode.SEND_MESSAGE_V2, opaque, 0, None, {}, b"")
    msg = message(topic, queue_id, size, i)
    messages = [msg]
    if kind == "oneway":
        cmd.flag = FLAG_ONEWAY
    elif kind == "binary":
        cmd.serialize_type = 1
    elif kind == "delay":
        msg.properties["DELAY"] = str(i % 20)
    elif kind in ("prepared", "commit", "rollback"):
        msg.sys_flag = {"prepared": 4, "commit": 8, "rollback": 12}[kind]
    elif kind == "big":
        msg.body = b"b" * (MAX_BODY + 1)
    elif kind in ("batch", "mixed_batch"):
        messages = [msg] + [message(topic, queue_id, size, i + k) for k in range(1, 2 + i % 4)]
        if kind == "mixed_batch":  # sysFlags that differ: the reput takes them one by one
            messages[-1].sys_flag = 2
    elif kind == "odd":
        return [(send, cmd, topic, str(queue_id), messages), (send, cmd, None, queue_id, messages),
                (send, cmd, topic, queue_id, (msg,)), (send, cmd, topic, queue_id, []),
                (send, None, topic, queue_id, messages), (send, cmd, topic, queue_id),
                (send, cmd, topic, queue_id, [object()])][i % 7]
    return send, cmd, topic, queue_id, messages


def masked(request):
    """A reput request without its store time (each broker stored at its own moment), nor
    a delayed message's due time (its tags code)."""
    if dataclasses.is_dataclass(request):
        return dataclasses.replace(request, store_timestamp=0)
    due = 0 if request[0] == "SCHEDULE_TOPIC_XXXX" else request[4]
    return tuple(request[:4]) + (due, 0) + tuple(request[6:])


def store_snapshot(broker: BrokerController, requests: list | None = None) -> dict:
    """What the sends left: the reput's requests (`requests`, those taken so far, then the
    pending ones), the store's and the topics' counts, the queues' next offsets, the files'
    write positions."""
    store = broker.store
    requests = (requests or []) + [masked(r) for r in store._pending]
    stats = store.stats
    return {"requests": requests,
            "counts": (stats.put_times, stats.put_bytes, stats.put_failed,
                       sum(stats.put_ms.values())),
            "topic_puts": {t: (items[0].value, items[0].times, items[1].value)
                           for t, items in broker.stats._topic_put.items()},
            "table": dict(store.commitlog.topic_queue_table),
            "ends": [(mf.file_from_offset, mf.wrote_position)
                     for mf in store.commitlog.files.files]}


def run(impl: str, root, steps: list[tuple]) -> dict:
    fn = speedups.PURE["stored_at_once"] if impl == "pure" else speedups.NATIVE["stored_at_once"]

    async def go() -> dict:
        broker = started_broker(root)
        store = broker.store
        send = SendProcessor(broker)
        answers, fallbacks, requests = [], [], []
        with counted_fallbacks("stored_at_once") as fell:
            for step in steps:
                kind = step[0]
                store.readonly = kind == "readonly"
                broker.config.brokerRole = "SLAVE" if kind == "slave" else "ASYNC_MASTER"
                before = len(fell)
                got = outcome(fn, *arguments(broker, send, step))
                store.readonly = False
                broker.config.brokerRole = "ASYNC_MASTER"
                answers.append(got if got[0] == "returned" else got[:2])
                fallbacks.append(len(fell) > before)
                requests.extend(masked(r) for r in store._pending)
                store._pending.clear()
        snapshot = store_snapshot(broker, requests)
        await store.close()
        return {"answers": answers, "fallbacks": fallbacks, **snapshot}

    return {**asyncio.run(go()), "records": stored_records(root)}


def test_the_send_that_waits_for_nothing_is_the_same_in_c_and_python(tmp_path):
    steps = plan(20261130, 900)
    pure = run("pure", tmp_path / "pure", steps)
    native = run("native", tmp_path / "native", steps)
    for i, (a, b) in enumerate(zip(pure["answers"], native["answers"], strict=True)):
        assert a == b, (i, steps[i])
    for key in ("requests", "counts", "topic_puts", "table", "ends", "records"):
        assert native[key] == pure[key], key
    assert len(native["records"]) > 500 and len(native["ends"]) > 4  # files rolled over
    # The common case was the compiled one's: a plain send fell back only where the record
    # reached the end of its file or of the zeros ahead (a few in a hundred here).
    plain = [fell for step, fell in zip(steps, native["fallbacks"]) if step[0] == "plain"]
    assert sum(plain) < len(plain) / 5, (sum(plain), len(plain))
    # So were batches, where their records fit the file (theirs reach its end more often).
    batches = [fell for step, fell in zip(steps, native["fallbacks"])
               if step[0] in ("batch", "mixed_batch")]
    assert sum(batches) < len(batches) / 3, (sum(batches), len(batches))
    odd = [fell for step, fell in zip(steps, native["fallbacks"])
           if step[0] in ("delay", "prepared", "big", "readonly", "slave", "odd")]
    assert all(odd)


# -- the whole send: handle_send, from the header to the answer -----------------------------

class Peer:
    """The socket's place for a Connection: who is at the other end; what is written to it."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def get_extra_info(self, name: str, default=None):
        return ("10.1.2.3", 5555) if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def frames(self) -> list[bytes]:
        out = []
        for data in self.written:
            pos = 0
            while pos < len(data):
                end = pos + 4 + int.from_bytes(data[pos:pos + 4], "big")
                out.append(data[pos:end])
                pos = end
        return out


# Pieces of a batch entry's properties as producers (and hostile ones) write them: what the
# compiled batch put reads where it lies (tags, keys, WAIT, DELAY), duplicates (the last
# wins), pieces decode_properties skips, values holding \x01, multi-byte text.
PIECES = [b"TAGS\x01TagA", b"TAGS\x01TagB", "TAGS\x01\u00e9t\u00e9".encode(),
          "TAGS\x01\U0001f600".encode(), b"TAGS\x01", b"TAGS\x01a\x01b", b"\x01x",
          b"KEYS\x01a  b c ", b"KEYS\x01 ", "KEYS\x01k\u00e9y z".encode(), b"KEYS\x01one",
          b"UNIQ_KEY\x01U1", b"UNIQ_KEY\x01U2", b"WAIT\x01false", b"WAIT\x01FALSE",
          b"WAIT\x01no", b"WAIT\x01", b"DELAY\x013", b"POP_CK\x01x", b"noseparator", b"",
          b"ZZ\x01q", b"TAG\x01near", b"TAGSX\x01near", b"x"]


def raw_batch(entries: list[tuple[bytes, bytes, int]]) -> bytes:
    """A batch body of (body, properties bytes, flag) entries, the bytes as they are."""
    out = bytearray()
    for body, props, flag in entries:
        out += (22 + len(body) + len(props)).to_bytes(4, "big") + bytes(8)
        out += flag.to_bytes(4, "big", signed=True) + len(body).to_bytes(4, "big") + body
        out += len(props).to_bytes(2, "big") + props
    return bytes(out)


def odd_entries(rng: random.Random, kind: str) -> list[tuple[bytes, bytes, int]]:
    """A batch's entries with properties drawn from PIECES; for "illegal_batch" one entry the
    store refuses (a body past maxMessageSize, properties past 32767 bytes with the header's)
    or decode_batch does (not UTF-8), for "one_delayed_batch" a lone entry with a DELAY."""
    def props() -> bytes:
        if rng.random() < 0.15:  # the shortest: a separator before the header's, or none
            return rng.choice([b"x", b"\x02", b"\x01", b""])
        text = b"\x02".join(rng.choice(PIECES) for _ in range(rng.randrange(0, 6)))
        return text + (b"\x02" if rng.random() < 0.3 else b"")
    sizes = [0, 1, 63, 64, 65, 200]
    entries = [(bytes([k]) * rng.choice(sizes), props(), rng.randrange(-3, 3))
               for k in range(rng.randrange(2, 7))]
    if kind == "one_delayed_batch":
        return [(b"d", b"DELAY\x012\x02" + props(), 0)]
    if kind == "illegal_batch":
        at = rng.randrange(len(entries))
        entries[at] = rng.choice([(b"x" * (MAX_BODY + 1), b"", 0),
                                  (b"x", b"K\x01" + b"v" * 32760, 0),
                                  (b"x", b"TAGS\x01\xff", 0), (b"x", b"TAGS\x01\xed\xa0\x80", 0)])
    return entries


def header(rng: random.Random, i: int) -> tuple[str, dict, bytes, int]:
    """A send's header as a producer writes it (V2 names), then one thing changed: what kind
    of send, its fields, its body and its flag."""
    topic = rng.choice(TOPICS)
    props = {"TAGS": f"t{i % 4}", "KEYS": f"k{i}", "UNIQ_KEY": f"U{i:030d}", "WAIT": "true"}
    fields = {"a": "PG", "b": topic, "c": "TBW102", "d": "4", "e": str(rng.randrange(4)),
              "f": "0", "g": str(1_700_000_000_000 + i), "h": "0", "j": "0", "k": "false",
              "l": "16", "n": "broker-a"}
    kind = rng.choice(["plain"] * 14 + ["batch"] * 4 + ["odd_batch"] * 4 + [
        "illegal_batch", "one_delayed_batch",
        "any_queue", "queue_past", "wide", "queue_text", "no_queue", "not_batch", "bad_batch",
        "empty_batch", "delayed_batch", "half_batch", "system",
        "bad_topic", "read_only_topic", "unknown_topic", "v1", "half", "delay", "bad_flag",
        "oneway", "no_fields", "slave", "no_write", "binary"])
    body, flag = bytes([i % 251]) * rng.randrange(1, 300), 0
    if kind == "any_queue":
        fields["e"] = "-1"
    elif kind == "queue_past":
        fields["e"] = rng.choice(["4", "9", "2147483647"])
    elif kind == "wide":  # more queues to read than to write: the ones between take sends
        fields["b"], fields["e"] = "Wide", str(rng.randrange(4, 8))
    elif kind == "queue_text":
        fields["e"] = rng.choice(["x", "", " 1", "1.0", "99999999999"])
    elif kind == "no_queue":
        del fields["e"]
    elif kind == "not_batch":
        fields["m"] = rng.choice(["false", "False", "0", ""])
    elif kind == "bad_batch":  # a body that is not a batch's
        fields["m"] = "true"
    elif kind in ("batch", "empty_batch", "delayed_batch", "half_batch"):
        fields["m"] = rng.choice(["true", "TRUE", "1"])
        entries = [BatchEntry(bytes([k]) * rng.randrange(1, 200),
                              {"KEYS": f"b{i}-{k}", "UNIQ_KEY": f"B{i:020d}{k:010d}"}, k % 3)
                   for k in range(rng.randrange(1, 6))]
        body = b"" if kind == "empty_batch" else encode_batch(entries)
        if kind == "delayed_batch":
            props["DELAY"] = "3"
        elif kind == "half_batch":
            fields["f"] = "4"
        elif topic.startswith("%RETRY%"):  # Java refuses batches to a retry topic
            kind = "retry_batch"
        if kind != "retry_batch" and rng.random() < 0.3:
            del props["WAIT"]
    elif kind in ("odd_batch", "illegal_batch", "one_delayed_batch"):
        fields["m"] = "true"
        body = raw_batch(odd_entries(rng, kind))
        if topic.startswith("%RETRY%"):
            fields["b"] = "TopicA"
        for name, value in (("TAGS", "HeadTag"), ("KEYS", "h1  h2"), ("UNIQ_KEY", "HU"),
                            ("WAIT", "false"), ("WAIT", "False")):
            if rng.random() < 0.15:
                props[name] = value
            elif name in props and rng.random() < 0.5:
                del props[name]
    elif kind == "system":
        fields["b"] = "SCHEDULE_TOPIC_XXXX"
    elif kind == "bad_topic":
        fields["b"] = rng.choice(["bad topic", "", "t" * 200])
    elif kind == "read_only_topic":
        fields["b"] = "ReadOnly"
    elif kind == "unknown_topic":
        fields["b"], fields["c"] = "Unknown", "NoDefault"
    elif kind == "v1":  # the C++ client 1.x's SEND_MESSAGE
        fields = {"producerGroup": "PG", "topic": topic, "queueId": fields["e"], "sysFlag": "0",
                  "bornTimestamp": fields["g"], "flag": "0", "batch": "false"}
    elif kind == "half":
        props["TRAN_MSG"] = "true"
        fields["f"] = "4"
    elif kind == "delay":
        props["DELAY"] = "2"
    elif kind == "bad_flag":
        fields[rng.choice("fgh")] = "nope"
    elif kind == "oneway":
        flag = FLAG_ONEWAY
    fields.setdefault("i", encode_properties(props))
    if kind == "v1":
        fields["properties"] = fields.pop("i")
    return kind, (None if kind == "no_fields" else fields), body, flag


def serve(impl: str, root, seed: int, n: int, flush: str) -> dict:
    """The sends through `impl`'s handle_send; the pure original's put that waits for
    nothing (SendProcessor.handle calls the module's stored_at_once) is the pure one too."""
    fn = speedups.PURE["handle_send"] if impl == "pure" else speedups.NATIVE["handle_send"]
    chosen = send_module.stored_at_once
    send_module.stored_at_once = (speedups.PURE if impl == "pure" else speedups.NATIVE)[
        "stored_at_once"]
    try:
        return served(fn, root, seed, n, flush)
    finally:
        send_module.stored_at_once = chosen


def served(fn, root, seed: int, n: int, flush: str) -> dict:

    async def go() -> dict:
        broker = started_broker(root, flush)
        store = broker.store
        for name in TOPICS:
            broker.topics.table[name] = TopicConfig(name, 4, 4)
        broker.topics.table["ReadOnly"] = TopicConfig("ReadOnly", 4, 4, PERM_READ)
        broker.topics.table["Wide"] = TopicConfig("Wide", 8, 4)
        send = SendProcessor(broker)
        peer = Peer()
        conn = Connection(broker.dispatcher)
        conn.connection_made(peer)  # type: ignore[arg-type]
        rng, answers, kinds, requests = random.Random(seed), [], [], []
        random.seed(seed)  # a send to queue -1 draws its queue from the module's generator
        with counted_fallbacks("handle_send") as fell:
            for i in range(n):
                kind, fields, body, flag = header(rng, i)
                broker.config.brokerRole = "SLAVE" if kind == "slave" else "ASYNC_MASTER"
                broker.config.brokerPermission = 4 if kind == "no_write" else 6
                cmd = RemotingCommand(RequestCode.SEND_MESSAGE_V2, i, flag, None, fields, body,
                                      serialize_type=1 if kind == "binary" else 0)
                before = len(fell)
                got = outcome(fn, send, cmd, conn)
                requests.extend(masked(r) for r in store._pending)  # before the reput takes them
                store._pending.clear()
                if got[0] == "returned" and hasattr(got[2], "__await__"):
                    try:
                        got = ("awaited", await got[2])
                    except Exception as exc:  # noqa: BLE001 - compared
                        got = ("raised", type(exc), str(exc))
                broker.config.brokerRole = "ASYNC_MASTER"
                broker.config.brokerPermission = 6
                answers.append(got if got[0] != "raised" else got[:2] + (got[2][:80],))
                kinds.append((kind, len(fell) > before))
        await store.flusher.flush_now()  # SYNC_FLUSH: the answers the rounds still owe
        await asyncio.sleep(0.01)
        snapshot = store_snapshot(broker, requests)
        await store.close()
        # Answered as a round ends, a round's answers in one write: the rounds of the two
        # runs may end between other sends.
        return {"answers": answers, "kinds": kinds, "written": sorted(peer.frames()),
                **snapshot}

    return {**asyncio.run(go()), "records": stored_records(root)}


@pytest.mark.parametrize("flush", ["ASYNC_FLUSH", "SYNC_FLUSH"])
def test_the_whole_send_is_the_same_in_c_and_python(tmp_path, flush):
    pure = serve("pure", tmp_path / "pure", 1130, 900, flush)
    native = serve("native", tmp_path / "native", 1130, 900, flush)
    for i, (a, b) in enumerate(zip(pure["answers"], native["answers"], strict=True)):
        assert a == b, (i, pure["kinds"][i])
    for key in ("requests", "counts", "topic_puts", "table", "ends", "records", "written"):
        assert native[key] == pure[key], key
    fell = {}
    for kind, fallback in native["kinds"]:
        fell.setdefault(kind, []).append(fallback)
    # The common sends were the compiled one's (all but the connection's first, whose born
    # host the original works out); every send it cannot decide alone was the original's (a
    # delayed one is the put's to hand back: the test above).
    for kind in ("plain", "any_queue", "wide", "not_batch", "oneway", "binary", "v1", "batch",
                 "odd_batch"):
        assert sum(fell[kind]) <= len(fell[kind]) / 4, (kind, fell[kind])
    for kind in ("queue_past", "queue_text", "no_queue", "bad_batch", "empty_batch",
                 "delayed_batch", "half_batch", "retry_batch", "illegal_batch",
                 "one_delayed_batch", "system", "bad_topic",
                 "read_only_topic", "unknown_topic", "half", "bad_flag",
                 "no_fields", "slave", "no_write"):
        assert all(fell[kind]), kind


class WatchedItem:
    """A broker.stats.StatsItem look-alike, slots over object like it, whose attribute writes
    go through a __setattr__ of its own that notes them."""

    __slots__ = ("value", "times", "samples", "noted")

    def __init__(self) -> None:
        object.__setattr__(self, "noted", [])
        self.value = 0
        self.times = 0
        self.samples = ()

    def __setattr__(self, name: str, value: object) -> None:
        self.noted.append(name)
        object.__setattr__(self, name, value)


def test_the_compiled_put_writes_slots_only_where_setattr_would(tmp_path):
    """The compiled put reads and writes the fields of slots classes in their slots, skipping
    the lookup by name; a class with a __setattr__ of its own is written through it, as the
    original writes it, and the counts come out the same either way."""
    async def go() -> tuple:
        broker = started_broker(tmp_path)
        send = SendProcessor(broker)
        native = speedups.NATIVE["stored_at_once"]
        step = ("plain", "TopicA", 1, 100, 7, 1)
        native(*arguments(broker, send, step))  # the topic's items made by the original
        plain = broker.stats._topic_put["TopicA"]
        watched = broker.stats._topic_put["TopicA"] = tuple(WatchedItem() for _ in range(3))
        for item in watched:
            item.noted.clear()  # its __init__'s own
        stored_before = broker.store.stats.put_bytes
        with counted_fallbacks("stored_at_once") as fell:
            for i in range(3):
                native(*arguments(broker, send, ("plain", "TopicA", 1, 100, 8 + i, 2 + i)))
        counts = (plain[0].value, plain[0].times, [(w.value, w.times) for w in watched],
                  [w.noted for w in watched], broker.store.stats.put_times,
                  broker.store.stats.put_bytes - stored_before, len(fell))
        await broker.store.close()
        return counts

    value, times, watched, noted, put_times, stored, fell = asyncio.run(go())
    assert (value, times) == (1, 1)  # the StatsItems themselves, in their slots
    assert fell == 0 and put_times == 4 and stored > 300
    assert watched == [(3, 3), (stored, 3), (3, 0)]
    assert noted == [["value", "times"] * 3, ["value", "times"] * 3, ["value"] * 3]

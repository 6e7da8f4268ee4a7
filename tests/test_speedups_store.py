"""The accelerator's store twins (csrc/records.c, append.c, dispatch.c, message.c's
batch_messages) against their pure Python: a put's records encoded, stamped, given ids,
placed, indexed and dispatched, on every record of the Java 4.9.8 store and on odd and
hostile input. The send path's twins are in test_speedups_send.py."""

from __future__ import annotations

import ctypes
import errno
import os
import random
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

from rmqnode import speedups
from rmqnode.storage.commitlog import CommitLog
from rmqnode.storage.index import IndexService
from rmqnode.storage.records import decode_record, index_file_size, record_fields
from rmqnode.storage.store import Message
from twins import (counted_fallbacks, java_records, mutate, outcome, random_text, same,
                   same_in_place, same_with_odd_arguments)


def test_odd_records_encode_or_fail_identically():
    base = dict(topic="T", queue_id=1, flag=0, body=b"body", properties="KEYS\x01k",
                sys_flag=0, born_timestamp=1, born_host=bytes(8), store_timestamp=2,
                store_host=bytes(8))
    odd = [dict(topic="t" * 200), dict(topic="\ud800"), dict(properties="p" * 40000),
           dict(born_host=bytes(20)), dict(store_host=bytes(20), sys_flag=0x30),
           dict(born_host=bytes(16)), dict(queue_id=2**31), dict(queue_id=True),
           dict(body=bytearray(b"b")), dict(born_timestamp=1.0), dict(crc=None), dict(crc=-1),
           dict(crc=2**32), dict(reconsume_times=3, prepared_transaction_offset=-9),
           dict(queue_offset=2**63), dict(physical_offset=-1), dict(sys_flag=0x10)]
    for change in odd:
        same("encode_record", **{**base, **change})
    rng = random.Random(32)
    for size in [0, 1, 7, 8, 2047, 2048, 2049, 5000] + [rng.randrange(3000) for _ in range(200)]:
        body = bytes(rng.randrange(256) for _ in range(size))
        same("encode_record", **{**base, "body": body})  # the body CRC, short and long
    same("encode_record", *base.values())
    same("encode_record", **{**base, "unknown": 1})
    same("encode_record", **{k: v for k, v in base.items() if k != "topic"})


def stored_message(rec, **changes) -> Message:
    """A Java record as the store is given it again."""
    fields = dict(topic=rec.topic, queue_id=rec.queue_id, body=rec.body,
                  properties=rec.properties, flag=rec.flag, sys_flag=rec.sys_flag,
                  born_timestamp=rec.born_timestamp, born_host=rec.born_host,
                  reconsume_times=rec.reconsume_times,
                  prepared_transaction_offset=rec.prepared_transaction_offset,
                  properties_string=rec.properties_text)
    return Message(**{**fields, **changes})


def test_java_store_records_put_in_batches_identically(java_store_pristine):
    """Every Java record encoded again 32 at a time, stamped, given ids and indexed by both
    implementations: the same bytes; the records equal Java's but for what the append
    patches in (queue and physical offsets, store time)."""
    records = list(java_records(java_store_pristine))
    index = bytearray(index_file_size(97, 3000))  # few slots: long collision chains
    count = 1
    for at in range(0, len(records), 32):
        chunk = records[at:at + 32]
        msgs = [stored_message(rec) for _, rec in chunk]
        store_host = chunk[0][1].store_host
        _, _, (blob, sizes) = same("encode_messages", msgs, store_host, 4 * 1024 * 1024)
        assert sizes == [len(raw) for raw, _ in chunk]
        (kind, _, _), stamped = same_in_place("stamp_records", blob, sizes, at, 1 << 40, 1234)
        assert kind == "returned"
        pos = 0
        for i, ((_, rec), size) in enumerate(zip(chunk, sizes)):
            again = decode_record(stamped, pos)
            assert (again.queue_offset, again.commit_log_offset, again.store_timestamp) == \
                (at + i, (1 << 40) + pos, 1234)
            assert record_fields(again) | {"queue_offset": 0, "physical_offset": 0,
                                           "store_timestamp": 0} == \
                record_fields(rec) | {"queue_offset": 0, "physical_offset": 0,
                                      "store_timestamp": 0}
            pos += size
        same("offset_msg_ids", store_host, 1 << 40, sizes)
        keys, offsets = [], []
        for (_, rec), offset in zip(chunk, range(at, at + len(chunk))):
            for key in [rec.msg_id, *rec.keys]:
                keys.append(key)
                offsets.append(offset)
        (_, _, count), index = same_in_place("index_put", index, 97, count, 3000, 1000,
                                             chunk[0][1].topic, keys, offsets, 9000)
    assert count > len(records)
    # a put with the properties left to the dict (a delayed message's)
    msgs = [stored_message(rec, properties_string=None) for _, rec in records[:64]]
    same("encode_messages", msgs, records[0][1].store_host, 4 * 1024 * 1024)


def test_java_store_records_sent_in_batches_make_the_same_messages(java_store_pristine):
    """Every Java record sent again in a batch body of 32 (batch_messages: copies of the
    header's message, each entry's properties merged with the header's): the same messages
    from both implementations, each entry's properties text kept as the producer wrote it,
    and the template left as it was."""
    from rmqnode.message import BatchEntry, encode_batch
    from rmqnode.storage.javamap import properties_string

    records = [rec for _, rec in java_records(java_store_pristine)]
    template = Message("T", 3, b"", {}, 0, 4, 1700000000000, bytes(range(8)), 2)
    shared = {"CLUSTER": "DefaultCluster", "WAIT": "true", "POP_CK": "x", "KEYS": "header"}
    count = 0
    for at in range(0, len(records), 32):
        chunk = records[at:at + 32]
        body = encode_batch([BatchEntry(r.body, r.properties, r.flag) for r in chunk])
        for props in (shared, {}):
            _, _, msgs = same("batch_messages", body, template, props, properties_string(props))
            assert [m.body for m in msgs] == [r.body for r in chunk]
            assert all(m.properties_string.startswith(properties_string(r.properties))
                       for m, r in zip(msgs, chunk))
            assert all("POP_CK" not in m.properties for m in msgs)
            count += len(msgs)
    assert template == Message("T", 3, b"", {}, 0, 4, 1700000000000, bytes(range(8)), 2)
    assert count == 2 * len(records)


def test_puts_of_other_message_classes_and_every_body_length_encode_identically():
    """encode_messages reads a store.Message's fields from its slots: a message with a slot
    unset, a subclass that overrides a field, a look-alike class, and every body length around
    the CRC's 64- and 16-byte steps give what the original gives."""
    good = Message("T", 1, b"body", {"KEYS": "k"}, properties_string="KEYS\x01k")

    class Renamed(Message):
        topic = property(lambda self: "Renamed", lambda self, value: None)  # type: ignore

    @dataclass(slots=True)
    class Lookalike:
        topic: str
        queue_id: int
        body: bytes
        properties_string: str
        flag: int = 0
        sys_flag: int = 0
        born_timestamp: int = 0
        born_host: bytes = bytes(8)
        reconsume_times: int = 0
        prepared_transaction_offset: int = 0

    unset = Message.__new__(Message)
    renamed = Renamed("T", 1, b"body", properties_string="")
    alike = Lookalike("L", 2, b"look", "A\x01b")
    for batch in ([good, unset], [unset], [renamed], [good, renamed, good], [alike, good],
                  [good, alike, renamed]):
        same("encode_messages", batch, bytes(8), 100)
    rng = random.Random(64)
    for size in list(range(300)) + [rng.randrange(300, 70000) for _ in range(50)]:
        body = bytes(rng.randrange(256) for _ in range(size))
        for data in (body, bytes(size), b"\xff" * size):
            _, _, (blob, _) = same("encode_messages", [Message("T", 1, data)], bytes(8), 1 << 20)
            assert decode_record(blob, 0).body_crc == zlib.crc32(data) & 0x7FFFFFFF


def terminated(text: str) -> bool:
    """Whether a compact ASCII str's characters end with a NUL, as CPython keeps them."""
    return ctypes.string_at(id(text) + sys.getsizeof("") - 1 + len(text), 1) == b"\0"


def test_odd_and_hostile_batches_make_the_same_messages_or_fail_identically():
    from rmqnode.message import BatchEntry, encode_batch

    rng = random.Random(3200)
    template = Message("T", 1, b"", {}, 0, 0, 5, bytes(8), 0)
    shared = {"CLUSTER": "c", "TAGS": "t\u00e9"}
    entries = [BatchEntry(bytes(rng.randrange(40)), {"KEYS": f"k{i}", "POP_CK": "p"}, i)
               for i in range(5)] + [BatchEntry(b"e", {}, -1),
                                     BatchEntry(b"u", {"KEYS": "\u00e9 \U0001f600"}, 2)]
    data = encode_batch(entries)
    # an entry whose properties end with the separator, as clients write them
    raw = "UNIQ_KEY\x01u\x02".encode()
    tail_sep = struct.pack(">iiiii", 22 + 1 + len(raw), 0, 0, 7, 1) + b"b" + \
        struct.pack(">h", len(raw)) + raw
    for body in (data, tail_sep, data + tail_sep, b"", bytearray(data), "text", None):
        for tail in ("CLUSTER\x01c", "", 5):
            kind, _, msgs = same("batch_messages", body, template, shared, tail)
            if kind == "returned":  # C code reads the text as a C string too
                assert all(terminated(m.properties_string) for m in msgs if
                           m.properties_string.isascii())
    assert terminated("")  # no entry's text was written into the shared empty str
    for _ in range(3000):
        same("batch_messages", mutate(rng, data), template, shared, "CLUSTER\x01c")

    @dataclass(slots=True)
    class Other:  # a slots dataclass without all of Message's fields
        body: bytes = b""

    for odd in (Other(), object(), None, BatchEntry(b"")):
        same("batch_messages", data, odd, shared, "t")
    unset = Message.__new__(Message)
    same("batch_messages", data, unset, shared, "t")
    for odd_shared in ([("K", "v")], None, {"K": 1}, {1: "v"}):
        same("batch_messages", data, template, odd_shared, "t")
    same("batch_messages", data, template, shared)
    # the names the C code keeps interned, and names that almost are
    same("decode_properties", "KEYS\x01a\x02UNIQ_KEY\x01b\x02TAGSX\x01c\x02TAG\x01d\x02WAIT\x01"
         "\x02__transactionId__\x01t\x02DELAY\x01\u00e9\x02\u00e9KEYS\x01e")


def test_odd_puts_encode_or_fail_identically():
    good = Message("T", 1, b"body", {"KEYS": "k"}, properties_string="KEYS\x01k")
    odd = [dict(body=b"x" * 101), dict(topic="t" * 128), dict(topic="\u00e9" * 64),
           dict(topic="\ud800"), dict(properties_string=None),
           dict(properties_string=None, properties={"K": "\ud800"}),
           dict(properties_string="p" * 32768), dict(properties_string="p" * 32767),
           dict(properties_string="\udfff"), dict(queue_id=2**31), dict(flag=-2**31 - 1),
           dict(sys_flag=True), dict(sys_flag=0x30), dict(reconsume_times=2**31),
           dict(born_timestamp=2**63), dict(prepared_transaction_offset=-2**63),
           dict(born_host=bytes(20)), dict(born_host=bytes(16)), dict(body=bytearray(b"b")),
           dict(body=memoryview(b"m")), dict(body="text"), dict(born_timestamp=1.0)]
    for change in odd:
        msg = Message(**{**{f: getattr(good, f) for f in good.__slots__}, **change})
        for batch in ([msg], [good, msg, good], [good] * 3):
            for store_host in (bytes(8), bytes(20), bytes(5)):
                same("encode_messages", batch, store_host, 100)
    same("encode_messages", [], bytes(8), 100)
    same("encode_messages", (good,), bytes(8), 100)
    same("encode_messages", [good, object()], bytes(8), 100)
    same("encode_messages", [good], bytearray(8), 100)
    same("encode_messages", [good], bytes(8), "100")


def test_odd_stamps_and_ids_fail_identically():
    rng = random.Random(99)
    one = Message("T", 1, b"body", properties_string="")
    six = Message("T", 1, b"b6", properties_string="", born_host=bytes(20))
    blob, sizes = speedups.PURE["encode_messages"]([one, six, one], bytes(8), 100)
    cases = [(sizes, 0, 0, 1), ([sizes[0]], 5, 7, 9), ([], 0, 0, 0), (sizes + [10], 0, 0, 0),
             ([sizes[0], 0, 30], 0, 0, 0), ([-10, 20], 0, 0, 0), ([len(blob) + 1], 0, 0, 0),
             ([sizes[0], "x"], 0, 0, 0), ((sizes[0],), 0, 0, 0), (sizes, 2**63 - 2, 0, 0),
             (sizes, 0, 2**63 - sizes[0], 0), (sizes, 0, 0, -2**63), (sizes, 0, 0, 2**63),
             (sizes, -1, -2**63, 0), (sizes, 0.0, 0, 0), ([True, 1], 0, 0, 0)]
    for args in cases:
        same_in_place("stamp_records", blob, *args)
        same_in_place("stamp_records", blob[:60], *args)
    same("stamp_records", bytes(blob), *cases[0])
    same("stamp_records", memoryview(blob), *cases[0])
    for host in (bytes(8), bytes(20), b"", b"\xff" * 3):
        for offset, sizes in ((0, [1, 2, 3]), (2**63 - 3, [1, 1, 1]), (2**63 - 3, [1, 5]),
                              (-1, [1]), (5, [-6, 1]), (5, [1, -1, 9]), (0, [True]),
                              (2**64, []), (0, (1, 2)), (0, [1.0, 2]), (3, [])):
            same("offset_msg_ids", host, offset, sizes)
    for _ in range(200):
        same("offset_msg_ids", bytes(rng.randrange(256) for _ in range(8)),
             rng.randrange(2**62), [rng.randrange(1, 5000) for _ in range(rng.randrange(40))])
    same("offset_msg_ids", "host", 0, [1])


def test_records_are_placed_identically_in_a_file_or_refused_with_nothing_placed(tmp_path):
    """place_records (stamp, then pwrite at the file's write position): each implementation
    gets its own copies of the records and of the file; results, exceptions, the records and
    the file's bytes agree."""
    one = Message("T", 1, b"body", properties_string="")
    six = Message("T", 1, b"b6", properties_string="", born_host=bytes(20))
    blob, sizes = speedups.PURE["encode_messages"]([one, six, one], bytes(8), 100)
    size = 4096
    stamps = [(sizes, 0, 0, 1), ([sizes[0]], 5, 7, 9), ([], 0, 0, 0), (sizes + [10], 0, 0, 0),
              ([sizes[0], 0, 30], 0, 0, 0), ([len(blob) + 1], 0, 0, 0), ((sizes[0],), 0, 0, 0),
              (sizes, 2**63 - 2, 0, 0), (sizes, 0, 2**63 - sizes[0], 0), (sizes, 0, 0, 2**63),
              (sizes, 0.0, 0, 0)]
    places = [0, 100, size - len(blob), size - len(blob) + 1, size, -1, 2**63, 1.0, True]
    limits = [size, size - 1, 0, -1, 2**63, None]

    def placed(impl, name, records, pos, limit, *args, fd=None):
        path = tmp_path / name
        path.write_bytes(bytes(range(256)) * (size // 256))
        own = os.open(path, os.O_RDWR)
        try:
            result = outcome(impl, own if fd is None else fd, pos, limit, records, *args)
        finally:
            os.close(own)
        return result, path.read_bytes()

    for args in stamps:
        for pos in places:
            for limit in limits:
                for records in (blob, blob[:60]):
                    mine, theirs = bytearray(records), bytearray(records)
                    pure = placed(speedups.PURE["place_records"], "p", mine, pos, limit, *args)
                    native = placed(speedups.NATIVE["place_records"], "n", theirs, pos, limit,
                                    *args)
                    assert (native, theirs) == (pure, mine), (pos, limit, args)
    result, data = placed(speedups.NATIVE["place_records"], "n", bytearray(blob), 8, size,
                          *stamps[0])
    assert result == ("returned", int, 8 + len(blob))
    stamped = bytearray(blob)
    speedups.PURE["stamp_records"](stamped, *stamps[0])
    assert data[8:8 + len(blob)] == stamped
    for fd in (-1, 2**31, 10**6, "3", None):  # closed, out of range, not a descriptor
        mine, theirs = bytearray(blob), bytearray(blob)
        assert placed(speedups.NATIVE["place_records"], "n", theirs, 0, size, *stamps[0], fd=fd) \
            == placed(speedups.PURE["place_records"], "p", mine, 0, size, *stamps[0], fd=fd)
        assert theirs == mine
    read_only = os.open(tmp_path / "p", os.O_RDONLY)
    try:  # EBADF from the write itself, after the stamping
        mine, theirs = bytearray(blob), bytearray(blob)
        assert outcome(speedups.NATIVE["place_records"], read_only, 0, size, theirs, sizes, 0, 0,
                       1) == outcome(speedups.PURE["place_records"], read_only, 0, size, mine,
                                     sizes, 0, 0, 1)
        assert theirs == mine
    finally:
        os.close(read_only)
    same("place_records", 0, 0, size, bytes(blob), *stamps[0])
    same("place_records", 0, 0, size, bytearray(blob), *stamps[0][:3])


SHORT_WRITE = """
import os, resource, signal, sys
from rmqnode import speedups
import rmqnode.storage.commitlog  # noqa: F401 - binds place_records
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
fd = os.open(sys.argv[1], os.O_RDWR)
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))
records = bytearray(open(sys.argv[2], "rb").read())
try:
    speedups.{impl}["place_records"](fd, 900, 4096, records, [len(records)], 0, 0, 1)
except OSError as exc:
    print(type(exc).__name__, exc.errno, exc)
"""


def test_a_write_that_stops_short_is_continued_then_fails_as_the_same_oserror(tmp_path):
    """A file-size limit cuts a pwrite short at 1000 bytes (a real short write, as a disk that
    fills mid-write gives) and refuses the rest with EFBIG: both implementations write the
    same first 100 bytes and raise the same OSError, which store._append turns into a refused
    put with no write position moved."""
    blob, sizes = speedups.PURE["encode_messages"](
        [Message("T", 1, b"x" * 300, properties_string="")], bytes(8), 4096)
    (tmp_path / "records").write_bytes(blob)
    got = {}
    for impl in ("PURE", "NATIVE"):
        path = tmp_path / impl
        path.write_bytes(bytes(4096))
        run = subprocess.run([sys.executable, "-c", SHORT_WRITE.replace("{impl}", impl),
                              str(path), str(tmp_path / "records")],
                             capture_output=True, text=True, check=True)
        got[impl] = run.stdout, path.read_bytes()
    assert got["NATIVE"] == got["PURE"]
    out, data = got["PURE"]
    assert out == f"OSError {errno.EFBIG} [Errno {errno.EFBIG}] File too large\n"
    stamped = bytearray(blob)
    speedups.PURE["stamp_records"](stamped, sizes, 0, 0, 1)
    assert data[900:1000] == stamped[:100] and data[1000:] == bytes(3096)


def test_appended_records_are_read_through_the_shared_mapping(tmp_path):
    """The CommitLog writes with pwrite and reads through its mapping: the mapping must be
    MAP_SHARED (one page cache), so that readers see every put as soon as it returns."""
    log = CommitLog(str(tmp_path / "commitlog"), 1 << 16, bytes(8))
    put = Message("T", 2, b"body", properties_string="KEYS\x01k")
    for i in range(3):
        records, sizes = speedups.PURE["encode_messages"]([put] * (i + 1), bytes(8), 100)
        appended = log.append(records, "T", 2, sizes)
        assert log.view(appended.wrote_offset, len(records)) == records
        assert log.message_at(appended.wrote_offset).queue_offset == i * (i + 1) // 2
    mf = log.files.last()
    assert os.pread(mf.fd, mf.wrote_position, 0) == bytes(mf.view())
    maps = [line.split() for line in Path("/proc/self/maps").read_text().splitlines()
            if line.endswith(str(mf.path))]
    assert [fields[1] for fields in maps] == ["rw-s"]
    log.files.close()


def test_random_and_odd_index_puts_write_identically():
    rng = random.Random(7)
    slots, limit = 13, 60
    index = bytearray(index_file_size(slots, limit))
    count = 1
    while count < limit:
        keys = [random_text(rng, 8) for _ in range(rng.randrange(1, 9))]
        offsets = sorted(rng.randrange(2**40) for _ in keys)
        (kind, _, result), index = same_in_place(
            "index_put", index, slots, count, limit, 1000, random_text(rng, 6), keys, offsets,
            rng.choice([0, 999, 1000, 5000, 2**40, 2**63 - 1]))
        if kind == "returned":
            count = result
    base = [slots, 1, limit, 0, "T", ["a", "b"], [1, 2], 5000]
    odd = {1: [0, -1, 2**31, 2**20, "13"], 2: [0, -1, limit, limit + 1, 2**31], 3: [2, 1, -1],
           4: [-2**63, 2**63, 10**4], 5: ["\udfff", "", 7], 6: [["a", 1], ["a"] * 100, ("a",)],
           7: [[1], [-2**63, 2**63], [1, "x"], (1, 2)], 8: [-1, 2**63 - 1, 2**63, 1.5]}
    for at, values in odd.items():
        for value in values:
            args = list(base)
            args[at - 1] = value
            same_in_place("index_put", bytearray(index_file_size(slots, limit)), *args)
            same_in_place("index_put", bytearray(100), *args)
    same("index_put", bytes(index_file_size(slots, limit)), *base)


def index_runs(impl: str, root: Path, runs: list, spoil=None) -> tuple[list, list]:
    """Runs of keys (topic, keys, offsets, store time) indexed as the reput indexes them:
    index_in_last by `impl`, IndexService.build where it says no. Its answers, and each
    index file's bytes and figures after (`spoil(service)` first, when given)."""
    service = IndexService(str(root), 11, 40)
    answers = []
    for topic, keys, offsets, stamp in runs:
        if spoil is not None:
            spoil(service)
        got = outcome(getattr(speedups, impl)["index_in_last"], service.files, topic, keys,
                      offsets, stamp)
        answers.append(got)
        if got == ("returned", bool, False):
            answers.append(outcome(service.build, topic, keys, offsets, stamp))
    files = [(f.name, f.index_count, f.begin_timestamp, f.end_timestamp, f.begin_phy_offset,
              f.end_phy_offset, bytes(f.mf.mm) if f.mf.mm is not None else None)
             for f in service.files]
    for f in service.files:
        f.mf.close()  # (the header as it is: a spoiled file cannot write its own)
    return answers, files


def test_index_runs_go_into_the_last_file_identically(tmp_path):
    """The reput's index runs (csrc/records.c's index_in_last) against the pure original:
    the same answers and the same index files, through files that fill and roll, runs of
    keys indexed before, and last files spoiled in every way the C reads them."""
    rng = random.Random(11)
    runs, offset, stamp = [], 0, 1_700_000_000_000
    for _ in range(60):
        # (no lone surrogates: frames that hold one are refused before a message is made)
        keys = [random_text(rng, 8).encode("utf-8", "replace").decode()
                for _ in range(rng.randrange(1, 7))]
        offsets = []
        for _ in keys:
            offset += rng.choice([0, 300])
            offsets.append(offset)
        stamp += rng.choice([0, 1, 999, 5000])
        runs.append((rng.choice(["T", "TopicA", "主题"]), keys, offsets, stamp))
    runs.insert(30, ("T", ["again"], [0], stamp))  # a message indexed before
    with counted_fallbacks("index_in_last") as calls:
        pure = index_runs("PURE", tmp_path / "pure", runs)
        native = index_runs("NATIVE", tmp_path / "native", runs)
    assert native == pure
    answers, files = pure
    assert len(files) > 3 and answers.count(("returned", bool, True)) > 30
    # the compiled path said no itself only where the original says no: a new file's
    # first run, a run that does not fit, the message indexed before
    assert len(calls) == answers.count(("returned", bool, False)) < 12
    assert answers.count(("returned", type(None), None)) == len(calls)  # build did those

    def spoiler(attr: str, value):
        def spoil(service):
            if service.files:
                target = service.files[-1]
                if attr in ("readonly", "mm"):
                    target = target.mf
                setattr(target, attr, value)
        return spoil
    spoiled = [("index_count", "3"), ("index_count", 2**40), ("max_entries", None),
               ("slots", 0), ("begin_timestamp", 1.5), ("end_phy_offset", 2**70),
               ("readonly", True), ("readonly", 1)]
    for attr, value in spoiled:
        a = index_runs("PURE", tmp_path / f"p-{attr}-{value}", runs[:8], spoiler(attr, value))
        b = index_runs("NATIVE", tmp_path / f"n-{attr}-{value}", runs[:8], spoiler(attr, value))
        assert a == b, (attr, value)
    good = (["k"], [1], 5)
    for odd in [("T", ["k"], [1], 5.0), ("T", ("k",), [1], 5), ("T", ["k"], [1, 2], 5),
                ("T", [], [], 5), ("T", [1], [1], 5), (7, ["k"], [1], 5), ("T", ["k"], ["1"], 5)]:
        a = index_runs("PURE", tmp_path / f"p-{odd}", [("T", *good), odd])
        b = index_runs("NATIVE", tmp_path / f"n-{odd}", [("T", *good), odd])
        assert a == b, odd
    for files in (None, (), "x"):
        same("index_in_last", files, "T", *good)


# -- the reput's request of a single put (csrc/dispatch.c) ------------------------------------


def test_dispatch_requests_read_identically(java_store_pristine):
    """A single put's DispatchRequest fields (tag code, index keys) from every Java record's
    properties, random and odd ones; a delayed message's topic, whose tag slot holds its due
    time, and whatever is not a dict of str go to the one definition."""
    levels = [1000, 5000, 10000]
    for _, rec in java_records(java_store_pristine):
        for topic in (rec.topic, "SCHEDULE_TOPIC_XXXX"):
            same("dispatch_request", topic, rec.queue_id, rec.commit_log_offset,
                 rec.store_size, rec.properties, rec.store_timestamp, rec.queue_offset,
                 rec.sys_flag, levels)
    rng = random.Random(2021)
    names = ["TAGS", "KEYS", "UNIQ_KEY", "DELAY", "WAIT"]
    for _ in range(2000):
        props = {rng.choice(names): rng.choice([random_text(rng), " ".join(
            random_text(rng, 4) for _ in range(rng.randrange(5))), "", " ", "2"])
                 for _ in range(rng.randrange(6))}
        same("dispatch_request", rng.choice(["T", "SCHEDULE_TOPIC_XXXX", random_text(rng)]),
             1, 2, 3, props, 4, 5, rng.choice([0, 4, 8, 12]), rng.choice([levels, []]))
    class Props(dict):
        pass
    class Topic(str):
        pass
    base = ["T", 1, 2, 3, {"TAGS": "a", "KEYS": "k"}, 4, 5, 0, levels]
    odd = {0: [Topic("T"), 7, None, "\ud800"], 1: [None, 2**70], 2: ["x"], 5: [None, 1.5],
           4: [{}, {"TAGS": 5}, {"TAGS": None}, {"TAGS": "\ud800"}, {"TAGS": "\U0001f600"},
               {"UNIQ_KEY": 5}, {"UNIQ_KEY": "", "KEYS": "  a  b "}, {"KEYS": b"k"},
               {"KEYS": "\udfff x"}, {1: 2}, Props(TAGS="a"), None, [("TAGS", "a")]],
           8: [None, [], "levels"]}
    same_with_odd_arguments("dispatch_request", lambda: base, odd)


def test_batch_dispatches_read_identically(java_store_pristine):
    """A batch put's tag codes, index keys with their offsets and shared sysFlag from every
    Java record 32 at a time (on its topic and on the delay topic, whose tag slot holds a due
    time), from random properties and mixed sysFlags; whatever is odd goes to the one
    definition, and both say the same."""
    levels = [1000, 5000, 10000]
    records = [rec for _, rec in java_records(java_store_pristine)]
    for at in range(0, len(records), 32):
        msgs = [stored_message(rec) for rec in records[at:at + 32]]
        sizes = [rec.store_size for rec in records[at:at + 32]]
        for topic in (msgs[0].topic, "SCHEDULE_TOPIC_XXXX"):
            _, _, (codes, keys, offsets, flag) = same(
                "batch_dispatch", topic, msgs, records[at].commit_log_offset, sizes,
                records[at].store_timestamp, levels)
            assert len(codes) == len(msgs) and len(keys) == len(offsets)
    rng = random.Random(2032)
    names = ["TAGS", "KEYS", "UNIQ_KEY", "DELAY", "WAIT"]
    for _ in range(300):
        msgs = [Message("T", 0, b"", {rng.choice(names): rng.choice(
                    [random_text(rng), " ".join(random_text(rng, 4) for _ in range(3)), "",
                     " ", "2"]) for _ in range(rng.randrange(6))},
                        sys_flag=rng.choice([0, 0, 0, 4, 8, 12]))
                for _ in range(rng.randrange(1, 40))]
        same("batch_dispatch", rng.choice(["T", "SCHEDULE_TOPIC_XXXX", random_text(rng)]), msgs,
             rng.choice([0, 2**40]), [rng.randrange(1, 5000) for _ in msgs], 7,
             rng.choice([levels, []]))

    class Props(dict):
        pass

    def base():
        return ["T", [Message("T", 0, b"", {"TAGS": "a", "KEYS": "k j", "UNIQ_KEY": "u"}),
                      Message("T", 0, b"", {"KEYS": " x  y "})], 100, [10, 20], 4, levels]
    odd = {0: [None, "\ud800", b"T"], 1: [[], (), None, [object()], [None]],
           2: [None, 1.5, 2**63 - 15, -2**70, True], 3: [[10], [10, 20, 30], (10, 20),
                                                         [10, 2**63], [10, None], [True, 2]],
           5: [None, "levels"]}
    same_with_odd_arguments("batch_dispatch", base, odd)
    for change in [dict(properties=None), dict(properties=Props(TAGS="a")),
                   dict(properties={"TAGS": 5}), dict(properties={"TAGS": "\ud800"}),
                   dict(properties={"KEYS": b"k"}), dict(properties={"UNIQ_KEY": "\udfff"}),
                   dict(sys_flag=None), dict(sys_flag=True), dict(sys_flag=2**70),
                   dict(sys_flag=8), dict(sys_flag=0.0)]:
        args = base()
        for m in args[1][1:]:
            for name, value in change.items():
                setattr(m, name, value)
        same("batch_dispatch", *args)
    same("batch_dispatch", *base()[:5])
    same("batch_dispatch", *base(), 1)


def test_queue_entries_pack_identically():
    """A run's consume-queue entries: the same bytes, or the same struct.error for a field
    out of range or of another type, from both implementations."""
    rng = random.Random(20)
    for n in [0, 1, 2, 31, 32, 33, 500]:
        sizes = [rng.randrange(1, 2**31) for _ in range(n)]
        tags = [rng.choice([0, -1, 2**63 - 1, -2**63, rng.randrange(-2**31, 2**31)])
                for _ in range(n)]
        _, _, data = same("queue_entries", rng.choice([0, 2**40, 2**62]), sizes, tags)
        assert len(data) == 20 * n
    base = [100, [10, 20], [1, 2]]
    odd = {0: [None, -1, 2**63 - 15, 2**63, -2**63, True, 1.0],
           1: [[2**31, 1], [-2**31 - 1, 1], [-5, 1], [True, 1], [1.0, 1], [1], [1, 2, 3],
               (10, 20), None],
           2: [[2**63, 1], [-2**63 - 1, 1], [False, 1], [None, 1], [1], (1, 2), "ab"]}
    same_with_odd_arguments("queue_entries", lambda: base, odd)

"""The compiled accelerator (rmqnode/csrc/) against the pure-Python code it stands in for:
the same results, bytes and exceptions on every captured frame, every record of the Java 4.9.8
store, and random and hostile input: frames, the batch body, hashes and properties text here;
JSON headers in test_speedups_json.py, the store's and the send path's twins in
test_speedups_store.py."""

from __future__ import annotations

import importlib
import os
import random
import subprocess
import sys

import pytest

from conftest import REPO
from rmqnode import speedups
from rmqnode.message import BatchEntry, encode_batch
from rmqnode.net.codec import (DEFAULT_MAX_FRAME, SERIALIZE_JSON, SERIALIZE_ROCKETMQ,
                               RemotingCommand)
from rmqnode.storage.records import record_fields
from twins import ALL_FRAMES, java_records, mutate, random_text, same
from wire import flows, frames

ACCELERATED = {"java_hash", "decode_properties", "decode_batch", "batch_messages",
               "encode_record", "encode",
               "decode_frame", "decode_frames", "encode_messages", "stamp_records", "index_put",
               "offset_msg_ids", "place_records", "dispatch_request", "batch_dispatch",
               "queue_entries", "decode_json_header", "properties_string", "integer", "int32",
               "sent_message", "stored_answer", "dispatch_plain", "stored_at_once",
               "handle_send", "index_in_last", "serve_read"}


def test_the_extension_is_built_and_chosen_unless_disabled():
    assert speedups.native is not None, "rmqnode/csrc/ was not built (pip install -e .)"
    # A twin binds when its module is imported: the store's, whichever tests ran before.
    importlib.import_module("rmqnode.storage.store")
    importlib.import_module("rmqnode.broker.send")
    assert set(speedups.NATIVE) == ACCELERATED
    probe = "from rmqnode.net import codec; print(type(codec.encode).__name__)"
    for pure, expect in (("", "builtin_function_or_method"), ("1", "function")):
        env = {**os.environ, "RMQNODE_PURE": pure}
        out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=REPO, check=True,
                             capture_output=True, text=True).stdout.strip()
        assert out == expect


def test_every_captured_frame_decodes_and_encodes_identically():
    for f in ALL_FRAMES:
        kind, _, cmd = same("decode_frame", f.raw[4:])
        assert kind == "returned", (f.flow, f.header)
        for st in (None, SERIALIZE_JSON, SERIALIZE_ROCKETMQ):
            same("encode", cmd, st)
        props = (cmd.ext_fields or {}).get("properties") or (cmd.ext_fields or {}).get("i")
        if props is not None:
            same("decode_properties", props)


@pytest.mark.parametrize("flow", flows())
def test_a_whole_flow_split_anywhere_decodes_identically(flow):
    stream = b"".join(f.raw for f in frames(flow))
    rng = random.Random(flow)
    for _ in range(20):
        cut = rng.randrange(len(stream) + 1)
        for part in (bytearray(stream[:cut]), bytearray(stream)):
            kind, _, (cmds, end) = same("decode_frames", part, DEFAULT_MAX_FRAME)
            assert kind == "returned"
        assert end == len(stream) and len(cmds) == len(frames(flow))


def test_every_java_store_record_encodes_and_hashes_identically(java_store_pristine):
    count = 0
    batch = []
    for raw, rec in java_records(java_store_pristine):
        fields = record_fields(rec)
        _, _, again = same("encode_record", **fields)
        assert again == raw
        same("encode_record", **fields, crc=rec.body_crc)
        same("decode_properties", rec.properties_text)
        for text in [rec.topic, rec.tags or "", *rec.keys, f"{rec.topic}#{rec.msg_id}"]:
            same("java_hash", text)
        batch.append(BatchEntry(rec.body, rec.properties, rec.flag))
        count += 1
        if len(batch) == 32:
            _, _, entries = same("decode_batch", encode_batch(batch))
            assert [e.body for e in entries] == [e.body for e in batch]
            batch = []
    assert count == 2873


def test_random_strings_hash_and_split_identically():
    rng = random.Random(21)
    for _ in range(3000):
        text = random_text(rng, 30)
        same("java_hash", text)
        same("decode_properties", text)
    for odd in (None, 5, b"KEYS\x01a", ["x"]):
        same("java_hash", odd)
        same("decode_properties", odd)


def binary_frame(rng: random.Random) -> bytes:
    cmd = RemotingCommand(code=rng.randrange(-5, 400), opaque=rng.randrange(-2**31, 2**31),
                          remark=rng.choice([None, "", random_text(rng).replace("\ud800", "")
                                             .replace("\udfff", "")]),
                          ext_fields=rng.choice([None, {}, {"a": "1", "topic": "T\u00e9"}]),
                          body=bytes(rng.randrange(4)), language=rng.choice(["JAVA", "CPP", "X"]),
                          serialize_type=SERIALIZE_ROCKETMQ)
    return speedups.PURE["encode"](cmd)


def test_hostile_frames_fail_identically():
    rng = random.Random(2121)
    samples = [f.raw for f in ALL_FRAMES[::7]] + [binary_frame(rng) for _ in range(200)]
    for _ in range(6000):
        raw = mutate(rng, rng.choice(samples))
        same("decode_frame", raw[4:])
        same("decode_frames", bytearray(raw), rng.choice([DEFAULT_MAX_FRAME, 64]))
    same("decode_frame", "not a buffer")
    same("decode_frames", bytearray(b"\x00\x00\x00\x08"), "max")


def test_hostile_batches_fail_identically():
    rng = random.Random(320)
    entries = [BatchEntry(bytes(rng.randrange(40)), {"KEYS": f"k{i}", "TAGS": "t\u00e9"}, i)
               for i in range(5)]
    data = encode_batch(entries)
    for _ in range(3000):
        same("decode_batch", mutate(rng, data))
    same("decode_batch", bytearray(data))
    same("decode_batch", "text")


def test_odd_commands_encode_or_fail_identically():
    base = dict(code=310, opaque=1, flag=0, remark=None, ext_fields={"a": "b"}, body=b"x",
                language="JAVA", version=409)
    odd = [dict(flag=True), dict(code=2**40), dict(code=40000), dict(opaque=2**31),
           dict(ext_fields={"a": 1}), dict(ext_fields={1: "a"}), dict(ext_fields={"a": "\ud800"}),
           dict(remark="\udfff"), dict(remark=""), dict(remark="r\u00e9\n\"\\"), dict(language="??"),
           dict(language=None), dict(body=bytearray(b"xy")), dict(body=memoryview(b"z")),
           dict(ext_fields={"": "v", "k": ""}), dict(ext_fields={"k" * 40000: "v"}),
           dict(version=-1), dict(code=1.5)]
    for change in odd:
        cmd = RemotingCommand(**{**base, **change})
        for st in (None, SERIALIZE_JSON, SERIALIZE_ROCKETMQ, 7, "1"):
            same("encode", cmd, st)
    same("encode", "not a command")
    same("encode", RemotingCommand(**base), serialize_type=1)


def test_a_machine_without_a_compiler_still_builds(tmp_path):
    """setup.py marks the extension optional: a failed compile is a warning, not an error."""
    env = {**os.environ, "CC": "/bin/false", "LDSHARED": "/bin/false"}
    done = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--build-lib",
                           str(tmp_path / "lib"), "--build-temp", str(tmp_path / "tmp")],
                          cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "_speedups" in done.stderr
    assert not list((tmp_path / "lib").rglob("*.so"))

"""Frame codec throughput, reported against baselines measured in the same run.

    python benchmarks/bench_codec.py [--seconds 1.0]

Baselines: `json` is json.dumps/json.loads of the same header dict alone (the floor for a JSON
header in Python); `struct` is packing/unpacking only the fixed 8-byte frame prefix. A ratio of
1.0 against `json` would mean the codec adds nothing on top of the JSON work itself.

A/B rows (when the compiled accelerator is built): each byte-level function timed with its
pure-Python code and with the extension (rmqnode/speedups.py), alternating over --rounds
rounds in this one process; the ratio is native ops/s over pure ops/s, median and range.
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import time
from contextlib import contextmanager

from rmqnode import message, speedups
from rmqnode.net import codec
from rmqnode.net.codec import (DEFAULT_MAX_FRAME, SERIALIZE_JSON, SERIALIZE_ROCKETMQ, FrameDecoder,
                               RemotingCommand, encode)
from rmqnode.storage import records

PROPS = "KEYS\x01k1 k2\x02TAGS\x01TagA\x02WAIT\x01true\x02UNIQ_KEY\x017F0000011F9C18B4AAC27C4E2A5B0000\x02"


def send_request(serialize_type: int, body_size: int = 128) -> RemotingCommand:
    fields = {"a": "ProducerGroup", "b": "BenchTopic", "c": "TBW102", "d": "4", "e": "2",
              "f": "0", "g": "1700000000000", "h": "0", "i": PROPS, "j": "0", "k": "false",
              "m": "false"}
    return RemotingCommand(code=310, opaque=12, ext_fields=fields, body=b"x" * body_size,
                           serialize_type=serialize_type)


def rate(fn, seconds: float) -> float:
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            fn()
        n += 200
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=5, help="A/B alternations per row")
    args = parser.parse_args()

    cmd = send_request(SERIALIZE_JSON)
    header = {"code": 310, "extFields": cmd.ext_fields, "flag": 0, "language": "JAVA",
              "opaque": 12, "serializeTypeCurrentRPC": "JSON", "version": 409}
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    prefix = struct.Struct(">ii")
    rows = [
        ("baseline json.dumps(header)", rate(lambda: json.dumps(header, separators=(",", ":")),
                                             args.seconds)),
        ("baseline json.loads(header)", rate(lambda: json.loads(header_bytes), args.seconds)),
        ("baseline struct prefix pack+unpack",
         rate(lambda: prefix.unpack(prefix.pack(100, 50)), args.seconds)),
    ]
    for name, st in (("JSON", SERIALIZE_JSON), ("ROCKETMQ", SERIALIZE_ROCKETMQ)):
        c = send_request(st)
        raw = encode(c)
        batch = raw * 64
        rows.append((f"encode SEND_MESSAGE_V2 {name}", rate(lambda c=c: encode(c), args.seconds)))
        dec = FrameDecoder()
        rows.append((f"decode SEND_MESSAGE_V2 {name} (64 coalesced)",
                     64 * rate(lambda: dec.feed(batch), args.seconds / 2)))
    base_enc, base_dec = rows[0][1], rows[1][1]
    print(f"{'operation':48} {'ops/s':>12} {'vs json baseline':>17}")
    for name, ops in rows:
        ratio = ""
        if name.startswith("encode"):
            ratio = f"{ops / base_enc:.2f}x dumps"
        elif name.startswith("decode"):
            ratio = f"{ops / base_dec:.2f}x loads"
        print(f"{name:48} {ops:12,.0f} {ratio:>17}")
    ab_rows(args.seconds, args.rounds)


# Where each accelerated function lives: the pure ones call each other through these globals.
HOMES = {"encode": codec, "decode_frame": codec, "decode_frames": codec,
         "decode_json_header": codec, "java_hash": message, "decode_properties": message,
         "decode_batch": message, "encode_record": records}

# A send as the C++ client 2.x writes it (tests/fixtures/wire cpp21-transactions, less its ACL
# fields): some extFields values are JSON numbers, the properties escaped, a newline at the end.
CPP_SEND_HEADER = (
    b'{"code":310,"extFields":{"a":"PID_PUB","b":"BenchTopic","c":"TBW102","d":4,"e":0,"f":0,'
    b'"g":"1795560206258","h":0,"i":"KEYS\\u0001k1 k2\\u0002TAGS\\u0001TagA\\u0002WAIT'
    b'\\u0001true\\u0002UNIQ_KEY\\u00017F0000011F9C18B4AAC27C4E2A5B0000\\u0002","j":"0",'
    b'"k":"0","l":16,"m":"0"},"flag":0,"language":"CPP","opaque":2,"remark":"","version":333}\n')


@contextmanager
def implementation(table: dict):
    """Every accelerated function bound to `table`'s (speedups.PURE or NATIVE), then back."""
    before = {name: getattr(home, name) for name, home in HOMES.items()}
    for name, home in HOMES.items():
        setattr(home, name, table[name])
    try:
        yield
    finally:
        for name, home in HOMES.items():
            setattr(home, name, before[name])


def ab_cases() -> list[tuple[str, int, object]]:
    """(row name, items per call, call) for the A/B rows; calls go through the module globals."""
    record = dict(topic="BenchTopic", queue_id=3, flag=0, body=b"x" * 128, properties=PROPS,
                  sys_flag=0, born_timestamp=1700000000000, born_host=bytes(8),
                  store_timestamp=1700000000001, store_host=bytes(8), queue_offset=7,
                  physical_offset=1 << 20)
    batch = message.encode_batch([message.BatchEntry(b"x" * 128, message.decode_properties(PROPS))
                                  for _ in range(32)])
    cases = []
    for name, st in (("JSON", SERIALIZE_JSON), ("ROCKETMQ", SERIALIZE_ROCKETMQ)):
        c = send_request(st)
        stream = bytearray(encode(c) * 64)
        cases.append((f"encode SEND_MESSAGE_V2 {name}", 1, lambda c=c: codec.encode(c)))
        cases.append((f"decode SEND_MESSAGE_V2 {name} (64 coalesced)", 64,
                      lambda s=stream: codec.decode_frames(s, DEFAULT_MAX_FRAME)))
    ours = codec.encode_json_header(send_request(SERIALIZE_JSON))
    cpp_stream = bytearray(struct.pack(">ii", 4 + len(CPP_SEND_HEADER) + 128, len(CPP_SEND_HEADER))
                           + CPP_SEND_HEADER + b"x" * 128) * 64
    cases += [
        ("decode_json_header SEND_MESSAGE_V2, ours", 1, lambda: codec.decode_json_header(ours)),
        ("decode_json_header SEND_MESSAGE_V2, C++'s", 1,
         lambda: codec.decode_json_header(CPP_SEND_HEADER)),
        ("decode SEND_MESSAGE_V2 C++'s JSON (64 coalesced)", 64,
         lambda s=cpp_stream: codec.decode_frames(s, DEFAULT_MAX_FRAME)),
    ]
    answer = send_request(SERIALIZE_JSON).response(fields={"msgId": "0" * 32, "queueId": 3,
                                                           "queueOffset": 7})
    cases += [
        ("encode SEND_MESSAGE answer JSON", 1, lambda: codec.encode(answer)),
        ("encode_record 128 B", 1, lambda: records.encode_record(**record)),
        ("java_hash topic#key", 1, lambda: message.java_hash("BenchTopic#7F0000011F9C18B4AAC2")),
        ("decode_properties", 1, lambda: message.decode_properties(PROPS)),
        ("decode_batch 32 x 128 B", 32, lambda: message.decode_batch(batch)),
    ]
    return cases


def ab_rows(seconds: float, rounds: int) -> None:
    if not speedups.NATIVE:
        print("A/B: the compiled accelerator is not built (pip install -e .)")
        return
    print(f"\n{'A/B: pure vs compiled':48} {'pure ops/s':>12} {'native ops/s':>13} "
          f"{'native/pure median (range)':>28}")
    for name, per_call, fn in ab_cases():
        pure, native = [], []
        for _ in range(rounds):  # alternating, so both share the machine's state
            for table, out in ((speedups.PURE, pure), (speedups.NATIVE, native)):
                with implementation(table):
                    out.append(per_call * rate(fn, seconds / rounds))
        ratios = sorted(n / p for n, p in zip(native, pure))
        print(f"{name:48} {statistics.median(pure):12,.0f} {statistics.median(native):13,.0f} "
              f"{statistics.median(ratios):>12.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})")


if __name__ == "__main__":
    main()

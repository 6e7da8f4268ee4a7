"""Frame codec throughput, reported against baselines measured in the same run.

    python benchmarks/bench_codec.py [--seconds 1.0]

Baselines: `json` is json.dumps/json.loads of the same header dict alone (the floor for a JSON
header in Python); `struct` is packing/unpacking only the fixed 8-byte frame prefix. A ratio of
1.0 against `json` would mean the codec adds nothing on top of the JSON work itself.
"""

from __future__ import annotations

import argparse
import json
import struct
import time

from rmqnode.net.codec import (SERIALIZE_JSON, SERIALIZE_ROCKETMQ, FrameDecoder, RemotingCommand,
                               encode)

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


if __name__ == "__main__":
    main()

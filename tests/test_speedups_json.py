"""The accelerator's JSON header decoder (csrc/json.c) against decode_json_header's pure
Python: every captured header decoded in C, and random and mutated headers decoded or refused
identically (the same command, ext order and value types, or the same exception)."""

from __future__ import annotations

import json
import random
import struct

from rmqnode import speedups
from rmqnode.net.codec import SERIALIZE_JSON
from twins import ALL_FRAMES, counted_fallbacks, outcome, random_text, same


def json_headers() -> list[bytes]:
    out = []
    for f in ALL_FRAMES:
        word = struct.unpack_from(">i", f.raw, 4)[0]
        if word >> 24 == SERIALIZE_JSON:
            out.append(f.raw[8:8 + (word & 0xFFFFFF)])
    return out


def same_header(data) -> tuple:
    """`same` for decode_json_header, by repr too: the ext dict's order and each value's type
    (a str, never the int or bool the JSON held) must match, not only equality."""
    pure = outcome(speedups.PURE["decode_json_header"], data)
    native = outcome(speedups.NATIVE["decode_json_header"], data)
    assert repr(native) == repr(pure) and native == pure, data
    return pure


def test_every_captured_json_header_decodes_identically_and_in_c():
    headers = json_headers()
    assert len(headers) > 500
    with counted_fallbacks("decode_json_header") as calls:
        for header in headers:
            kind, _, _ = same_header(header)
            assert kind == "returned"
            same_header(memoryview(header))
            same_header(bytearray(header))
    assert calls == []  # every captured header (Java, C++, ali-ons) is decoded in C


def test_json_headers_the_c_decoder_hands_to_python():
    """What the twin refuses goes to the one Python definition: the same result or error."""
    cases = [
        b'{"code":1,"code":2}', b'{"code":1,"x":[1,{"y":2}]}', b'{"code":1,"opaque":null}',
        b'{"\\u0063ode":1}', b'{"code":1.0}', b'{"code":1,"extFields":{"k":1.5}}',
        b'{"code":1,"extFields":{"k":1e3}}', b'{"code":1,"extFields":{"k":[1]}}',
        b'{"code":1,"extFields":{"k":"\\ud800"}}', b'{"code":1,"remark":"\xed\xa0\x80"}',
        b'{"code":1,"extFields":{"k":1234567890123456789}}', b'{"code":1} x', b'{"code":01}',
        b'\xef\xbb\xbf{"code":1}', b'{"code":1,"remark":"a\tb"}', b'{"code":1,}', b"{}",
        b'{"code":1,"serializeTypeCurrentRPC":5}', b'{"code":1,"extFields":"x"}', b"",
    ]
    with counted_fallbacks("decode_json_header") as calls:
        for header in cases:
            same_header(header)
    assert len(calls) == len(cases)
    same_header("text")
    same_header(None)


INTS = ["0", "-0", "1", "-1", "310", "2147483647", "-2147483648"]
ODD_INTS = ["2147483648", "-2147483649", "007", "1.0", "1e2", "-", "true", "null", '"7"']
EXT_VALUES = INTS + ['"v"', '""', "false", "true", "null", "99999999999999999",
                     "999999999999999999", "-999999999999999999", '"\\u00e9\\n\\t\\/\\"\\\\"',
                     '"\\b\\f\\r"', '"\\ud83d\\ude00"', '"\u65e5\u00e9"', '"\\u0000"']
ODD_EXT_VALUES = ODD_INTS + ["9999999999999999999", "1" * 30, "[]", "{}", '{"a":"b"}', "1.5",
                             "NaN", '"\\uDE00"', '"\\u12"', '"\\x41"']


def json_text(rng: random.Random, text: str) -> str:
    """`text` as a JSON string: escaped or not, lone surrogates as escapes or raw bytes."""
    return json.dumps(text, ensure_ascii=rng.random() < 0.5)


def random_header(rng: random.Random) -> bytes:
    """A header as a client might write it, or nearly: known keys in any order, values at
    their edges and now and then past them, sometimes a repeated or an unknown key,
    whitespace anywhere."""
    def pick(usual: list[str], odd: list[str], rate: float = 0.03) -> str:
        return rng.choice(odd if rng.random() < rate else usual)

    def ws() -> str:
        return pick(["", "", "", " ", "\n", "\t ", "\r\n"], ["\x0b", "\x0c", "\xa0"], 0.002)

    def text() -> str:
        return json_text(rng, random_text(rng).replace("\ud800", "").replace("\udfff", "")
                         if rng.random() < 0.95 else random_text(rng))

    ext = [(json_text(rng, rng.choice(["a", "b", "topic", "\u00e9", "k\n"])),
            pick(EXT_VALUES + [text()] * 8, ODD_EXT_VALUES))
           for _ in range(rng.randrange(6))]
    pairs = [("code", pick(INTS, ODD_INTS)),
             ("extFields", pick(["{" + ",".join(f"{ws()}{k}{ws()}:{ws()}{v}{ws()}"
                                                for k, v in ext) + "}"] * 9 + ["null"],
                                ["[]", '"x"'])),
             ("flag", pick(INTS, ODD_INTS)), ("opaque", pick(INTS, ODD_INTS)),
             ("version", pick(INTS, ODD_INTS)),
             ("language", pick(['"CPP"', '"JAVA"', '"GO"', '"COBOL"', '"J\\u0041VA"', "null",
                                text()], ["7", "[]"])),
             ("remark", pick(["null", '""', text()], ["5"])),
             ("serializeTypeCurrentRPC", pick(['"JSON"', "null"], ["1", '"\\ud800"']))]
    keep = [(k, v) for k, v in pairs if k == "code" or rng.random() < 0.9]
    if rng.random() < 0.1:  # an unknown or a repeated key
        keep.append((rng.choice(["x", "Code", "code", "extFields", "flag", "c\\u006fde"]),
                     rng.choice(EXT_VALUES + ODD_EXT_VALUES)))
    rng.shuffle(keep)
    body = ",".join(f'{ws()}"{k}"{ws()}:{ws()}{v}{ws()}' for k, v in keep)
    return f"{ws()}{{{body}}}{ws()}".encode("utf-8", "surrogatepass")


def test_random_json_headers_decode_or_fail_identically():
    rng = random.Random(3100)
    decoded = 0
    with counted_fallbacks("decode_json_header") as calls:
        for _ in range(6000):
            kind, _, _ = same_header(random_header(rng))
            decoded += kind == "returned"
    assert decoded > 3000 and len(calls) < 3000  # both ways are taken often


def test_mutated_captured_json_headers_decode_or_fail_identically():
    rng = random.Random(310)
    headers = json_headers()
    inserts = [b'"', b"\\", b"{", b"}", b",", b":", b" ", b"\n", b"0", b"-", b".", b"e", b"u",
               b"\\u", b"\\ud800", b"\x00", b"\xff", "\u00e9".encode(), b"null", b"1.5", b"[1]"]
    for _ in range(8000):
        out = bytearray(rng.choice(headers))
        for _ in range(rng.randrange(1, 3)):
            at = rng.randrange(len(out) + 1)
            choice = rng.randrange(3)
            if choice == 0:
                del out[at:]
            elif choice == 1:
                out[at:at + 1] = rng.choice(inserts)
            else:
                out[at:at] = rng.choice(inserts)
        same_header(bytes(out))
        frame = struct.pack(">i", len(out)) + out + b"body"
        same("decode_frame", frame)

"""The accelerator's send-path twins (csrc/send.c, message.c's sent_message and frames.c's
stored_answer) against their pure Python: a send's properties text in Java's HashMap order,
its header numbers, its whole message and its answer's frame, on every record of the Java
4.9.8 store, every captured single send and its answer, and odd and hostile input."""

from __future__ import annotations

import random

from rmqnode import speedups
from twins import (counted_fallbacks, java_records, random_text, same,
                   same_with_odd_arguments)


# -- the send path's fields (csrc/send.c) ---------------------------------------------------


def bucket_mates(count: int, bucket: int = 5) -> list[str]:
    """`count` names that share one bucket of a 16-slot HashMap (and so grow a small table by
    treeifying, not by load)."""
    names = []
    for i in range(200_000):
        name = f"K{i}"
        h = speedups.PURE["java_hash"](name) & 0xFFFFFFFF
        if (h ^ h >> 16) & 15 == bucket:
            names.append(name)
            if len(names) == count:
                return names
    raise AssertionError("too few names in one bucket")


def test_java_store_properties_write_identically(java_store_pristine):
    """Every record's properties, and as a send writes them (WAIT counted, not written)."""
    for _, rec in java_records(java_store_pristine):
        props = rec.properties
        same("properties_string", props)
        same("properties_string", props, len(props) + 1)
        same("properties_string", {**props, "WAIT": "true"})


def test_random_and_odd_properties_write_identically():
    rng = random.Random(2121)
    names = ["TAGS", "KEYS", "UNIQ_KEY", "WAIT", "CLUSTER", "DELAY", "TRAN_MSG", "PGROUP",
             "MAX_OFFSET", "MIN_OFFSET", "REAL_TOPIC", "REAL_QID", "RETRY_TOPIC"]
    for _ in range(3000):
        props = {rng.choice(names + [random_text(rng, 6)]): random_text(rng, 10)
                 for _ in range(rng.randrange(40))}
        same("properties_string", props)
        same("properties_string", props, rng.choice([0, 1, len(props) + 1, 13, 97, 3000]))
    for count in (8, 9, 17, 30, 40):  # one crowded bucket: resized below 64, not above
        mates = bucket_mates(count)
        for extra in (0, 3, 12, 60):
            props = {k: k.lower() for k in mates + [f"x{i}" for i in range(extra)]}
            same("properties_string", props)
            same("properties_string", props, 50)
    big = {f"name{i}": str(i) for i in range(3000)}
    assert same("properties_string", big)[0] == "returned"
    same("properties_string", {f"n{i}": "v" for i in range(70_000)})  # past the C limit
    base = {"TAGS": "a", "UNIQ_KEY": "b"}
    for odd in ({}, {"\ud800": "x"}, {"TAGS": "\udfff"}, {"TAGS": 5}, {5: "x"}, {b"K": "v"},
                {"": ""}, {"\U0001f600": "\u65e5"}, None, [("a", "b")], "TAGS\x01a"):
        same("properties_string", odd)
        same("properties_string", odd, 3)
    class Props(dict):
        pass
    for peak in (-1, 2**16, 2**16 + 1, 2**70, True, 2.0, "3", None):
        same("properties_string", base, peak)
    same("properties_string", Props(base))
    same("properties_string", base, peak=4)
    same("properties_string", base, 1, 2)
    same("properties_string")


def test_header_numbers_read_identically():
    values = ["0", "-0", "+0", "7", "007", "-1", "1024", "2147483647", "2147483648",
              "-2147483648", "-2147483649", "1700000000000", "9223372036854775807",
              "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
              "1" * 19, "1" * 20, "0" * 25, "", "+", "-", "+-1", " 1", "1 ", "1_000", "1e3",
              "0x10", "\uff11", "\u0663", "1\x00", "\ud800", None, 1, 1.0, True, b"1", ["1"]]
    rng = random.Random(7)
    values += [str(rng.randrange(-2**64, 2**64) // 10 ** rng.randrange(20)) for _ in range(500)]
    for value in values:
        same("integer", value, "bornTimestamp")
        same("integer", value, "f", 1, 100)
        same("integer", value, "f", -2**31, 2**31 - 1, 9)
        same("integer", value, "f", 0, 2**70)
        same("integer", value, "f", "0", 5)
        same("integer", value, "f", default=4)
        same("integer", value, 5)
        same("int32", value, "sysFlag")
        same("int32", value, "sysFlag", 0)
        same("int32", value, "sysFlag", None)
        same("int32", value, "sysFlag", default=-1)
        same("int32", value, b"field", 0)
    same("integer", "1")
    same("int32", "1")
    same("int32", "1", "f", 0, 0)


# -- a single send's message (csrc/message.c) ---------------------------------------------

def _sent(h, n, body=b"body"):
    """Both sent_message implementations on header h: equal messages, the properties in the
    same order (WAIT last, where Java's put back puts it); the outcome."""
    args = (h, n, "T", 3, body, bytes(range(8)), "DefaultCluster")
    kind, _, msg = same("sent_message", *args)
    if kind == "returned":
        again = speedups.PURE["sent_message"](*args)
        assert list(speedups.NATIVE["sent_message"](*args).properties.items()) == \
            list(again.properties.items())
    return kind, msg


def test_every_captured_send_builds_the_same_message():
    """sent_message (header, properties and flag of a send that is not a batch, in one call)
    on every single send real clients made in the captures, and on each with WAIT and POP_CK
    added: the same store.Message from both implementations."""
    from rmqnode.broker.send import header_names
    from rmqnode.net.codec import decode_frame
    from twins import ALL_FRAMES

    seen = 0
    for f in ALL_FRAMES:
        if f.header.get("code") not in (10, 310) or f.header.get("flag", 0) & 1:
            continue
        cmd = decode_frame(f.raw[4:])
        h = cmd.ext_fields or {}
        n = header_names(h)
        if (h.get(n.batch) or "").lower() in ("true", "1"):
            continue
        with counted_fallbacks("sent_message") as calls:
            kind, msg = _sent(h, n, cmd.body)
        assert calls == [], f.flow  # built in C
        assert kind == "returned" and msg.properties["CLUSTER"] == "DefaultCluster", f.flow
        text = h.get(n.properties) or ""
        for extra in ("\x02WAIT\x01false", "\x02POP_CK\x01ck", "\x02WAIT\x01true\x02CLUSTER\x01c"):
            kind, msg = _sent({**h, n.properties: text + extra}, n, cmd.body)
            assert kind == "returned" and "POP_CK" not in msg.properties
            assert "WAIT" not in (msg.properties_string or "")
        seen += 1
    assert seen > 20


def test_odd_send_headers_build_or_fail_identically(monkeypatch):
    """Every header field sent_message reads, absent, empty, malformed, out of range or of the
    wrong type, in both header versions; and odd arguments: the same message or the same
    error (the pure original words every refusal). A header without bornTimestamp is born
    "now", read once by each implementation: the clock stands still here, or a millisecond
    ticking between the two calls makes them differ."""
    import types

    from rmqnode.broker import send
    from rmqnode.broker.send import V1, V2

    monkeypatch.setattr(send, "time", types.SimpleNamespace(time=lambda: 1_700_000_000.123))

    odd_numbers = ["", "x", "-1", "+7", " 7", "7 ", "\u0663", "2147483648", "-2147483649",
                   "9" * 19, "9" * 20, "0x10", 7, None, "\ud800"]
    odd_texts = ["", "KEYS\x01k", "\x01\x02\x02", "WAIT\x01x", "POP_CK", "\ud800\x01v",
                 "TAGS\x01\u00e9", 5, None, b"KEYS\x01k"]
    for n in (V1, V2):
        base = {n.topic: "T", n.queueId: "3", n.sysFlag: "0", n.bornTimestamp: "1700000000000",
                n.flag: "0", n.properties: "KEYS\x01k\x02WAIT\x01true", n.reconsumeTimes: "0"}
        assert _sent(base, n)[0] == "returned"
        for field in (n.sysFlag, n.bornTimestamp, n.flag, n.reconsumeTimes):
            for value in odd_numbers:
                _sent({**base, field: value}, n)
            _sent({k: v for k, v in base.items() if k != field}, n)
        for value in odd_texts:
            _sent({**base, n.properties: value}, n)
        _sent({k: v for k, v in base.items() if k != n.properties}, n)
        _sent({**base, n.sysFlag: str(0x7FF | 0x10000)}, n)  # only the client's bits kept
    good = ({V1.sysFlag: "4", V1.bornTimestamp: "1"}, V1, "T", 0, b"b", bytes(8), "C")
    same_with_odd_arguments("sent_message", lambda: good, {
        0: [[], {1: "x"}, None], 1: [list(V1), V1[:5], ("a",) * 14, V1._replace(sysFlag=5)],
        2: [b"T", None], 3: ["0", 2**31, True], 4: ["b", bytearray(b"b")],
        5: ["host", None], 6: [b"C", 0]})


# -- a stored send's answer (csrc/frames.c) ------------------------------------------------


def test_every_captured_send_answer_encodes_the_same_frame():
    """stored_answer on the fields of every answer the Java broker gave a send in the
    captures, in both serialize types: the same frame from both implementations, made in
    C, and it decodes to the captured answer's code, opaque and fields."""
    import rmqnode.broker.send  # noqa: F401 - binds the twin
    from rmqnode.net.codec import SERIALIZE_JSON, SERIALIZE_ROCKETMQ, decode_frame
    from wire import exchanges, flows

    seen = 0
    for flow in flows():
        for request, answer in exchanges(flow):
            if request.header.get("code") not in (10, 310, 320) or answer is None:
                continue
            got = decode_frame(answer.raw[4:])
            ext = got.ext_fields or {}
            if "msgId" not in ext:
                continue  # a refusal
            for st in (SERIALIZE_JSON, SERIALIZE_ROCKETMQ):
                args = (got.code, got.opaque, st, ext["msgId"], int(ext["queueId"]),
                        int(ext["queueOffset"]))
                with counted_fallbacks("stored_answer") as calls:
                    kind, _, frame = same("stored_answer", *args)
                assert calls == [] and kind == "returned", flow
                mine = decode_frame(frame[4:])
                assert (mine.code, mine.opaque, mine.flag & 1) == (got.code, got.opaque, 1)
                assert {k: mine.ext_fields[k] for k in ext if k in mine.ext_fields} == \
                    {k: v for k, v in ext.items() if k in mine.ext_fields}, flow
            seen += 1
    assert seen > 20


def test_odd_send_answers_encode_or_fail_identically():
    """Ids that JSON must escape or the binary header skips, numbers at and past their
    limits, and arguments of the wrong type: the same frame or the same error."""
    import rmqnode.broker.send  # noqa: F401 - binds the twin
    rng = random.Random(310)
    for _ in range(500):
        same("stored_answer", rng.choice([0, 10, 12, -1]), rng.randrange(-2**31, 2**31),
             rng.choice([0, 1]), random_text(rng, 40), rng.randrange(-9, 2**31),
             rng.randrange(-2**63, 2**63))
    good = (0, 7, 0, "7F00000100002A9F0000000000000000", 3, 42)
    same_with_odd_arguments("stored_answer", lambda: good, {
        0: [2**15, -2**15 - 1, 2**63, "0", None, True], 1: [2**31, -2**31 - 1, 2**64, 1.0],
        2: [2, -1, None, "0", True], 3: ["", "a\"b\\c\x01", "\u00e9,\u4e2d", "\ud800", b"id", None],
        4: [2**63, -2**63 - 1, "3", None], 5: [2**63, "42", None, False]})
    for st in (0, 1):
        with counted_fallbacks("stored_answer") as calls:
            same("stored_answer", 10, -2**31, st, "a,b,c", -1, -2**63)
        assert calls == []

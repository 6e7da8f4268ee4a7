"""The remoting codec against every frame real clients, mqadmin and a real broker exchanged."""

from __future__ import annotations

import json
import struct

import pytest

from rmqnode.errors import FrameError
from rmqnode.net import codec
from rmqnode.net.codec import (SERIALIZE_JSON, SERIALIZE_ROCKETMQ, FrameDecoder, RemotingCommand,
                               decode_frame, encode)
from wire import flows, frames

ALL_FRAMES = [f for flow in flows() for f in frames(flow)]


def test_captures_are_there():
    assert len(ALL_FRAMES) > 600
    assert {f.header["language"] for f in ALL_FRAMES} >= {"JAVA", "CPP"}


@pytest.mark.parametrize("flow", flows())
def test_every_captured_frame_decodes_to_its_header(flow):
    for f in frames(flow):
        dec = FrameDecoder()
        [cmd] = dec.feed(f.raw)
        assert dec.pending == 0
        h = f.header
        assert (cmd.code, cmd.opaque, cmd.flag, cmd.language, cmd.version) == \
            (h["code"], h["opaque"], h["flag"], h["language"], h["version"])
        assert cmd.remark == h.get("remark")
        assert len(cmd.body) == f.body_length
        ext = h.get("extFields")
        if ext is None:
            assert cmd.ext_fields is None
        else:
            # Peers send numbers and booleans too; handlers always see Java's string form.
            expect = {k: ("true" if v is True else "false" if v is False else str(v))
                      for k, v in ext.items() if v is not None}
            assert cmd.ext_fields == expect


def test_frames_written_by_java_reencode_byte_for_byte():
    java = [f for f in ALL_FRAMES if "serializeTypeCurrentRPC" in f.header]
    assert len(java) > 300
    for f in java:
        assert encode(decode_frame(f.raw[4:])) == f.raw, (f.flow, f.header)


def test_frames_from_other_serializers_roundtrip_semantically():
    for f in ALL_FRAMES:
        cmd = decode_frame(f.raw[4:])
        again = decode_frame(encode(cmd)[4:])
        assert again == cmd


def test_numbers_and_booleans_in_ext_fields_become_java_strings():
    header = b'{"code":310,"extFields":{"d":4,"k":false,"m":true,"x":null,"s":"v"},"flag":0,' \
             b'"language":"NODE_JS","opaque":7,"version":0}\n'
    [cmd] = FrameDecoder().feed(struct.pack(">ii", 4 + len(header), len(header)) + header)
    assert cmd.ext_fields == {"d": "4", "k": "false", "m": "true", "s": "v"}
    assert cmd.int_field("d") == 4 and cmd.bool_field("m") and not cmd.bool_field("k")


def test_binary_rocketmq_header_roundtrip():
    cmd = RemotingCommand(code=11, opaque=-5, flag=2, remark="r\u00e9mark",
                          ext_fields={"topic": "T\u65e5", "queueId": "3"}, body=b"\x00\x01",
                          language="CPP", version=333, serialize_type=SERIALIZE_ROCKETMQ)
    raw = encode(cmd)
    assert raw[4] == SERIALIZE_ROCKETMQ
    again = decode_frame(raw[4:])
    assert again == cmd
    # The same command as JSON decodes to the same values.
    assert decode_frame(encode(cmd, SERIALIZE_JSON)[4:]).ext_fields == cmd.ext_fields


def test_binary_header_drops_empty_values_like_java():
    cmd = RemotingCommand(code=1, ext_fields={"a": "", "b": "x"}, serialize_type=SERIALIZE_ROCKETMQ)
    assert decode_frame(encode(cmd)[4:]).ext_fields == {"b": "x"}


def test_partial_and_coalesced_reads():
    raws = [f.raw for f in ALL_FRAMES[:40]]
    stream = b"".join(raws)
    dec = FrameDecoder()
    got = []
    for i in range(len(stream)):  # byte by byte
        got += dec.feed(stream[i:i + 1])
    assert [encode(c) for c in got] == [encode(decode_frame(r[4:])) for r in raws]
    dec = FrameDecoder()
    assert len(dec.feed(stream)) == 40  # all at once
    dec = FrameDecoder()
    got = dec.feed(stream[:1000]) + dec.feed(stream[1000:5003]) + dec.feed(stream[5003:])
    assert len(got) == 40 and dec.pending == 0


def _frame(word: int, header: bytes, body: bytes = b"") -> bytes:
    return struct.pack(">ii", 4 + len(header) + len(body), word) + header + body


@pytest.mark.parametrize("raw, message", [
    (struct.pack(">i", 2) + b"xx", "frame length 2"),
    (struct.pack(">i", 17 * 1024 * 1024) + b"\0" * 8, "outside"),
    (_frame(50, b"{}"), "header length 50 exceeds"),
    (_frame(2 << 24 | 2, b"{}"), "unknown serialize type 2"),
    (_frame(5, b"{nope"), "JSON header does not parse"),
    (_frame(2, b"[]"), "not an object"),
    (_frame(12, b'{"code":"x"}'), "'code' is not a Java int: 'x'"),
    (_frame(1 << 24 | 4, b"\0\0\0\0"), "shorter than its fixed part"),
    (_frame(1 << 24 | 21, struct.pack(">hbhiii", 1, 0, 1, 1, 0, 0) + struct.pack(">i", 99)),
     "extFields length 99"),
])
def test_malformed_frames_raise_precise_errors(raw, message):
    with pytest.raises(FrameError, match=message):
        FrameDecoder().feed(raw)


def test_max_frame_size_is_configurable():
    cmd = RemotingCommand(code=10, body=b"x" * 5000)
    raw = encode(cmd)
    assert len(FrameDecoder(max_frame=len(raw)).feed(raw)) == 1
    with pytest.raises(FrameError):
        FrameDecoder(max_frame=len(raw) - 1).feed(raw)


def test_json_header_matches_fastjson_layout():
    cmd = RemotingCommand(code=0, opaque=3, flag=1, remark="a\nb",
                          ext_fields={"msgId": "AB", "queueId": "1"})
    header = encode(cmd)[8:]
    assert header == (b'{"code":0,"extFields":{"msgId":"AB","queueId":"1"},"flag":1,'
                      b'"language":"JAVA","opaque":3,"remark":"a\\nb",'
                      b'"serializeTypeCurrentRPC":"JSON","version":409}')
    assert json.loads(header)["remark"] == "a\nb"


def _decoded(decode, data: bytes) -> object:
    try:
        return decode(data)
    except FrameError as exc:
        return f"FrameError: {exc}"


ODD_HEADERS = [
    b'{"code":1,"x":NaN,"y":-Infinity}',            # msgspec refuses, json accepts
    b'{"code":1,"opaque":123456789012345678901234567890}',  # past 64 bits
    b'{"code":1,"v":1e400,"w":-0.0,"z":0.1}',
    b'{"code":1,"code":2}',                          # the last one wins
    b'{"code":1,"s":"\\ud800 lone surrogate","t":"\\u00e9\\n"}',
    '{"code":1,"extFields":{"s":"é日😀"}}'.encode(),
    b'{"code":1,"extFields":{"s":"\\ud83d\\ude00 a pair"}}',
    b'\xef\xbb\xbf{"code":1}',                       # a byte-order mark
    b' \t{"code":1}\r\n',
    b'{"code":1,"remark":"tab\tinside"}',           # a raw control character
    b'{"code":1}{"code":2}',
    b'{"code":1,"remark":"\xff"}',                   # not UTF-8
    b'{"code":1,"language":"COBOL","opaque":null,"flag":null,"remark":null}',
    b'{"code":1,"extFields":{"n":5,"b":true,"z":null,"d":{"k":[1]}}}',
    b"[1,2]", b"null", b"", b"{",
]


@pytest.mark.parametrize("data", ODD_HEADERS)
def test_msgspec_and_the_standard_parser_agree_on_odd_headers(data):
    """msgspec (the `fast` extra, which CI installs) must change nothing but speed: what it
    refuses goes to json, and what it accepts must decode to what json makes of it."""
    assert codec._fast_header is not None, "msgspec is missing: pip install -e '.[fast]'"
    assert repr(_decoded(codec.decode_json_header, data)) == \
        repr(_decoded(codec.decode_json_header_std, data))


def test_msgspec_and_the_standard_library_agree_on_every_captured_header():
    assert codec._fast_header is not None, "msgspec is missing: pip install -e '.[fast]'"
    fast = 0
    for f in ALL_FRAMES:
        word = struct.unpack_from(">i", f.raw, 4)[0]
        if word >> 24 != SERIALIZE_JSON:
            continue
        header = f.raw[8:8 + (word & 0xFFFFFF)]
        assert codec.decode_json_header(header) == codec.decode_json_header_std(header), f.flow
        try:
            codec._fast_header(header)
            fast += 1
        except ValueError:
            pass
        ext = decode_frame(f.raw[4:]).ext_fields
        if ext:
            assert codec.ext_json_fast(ext) == codec.ext_json_std(ext), f.flow
    assert fast > 500  # the fast path is the common one, not a decoration


# -- what a hostile peer may put in a JSON header ----------------------------------------------


def _json_frame(header: bytes) -> bytes:
    return _frame(len(header), header)


@pytest.mark.parametrize("header", [
    b'{"code":1,"extFields":{"k":"\\ud800"}}',
    b'{"code":1,"extFields":{"k":"x\\uDFFFy"}}',
    b'{"code":1,"extFields":{"\\udbff":"v"}}',
    b'{"code":1,"extFields":{"k":"\\ud800\\u0041"}}',   # a high surrogate, then no low one
    b'{"code":1,"remark":"\\udc00"}',
    b'{"code":1,"language":"\\ud800"}',
    b'{"code":1,"extFields":{"k":["\\ud800"]}}',          # inside a value made a string
])
def test_lone_surrogates_in_a_json_header_are_refused(header):
    for decode in (codec.decode_json_header, codec.decode_json_header_std):
        with pytest.raises(FrameError, match="lone UTF-16 surrogate"):
            decode(header)
    with pytest.raises(FrameError, match="lone UTF-16 surrogate"):
        FrameDecoder().feed(_json_frame(header))


def test_surrogate_pairs_and_escaped_backslashes_are_not_lone_surrogates():
    cmd = codec.decode_json_header_std(b'{"code":1,"extFields":{"e":"\\ud83d\\ude00",'
                                       b'"b":"\\\\ud800"}}')
    assert cmd.ext_fields == {"e": "\U0001f600", "b": "\\ud800"}


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
@pytest.mark.parametrize("where", ["extFields", "x", "remark"])
def test_deeply_nested_json_headers_are_refused_without_recursion(depth, where):
    header = b'{"code":1,"%s":%s%s}' % (where.encode(), b"[" * depth, b"]" * depth)
    with pytest.raises(FrameError, match="nests deeper than 64 levels"):
        FrameDecoder().feed(_json_frame(header))
    unclosed = b'{"code":1,"%s":%s' % (where.encode(), b"[" * depth)
    with pytest.raises(FrameError, match="nests deeper than 64 levels"):
        FrameDecoder().feed(_json_frame(unclosed))


def test_nesting_up_to_the_limit_and_brackets_in_strings_are_fine():
    inner = b"[" * 62 + b"]" * 62  # the header and extFields are two levels
    cmd = decode_frame(_json_frame(b'{"code":1,"extFields":{"k":%s,"s":"%s"}}'
                                   % (inner, b"[{" * 5000))[4:])
    assert cmd.ext_fields["k"] == "[" * 62 + "]" * 62
    assert cmd.ext_fields["s"] == "[{" * 5000


@pytest.mark.parametrize("field", ["opaque", "flag", "version", "code"])
@pytest.mark.parametrize("value", [b"Infinity", b"-Infinity", b"NaN", b"1e400", b"1.5", b"2.0",
                                   b"true", b"false", b'"7"', b"[1]", b"{}",
                                   b"2147483648", b"-2147483649", b"9" * 4000])
def test_header_ints_must_be_java_ints(field, value):
    header = b'{"code":1,"%s":%s}' % (field.encode(), value)
    with pytest.raises(FrameError, match=f"'{field}' is not a Java int"):
        FrameDecoder().feed(_json_frame(header))


def test_numbers_past_pythons_conversion_limit_do_not_parse():
    with pytest.raises(FrameError, match="does not parse"):
        FrameDecoder().feed(_json_frame(b'{"code":1,"opaque":%s}' % (b"9" * 5000)))


@pytest.mark.parametrize("value", [2147483647, -2147483648, 0])
def test_header_ints_at_the_java_limits_decode(value):
    header = b'{"code":%d,"flag":%d,"opaque":%d,"version":%d}' % ((value,) * 4)
    cmd = decode_frame(_json_frame(header)[4:])
    assert (cmd.code, cmd.flag, cmd.opaque, cmd.version) == (value,) * 4


@pytest.mark.parametrize("field, value", [("remark", b"5"), ("remark", b"[]"),
                                          ("language", b"{}"), ("language", b"1"),
                                          ("extFields", b'"x"')])
def test_header_strings_of_the_wrong_type_are_refused(field, value):
    with pytest.raises(FrameError, match=f"'{field}' is not"):
        FrameDecoder().feed(_json_frame(b'{"code":1,"%s":%s}' % (field.encode(), value)))


def test_refusals_quote_a_bounded_excerpt_of_the_peer_value():
    with pytest.raises(FrameError) as info:
        FrameDecoder().feed(_json_frame(b'{"code":1,"opaque":"%s"}' % (b"A" * 1_000_000)))
    assert len(str(info.value)) < 200 and "1000000 chars" in str(info.value)


def test_binary_headers_refuse_encoded_surrogates():
    """UTF-8 cannot hold a surrogate; a peer that encodes one anyway fails the frame."""
    surrogate = "\ud800".encode("utf-8", "surrogatepass")
    ext = struct.pack(">h", 1) + b"k" + struct.pack(">i", len(surrogate)) + surrogate
    header = struct.pack(">hbhiii", 1, 0, 1, 1, 0, 0) + struct.pack(">i", len(ext)) + ext
    with pytest.raises(FrameError, match="not UTF-8"):
        FrameDecoder().feed(_frame(1 << 24 | len(header), header))


def test_ext_fields_are_escaped_alike_by_both_encoders():
    text = "".join(map(chr, range(0x80))) + "\u2028\u2029\u00e9\u20ac\U0001f600\ufeff\ue000"
    ext = {text: text, "empty": "", "": "k", 'q"': "\\"}
    assert codec.ext_json_fast(ext) == codec.ext_json_std(ext)
    assert json.loads(codec.ext_json_std(ext)) == ext

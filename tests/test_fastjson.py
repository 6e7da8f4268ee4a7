"""fastjson's non-standard JSON, as the Java broker, name server and clients write it."""

from __future__ import annotations

import json

import pytest

from rmqnode.net import fastjson
from rmqnode.net.fastjson import ObjectKey, UnquotedKey
from wire import flows, frames


def _bodies():
    for flow in flows():
        for f in frames(flow):
            if f.body_length:
                body = f.raw[-f.body_length:]
                if body[:1] in (b"{", b"["):
                    yield f, body


def test_every_captured_json_body_parses():
    count = nonstandard = 0
    for f, body in _bodies():
        value = fastjson.loads(body)
        assert isinstance(value, (dict, list))
        count += 1
        try:
            json.loads(body)
        except ValueError:
            nonstandard += 1
    assert count > 100 and nonstandard > 20


def test_unquoted_numeric_and_object_keys():
    value = fastjson.loads('{"brokerAddrs":{0:"a:1",1:"b:2"},'
                           '"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:{"x":1}}}')
    assert value["brokerAddrs"] == {"0": "a:1", "1": "b:2"}
    [key] = value["offsetTable"]
    assert isinstance(key, ObjectKey) and key.as_dict() == {"brokerName": "b", "queueId": 0,
                                                            "topic": "T"}


def test_dumps_writes_the_same_forms_back():
    text = fastjson.dumps({"a": {UnquotedKey(0): "x"},
                           "t": {ObjectKey.of({"topic": "T", "queueId": 1}): 2.5},
                           "s": "\u65e5\u0001", "n": None, "b": [True, False]})
    assert text == '{"a":{0:"x"},"t":{{"queueId":1,"topic":"T"}:2.5},"s":"\u65e5\\u0001",' \
                   '"n":null,"b":[true,false]}'
    assert fastjson.loads(text)["s"] == "\u65e5\u0001"
    assert fastjson.dumps({"s": "\u65e5"}, ascii_only=True) == '{"s":"\\u65e5"}'


@pytest.mark.parametrize("bad", ['{"a":}', '{"a":1,,}', '{a b}', '[1 2]', '{"a":1} x', ''])
def test_malformed_json_is_rejected(bad):
    with pytest.raises(ValueError):
        fastjson.loads(bad)


def test_cpp_heartbeat_with_trailing_newline_parses():
    [body] = [b for f, b in _bodies() if f.header["code"] == 34 and f.header["language"] == "CPP"][:1]
    data = fastjson.loads(body)
    assert "clientID" in data


def test_the_fast_writer_and_the_general_one_agree_on_every_captured_body():
    """dumps hands values without fastjson-only keys to json's C encoder; both writers must
    give the same text for everything real peers sent (and for ASCII-only output)."""
    checked = 0
    for _, body in _bodies():
        value = fastjson.loads(body)
        for ascii_only in (False, True):
            assert fastjson.dumps(value, ascii_only) == fastjson.dumps_fastjson(value, ascii_only)
        checked += 1
    assert checked > 100


# -- what a hostile peer may put in a JSON body ------------------------------------------------


@pytest.mark.parametrize("body", [
    '{"a":"\\ud800"}', '{"\\udfff":1}', '["x","\\uDBFF\\u0041"]', '{"t":{0:"\\udc00"}}',
    '{{"topic":"\\ud800","queueId":0}:1}',  # inside a fastjson object key
])
def test_lone_surrogates_in_a_body_are_refused(body):
    with pytest.raises(ValueError, match="lone UTF-16 surrogate"):
        fastjson.loads(body)
    with pytest.raises(ValueError, match="lone UTF-16 surrogate"):
        fastjson.loads(body.encode())


def test_surrogate_pairs_in_a_body_are_fine():
    assert fastjson.loads('{"e":"\\ud83d\\ude00","b":"\\\\ud800"}') == {"e": "\U0001f600",
                                                                       "b": "\\ud800"}


@pytest.mark.parametrize("opening", ["[", '{"a":', "{{", "{0:["])
@pytest.mark.parametrize("depth", [fastjson.BODY_MAX_DEPTH + 1, 100_000])
def test_deeply_nested_bodies_are_refused_without_recursion(opening, depth):
    with pytest.raises(ValueError, match="nests deeper than"):
        fastjson.loads(opening * depth)


def test_bodies_nesting_up_to_the_limit_parse_on_both_parsers():
    depth = fastjson.BODY_MAX_DEPTH
    assert fastjson.loads("[" * depth + "]" * depth)
    # Unquoted keys send it to the recursive fastjson parser: two Python frames a level.
    nonstandard = "{0:" * (depth - 1) + "[]" + "}" * (depth - 1)
    value = fastjson.loads(nonstandard)
    for _ in range(depth - 1):
        value = value["0"]
    assert value == []
    assert fastjson.loads('{"s":"' + "[{" * 10_000 + '"}') == {"s": "[{" * 10_000}

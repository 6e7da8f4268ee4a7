"""The remoting frame and its two header serializations, without any IO.

Frame: int32 total length (not counting itself), int32 whose high byte is the serialize type
(0 JSON, 1 ROCKETMQ binary) and low 24 bits the header length, the header, the body.

Peers differ in what they put in extFields: Java and C++ send strings, ali-ons JSON numbers and
booleans, C++ ends its JSON header with a newline. Everything is accepted and normalised to
strings on decode, so handlers read one type; responses go out with string values, as the Java
broker writes them, because C++ 1.x ignores non-string values and Go fails the whole frame.
"""

from __future__ import annotations

import json
import json.encoder
import json.scanner
import struct
from dataclasses import dataclass
from typing import Annotated, Literal

from rmqnode.errors import FrameError, RemotingError
from rmqnode.net.codes import ResponseCode
from rmqnode.net.fastjson import lone_surrogate_in, nests_deeper
from rmqnode.speedups import accelerate
from rmqnode.validation import INT32, INT64, integer, quote

SERIALIZE_JSON = 0
SERIALIZE_ROCKETMQ = 1

FLAG_RESPONSE = 0x1
FLAG_ONEWAY = 0x2

DEFAULT_MAX_FRAME = 16 * 1024 * 1024
# A header nests two levels (the header, extFields); the standard parser recurses per level.
HEADER_MAX_DEPTH = 64

# The version ordinal we announce: V4_9_8 in MQVersion.Version (4.9.4 = 401, each release is
# preceded by its SNAPSHOT). Brokers must send >= V3_0_11 for namesrv to read RegisterBrokerBody.
OUR_VERSION = 409

LANGUAGES = ("JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP",
             "GO", "PHP", "OMS", "RUST", "NODE_JS")
LANGUAGE_CODES = {name: i for i, name in enumerate(LANGUAGES)}

_HEAD = struct.Struct(">ii")
_BIN_FIXED = struct.Struct(">hbhiii")  # code, language, version, opaque, flag, remark length
_INT = struct.Struct(">i")
_SHORT = struct.Struct(">h")
_json_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_quote = json.encoder.encode_basestring  # the C string quoter json.dumps uses
_scan = json.scanner.make_scanner(json.JSONDecoder())  # json.loads minus its wrapping
_WHITESPACE = " \t\n\r"
try:
    import msgspec
    import msgspec.json
except ImportError:  # the `fast` extra is not installed
    _fast_header = _fast_dumps = None
else:
    _JavaInt = Annotated[int, msgspec.Meta(ge=INT32[0], le=INT32[1])]

    class _Header(msgspec.Struct, forbid_unknown_fields=True):
        """A header as Java, Go and C++ write it, every value of its Java type. Anything else
        (a null, an unknown key or language, an int out of range, a float, and all that
        msgspec refuses: NaN, lone surrogates) goes to the standard parser, which checks it
        field by field: so no value of the wrong type gets through either path, and nothing
        nests deeper than extFields here."""

        code: _JavaInt
        extFields: dict[str, str | int | bool | None] | None = None
        flag: _JavaInt = 0
        language: Literal[LANGUAGES] = "OTHER"  # type: ignore[valid-type]
        opaque: _JavaInt = 0
        remark: str | None = None
        serializeTypeCurrentRPC: str | None = None
        version: _JavaInt = 0

    _fast_header = msgspec.json.Decoder(_Header).decode
    _fast_dumps = msgspec.json.Encoder().encode


def ext_value(value: object) -> str | None:
    """A header value as Java would see it after toString(); None means 'absent'."""
    if type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    if value is None:
        return None
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    return _json_dumps(value)


@dataclass(slots=True)
class RemotingCommand:
    """One request or response. `ext_fields` is None when the header had no extFields at all."""

    code: int
    opaque: int = 0
    flag: int = 0
    remark: str | None = None
    ext_fields: dict[str, str] | None = None
    body: bytes = b""
    language: str = "JAVA"
    version: int = OUR_VERSION
    serialize_type: int = SERIALIZE_JSON

    @property
    def is_response(self) -> bool:
        return bool(self.flag & FLAG_RESPONSE)

    @property
    def is_oneway(self) -> bool:
        return bool(self.flag & FLAG_ONEWAY)

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def request(cls, code: int, fields: dict[str, object] | None = None, body: bytes = b"",
                oneway: bool = False) -> RemotingCommand:
        ext = None
        if fields is not None:
            ext = {k: s for k, v in fields.items() if (s := ext_value(v)) is not None}
        return cls(code=code, flag=FLAG_ONEWAY if oneway else 0, ext_fields=ext, body=body)

    def response(self, code: int = ResponseCode.SUCCESS, remark: str | None = None,
                 fields: dict[str, object] | None = None, body: bytes = b"") -> RemotingCommand:
        """The answer to this request: same opaque, response flag, string-valued fields."""
        ext = None
        if fields is not None:
            ext = {k: s for k, v in fields.items() if (s := ext_value(v)) is not None}
        return RemotingCommand(code=code, opaque=self.opaque, flag=FLAG_RESPONSE, remark=remark,
                               ext_fields=ext, body=body)

    # -- reading header fields the way Java's decodeCommandCustomHeader does -----------------

    def field(self, name: str, default: str | None = None) -> str | None:
        ext = self.ext_fields
        if ext is None:
            return default
        return ext.get(name, default)

    def require(self, name: str) -> str:
        value = self.field(name)
        if value is None or value == "":
            raise RemotingError(ResponseCode.SYSTEM_ERROR, f"the custom field <{name}> is null")
        return value

    def int_field(self, name: str, default: int | None = None, lo: int = INT64[0],
                  hi: int = INT64[1]) -> int:
        """A number field as Java's header decoder reads it: digits only, within [lo, hi]
        (a long unless told otherwise); SYSTEM_ERROR with a short remark otherwise."""
        return integer(self.field(name), name, lo, hi, default)

    def bool_field(self, name: str, default: bool = False) -> bool:
        value = self.field(name)
        if value is None or value == "":
            return default
        return value.lower() == "true"


# -- headers --------------------------------------------------------------------------------


def encode_json_header(cmd: RemotingCommand) -> bytes:
    """The same bytes as json.dumps(header, separators=(",", ":"), ensure_ascii=False) of
    the header dict, built directly: every send is answered with one, so it is a hot path.
    fastjson writes bean properties in alphabetical order; so do we, so that a request or
    response we build looks like one a Java peer built."""
    ext = cmd.ext_fields
    fields = "" if ext is None else f'"extFields":{_ext_json(ext)},'
    remark = "" if cmd.remark is None else f'"remark":{_quote(cmd.remark)},'
    return (f'{{"code":{cmd.code},{fields}"flag":{cmd.flag},"language":{_quote(cmd.language)},'
            f'"opaque":{cmd.opaque},{remark}"serializeTypeCurrentRPC":"JSON",'
            f'"version":{cmd.version}}}').encode()


def parse_json_std(data: bytes | memoryview) -> object:
    """The standard library's parser: the reference, and the one whose errors we report.
    Refuses what would break later: nesting past HEADER_MAX_DEPTH (a RecursionError in the
    parser) and lone surrogates (every later write of the value to a file would fail)."""
    try:
        text = str(data, "utf-8").strip(_WHITESPACE)
    except UnicodeDecodeError as exc:
        raise FrameError(f"JSON header does not parse: {exc}") from None
    if nests_deeper(text, HEADER_MAX_DEPTH):
        raise FrameError(f"JSON header nests deeper than {HEADER_MAX_DEPTH} levels")
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        raise FrameError("JSON header does not parse: no JSON value") from None
    except ValueError as exc:
        raise FrameError(f"JSON header does not parse: {exc}") from None
    if end != len(text):
        raise FrameError(f"JSON header does not parse: extra data at {end}")
    if lone_surrogate_in(text, value):
        raise FrameError("JSON header holds a lone UTF-16 surrogate")
    return value


def ext_json_std(ext: dict[str, str]) -> str:
    """extFields as JSON text, string values only, escaped as json.dumps escapes them."""
    return "{" + ",".join([_quote(k) + ":" + _quote(v) for k, v in ext.items()]) + "}"


def ext_json_fast(ext: dict[str, str]) -> str:
    """The same text as ext_json_std, from msgspec (the `fast` extra) in a fifth of the time."""
    return _fast_dumps(ext).decode()  # type: ignore[misc]


_ext_json = ext_json_std if _fast_dumps is None else ext_json_fast


def decode_json_header(data: bytes | memoryview) -> RemotingCommand:
    """msgspec (the `fast` extra) decodes a well-typed header in a quarter of the time;
    whatever it refuses goes to the standard parser, so what is accepted, and how a refusal
    is worded, does not depend on the extra."""
    if _fast_header is not None:
        try:
            h = _fast_header(data)
        except ValueError:
            pass
        else:  # positional: the field order of RemotingCommand
            ext = h.extFields
            return RemotingCommand(h.code, h.opaque, h.flag, h.remark,
                                   None if ext is None else _java_strings(ext), b"",
                                   h.language, h.version, SERIALIZE_JSON)
    return decode_json_header_std(data)


decode_json_header = accelerate(decode_json_header, RemotingCommand=RemotingCommand,
                                LANGUAGE_CODES=LANGUAGE_CODES)


def _java_strings(ext: dict[str, object]) -> dict[str, str]:
    """extFields with Java's string values: Java sends strings only; the C++ client and
    ali-ons send a few numbers, converted in place (JSON object keys are strings already)."""
    for key in [k for k, v in ext.items() if type(v) is not str]:
        value = ext_value(ext[key])
        if value is None:
            del ext[key]
        else:
            ext[key] = value
    return ext  # type: ignore[return-value]


def _java_int(header: dict, name: str) -> int:
    """An int field as Java's fastjson reads it into RemotingCommand: absent is 0 (but for
    `code`), anything not a JSON integer within int32 fails the frame, as in Java."""
    value = header.get(name)
    if value is None and name != "code":
        return 0
    if type(value) is not int or not INT32[0] <= value <= INT32[1]:
        raise FrameError(f"JSON header {name!r} is not a Java int: {quote(value)}")
    return value


def decode_json_header_std(data: bytes | memoryview) -> RemotingCommand:
    """The header through the standard parser, every field checked for its Java type."""
    header = parse_json_std(data)
    if not isinstance(header, dict):
        raise FrameError("JSON header is not an object")
    code = _java_int(header, "code")
    raw_ext = header.get("extFields")
    ext: dict[str, str] | None
    if raw_ext is None:
        ext = None
    elif isinstance(raw_ext, dict):
        ext = _java_strings(raw_ext)
    else:
        raise FrameError("JSON header 'extFields' is not an object")
    remark = header.get("remark")
    if remark is not None and type(remark) is not str:
        raise FrameError(f"JSON header 'remark' is not a string: {quote(remark)}")
    language = header.get("language")
    if language is not None and type(language) is not str:
        raise FrameError(f"JSON header 'language' is not a string: {quote(language)}")
    return RemotingCommand(code, _java_int(header, "opaque"), _java_int(header, "flag"), remark,
                           ext, b"", language if language in LANGUAGE_CODES else "OTHER",
                           _java_int(header, "version"), SERIALIZE_JSON)


def encode_binary_header(cmd: RemotingCommand) -> bytes:
    remark = cmd.remark.encode() if cmd.remark else b""
    ext = bytearray()
    for key, value in (cmd.ext_fields or {}).items():
        k = key.encode()
        v = value.encode()
        if not k or not v:
            continue  # Java writes neither null nor empty strings
        ext += _SHORT.pack(len(k)) + k + _INT.pack(len(v)) + v
    language = LANGUAGE_CODES.get(cmd.language, LANGUAGE_CODES["OTHER"])
    return b"".join((_BIN_FIXED.pack(cmd.code, language, cmd.version, cmd.opaque, cmd.flag,
                                     len(remark)), remark, _INT.pack(len(ext)), bytes(ext)))


def decode_binary_header(data: bytes | memoryview) -> RemotingCommand:
    data = bytes(data)
    n = len(data)
    if n < _BIN_FIXED.size + 4:
        raise FrameError(f"binary header of {n} bytes is shorter than its fixed part")
    code, language, version, opaque, flag, remark_len = _BIN_FIXED.unpack_from(data, 0)
    pos = _BIN_FIXED.size
    if remark_len < 0 or pos + remark_len + 4 > n:
        raise FrameError(f"binary header remark length {remark_len} overruns the header")
    try:
        remark = data[pos:pos + remark_len].decode() if remark_len else None
        pos += remark_len
        (ext_len,) = _INT.unpack_from(data, pos)
        pos += 4
        if ext_len < 0 or pos + ext_len != n:
            raise FrameError(f"binary header extFields length {ext_len} does not match the header")
        ext: dict[str, str] | None = {} if ext_len else None
        while pos < n:
            (klen,) = _SHORT.unpack_from(data, pos)
            pos += 2
            key = data[pos:pos + klen].decode()
            pos += klen
            (vlen,) = _INT.unpack_from(data, pos)
            pos += 4
            if klen < 0 or vlen < 0 or pos + vlen > n:
                raise FrameError("binary header extFields entry overruns the header")
            ext[key] = data[pos:pos + vlen].decode()
            pos += vlen
    except struct.error:
        raise FrameError("binary header extFields are truncated") from None
    except UnicodeDecodeError:
        raise FrameError("binary header holds a string that is not UTF-8") from None
    lang = LANGUAGES[language] if 0 <= language < len(LANGUAGES) else "OTHER"
    return RemotingCommand(code=code, opaque=opaque, flag=flag, remark=remark, ext_fields=ext,
                           language=lang, version=version, serialize_type=SERIALIZE_ROCKETMQ)


# -- frames ---------------------------------------------------------------------------------


def encode(cmd: RemotingCommand, serialize_type: int | None = None) -> bytes:
    """The whole frame, length prefix included. Defaults to the type the command arrived in."""
    st = cmd.serialize_type if serialize_type is None else serialize_type
    header = encode_binary_header(cmd) if st == SERIALIZE_ROCKETMQ else encode_json_header(cmd)
    body = cmd.body
    return b"".join((_HEAD.pack(4 + len(header) + len(body), (st << 24) | len(header)), header,
                     body))


encode = accelerate(encode, LANGUAGE_CODES=LANGUAGE_CODES)


def decode_frame(frame: bytes | memoryview) -> RemotingCommand:
    """Decode one frame given without its 4-byte length prefix."""
    view = memoryview(frame)
    if len(view) < 4:
        raise FrameError(f"frame of {len(view)} bytes has no header-length word")
    (word,) = _INT.unpack_from(view, 0)
    st = (word >> 24) & 0xFF
    hlen = word & 0xFFFFFF
    if hlen > len(view) - 4:
        raise FrameError(f"header length {hlen} exceeds the frame ({len(view) - 4} bytes left)")
    header = view[4:4 + hlen]
    if st == SERIALIZE_JSON:
        cmd = decode_json_header(header)
    elif st == SERIALIZE_ROCKETMQ:
        cmd = decode_binary_header(header)
    else:
        raise FrameError(f"unknown serialize type {st}")
    cmd.body = bytes(view[4 + hlen:])
    return cmd


decode_frame = accelerate(decode_frame, RemotingCommand=RemotingCommand, LANGUAGES=LANGUAGES)


def decode_frames(buf: bytearray, max_frame: int, pos: int = 0) -> tuple[list[RemotingCommand], int]:
    """Every whole frame in buf from pos on, and where the first incomplete one starts. A frame
    larger than `max_frame` (counted with its length prefix, like Java's frameMaxLength) or
    one that does not parse raises FrameError."""
    out: list[RemotingCommand] = []
    n = len(buf)
    while n - pos >= 4:
        (total,) = _INT.unpack_from(buf, pos)
        if total < 4 or total + 4 > max_frame:
            raise FrameError(f"frame length {total} is outside 4..{max_frame - 4}")
        if n - pos - 4 < total:
            break
        out.append(decode_frame(memoryview(buf)[pos + 4:pos + 4 + total]))
        pos += 4 + total
    return out, pos


decode_frames = accelerate(decode_frames)


class FrameDecoder:
    """Incremental decoder: feed whatever the socket gave, get every complete command back.

    Handles partial and coalesced reads. A frame larger than `max_frame` (counted with its
    length prefix, like Java's frameMaxLength) or one that does not parse raises FrameError,
    after which the connection must be closed: the stream position is lost.
    """

    __slots__ = ("_buf", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._buf = bytearray()
        self.max_frame = max_frame

    def feed(self, data: bytes) -> list[RemotingCommand]:
        buf = self._buf
        if buf:
            buf += data
            out, pos = decode_frames(buf, self.max_frame)
            if pos:
                del buf[:pos]
            return out
        # The common read, nothing held from the one before: decoded where it lies, and only
        # an incomplete frame at its end copied to be held.
        out, pos = decode_frames(data, self.max_frame)
        if pos < len(data):
            buf += memoryview(data)[pos:]
        return out

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._buf)

    def reset(self) -> None:
        """Drop the bytes of an incomplete frame (its connection is closing): free them now,
        not when the transport gets round to connection_lost."""
        self._buf = bytearray()

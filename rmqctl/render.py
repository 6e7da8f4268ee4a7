"""How rmqctl shows a message: its row of RocketMQ field names (json, ndjson, csv, tables) and
format strings, the same for consume, tail, message get and the offline readers.

A format string is compiled once into pieces (literal bytes, or a function of the message),
so a consume of millions of messages only joins bytes per message. Output is bytes: a body
that is not text goes out as it is stored (`-o raw`, `%b{raw}`), and `\\xNN` is one byte.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import Callable
from datetime import datetime, timezone

import click

from rmqnode.message import CompressionError, MessageExt, decompress
from rmqctl.context import Ctx
from rmqctl.output import RowStream, emit_rows, local_time

BODY_FORMATS = ("auto", "text", "base64", "hex", "none")

FORMAT_HELP = (
    "Print each message as FORMAT (table and raw output). Fields: %t topic, %q queue id, "
    "%o queue offset, %O commit log offset, %i msgId (UNIQ_KEY, else offsetMsgId), "
    "%I offsetMsgId, %k keys, %T tags, %b body, %B body length, %R body length as 4 bytes, "
    "big-endian (-f '%R%b' --delimiter '': what send --length-prefixed reads), "
    "%s store time, %d born time, "
    "%h born host, %H store host, %r reconsume times, %f sys flag, %F flag, %S stored size, "
    "%p{NAME} property NAME, %P all properties (k=v,k=v); %% is %, and \\n \\t \\r \\\\ \\0 "
    "\\xNN are escapes. Modifiers in braces after a field: text and body {hex} {base64} "
    "{escape} (non-printable bytes as \\xNN), body also {text} (UTF-8, bad bytes as U+FFFD) "
    "and {raw} (the bytes as stored); numbers {hex}; times {ms} (default) {unix} (seconds) "
    "{iso} (UTC, ISO 8601) {local} (local ISO 8601) {strftime[FMT]} (local time, e.g. "
    "%s{strftime[%F %T]}); %P{json} is a JSON object. Plain %b follows --body; with -o "
    "raw it is the stored bytes. "
    "An unknown %x is printed as it is, with one warning. Not with -o json, ndjson or csv.")
DELIMITER_HELP = (
    "Written after each message instead of a newline (table and raw output): escapes as in "
    "--format, e.g. '\\0' for `xargs -0`, '' for none.")


def format_options(command: Callable) -> Callable:
    """-f/--format and --delimiter, the same on every command that prints messages."""
    command = click.option("--delimiter", metavar="SEP", help=DELIMITER_HELP)(command)
    return click.option("-f", "--format", "fmt", metavar="FORMAT", help=FORMAT_HELP)(command)


def inflated_body(msg: MessageExt) -> bytes:
    """The body as the producer wrote it; a body that does not inflate is shown as stored,
    with a line on stderr naming its offset."""
    try:
        return decompress(msg.body, msg.sys_flag)
    except CompressionError as exc:
        click.echo(f"rmqctl: offset {msg.commit_log_offset}: {exc}", err=True)
        return msg.body


def body_text(body: bytes, fmt: str) -> str | None:
    """auto: UTF-8 text when the bytes are valid UTF-8, else base64 (prefixed 'base64:')."""
    if fmt == "none":
        return None
    if fmt == "hex":
        return body.hex()
    if fmt == "base64":
        return base64.b64encode(body).decode()
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        if fmt == "text":
            return body.decode("utf-8", "replace")
        return "base64:" + base64.b64encode(body).decode()


MESSAGE_COLUMNS = ["topic", "queueId", "queueOffset", "commitLogOffset", "msgId", "offsetMsgId",
                   "keys", "tags", "properties", "bornTimestamp", "storeTimestamp", "bornHost",
                   "storeHost", "sysFlag", "reconsumeTimes", "storeSize", "bodyCRC", "body"]


def message_row(msg: MessageExt, body_format: str) -> dict:
    """A message with RocketMQ's field names, as rmqctl prints messages everywhere: numbers
    as numbers, properties as the strings RocketMQ keeps."""
    row = {"topic": msg.topic, "queueId": msg.queue_id, "queueOffset": msg.queue_offset,
           "commitLogOffset": msg.commit_log_offset, "msgId": msg.msg_id,
           "offsetMsgId": msg.offset_msg_id, "keys": " ".join(msg.keys), "tags": msg.tags,
           "properties": msg.properties, "bornTimestamp": msg.born_timestamp,
           "storeTimestamp": msg.store_timestamp, "bornHost": msg.born_host_text,
           "storeHost": msg.store_host_text, "sysFlag": msg.sys_flag,
           "reconsumeTimes": msg.reconsume_times, "storeSize": msg.store_size,
           "bodyCRC": msg.body_crc}
    text = body_text(inflated_body(msg), body_format)
    if text is not None:
        row["body"] = text
    return row


# --- the format language -------------------------------------------------------------------

# Each field: (kind, getter(msg, body)); the kind says which modifiers apply.
_FIELDS: dict[str, tuple[str, Callable[[MessageExt, bytes], object]]] = {
    "t": ("text", lambda m, b: m.topic),
    "q": ("number", lambda m, b: m.queue_id),
    "o": ("number", lambda m, b: m.queue_offset),
    "O": ("number", lambda m, b: m.commit_log_offset),
    "i": ("text", lambda m, b: m.msg_id),
    "I": ("text", lambda m, b: m.offset_msg_id),
    "k": ("text", lambda m, b: " ".join(m.keys)),
    "T": ("text", lambda m, b: m.tags or ""),
    "b": ("body", lambda m, b: b),
    "B": ("number", lambda m, b: len(b)),
    "R": ("binary", lambda m, b: len(b).to_bytes(4, "big")),
    "s": ("time", lambda m, b: m.store_timestamp),
    "d": ("time", lambda m, b: m.born_timestamp),
    "h": ("text", lambda m, b: m.born_host_text),
    "H": ("text", lambda m, b: m.store_host_text),
    "r": ("number", lambda m, b: m.reconsume_times),
    "f": ("number", lambda m, b: m.sys_flag),
    "F": ("number", lambda m, b: m.flag),
    "S": ("number", lambda m, b: m.store_size),
    "P": ("properties", lambda m, b: m.properties),
    # %p{NAME} is built in _field: its getter needs the name.
}
_NEEDS_BODY = {"b", "B", "R"}
_ESCAPES = {"n": b"\n", "t": b"\t", "r": b"\r", "\\": b"\\", "0": b"\0"}

# Control characters, backslash and undecodable bytes (surrogateescape) as escapes.
_ESCAPE_TABLE = {c: f"\\x{c:02x}" for c in [*range(32), 127]} | {
    9: "\\t", 10: "\\n", 13: "\\r", 92: "\\\\"} | {
    0xDC00 + b: f"\\x{b:02x}" for b in range(128, 256)}


def escape_bytes(data: bytes) -> str:
    """Printable text as it is; control bytes, backslash and bytes that are not UTF-8 as
    \\n, \\t, \\xNN: one line, and the bytes can be told apart."""
    return data.decode("utf-8", "surrogateescape").translate(_ESCAPE_TABLE)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "replace")


_BYTE_MODIFIERS: dict[str, Callable[[bytes], bytes]] = {
    "hex": lambda d: d.hex().encode(),
    "base64": base64.b64encode,
    "escape": lambda d: _utf8(escape_bytes(d)),
}


def _time_modifier(mod: str | None, where: str) -> Callable[[int], bytes]:
    if mod in (None, "ms"):
        return lambda ms: str(ms).encode()
    if mod == "unix":
        return lambda ms: str(ms // 1000).encode()
    if mod == "iso":
        return _guarded(lambda ms: datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(
            timespec="milliseconds").replace("+00:00", "Z"))
    if mod == "local":
        return _guarded(local_time)
    if mod.startswith("strftime[") and mod.endswith("]"):
        pattern = mod[len("strftime["):-1]
        return _guarded(lambda ms: datetime.fromtimestamp(ms / 1000).astimezone().strftime(
            pattern))
    raise _bad_modifier(where, mod, "ms, unix, iso, local, strftime[FMT]")


def _guarded(show: Callable[[int], str]) -> Callable[[int], bytes]:
    """A time no calendar holds (a damaged record's born time) is printed as its number."""
    def convert(ms: int) -> bytes:
        try:
            return _utf8(show(ms))
        except (OverflowError, OSError, ValueError):
            return str(ms).encode()
    return convert


def _bad_modifier(where: str, mod: str, allowed: str) -> click.UsageError:
    return click.UsageError(f"--format: {where} does not take {{{mod}}} (it takes: {allowed})")


def _converter(kind: str, mod: str | None, where: str, plain_body: Callable[[bytes], bytes]
               ) -> Callable[[object], bytes]:
    """How one field's value becomes bytes, for its kind and modifier."""
    if kind == "time":
        return _time_modifier(mod, where)
    if kind == "number":
        if mod is None:
            return lambda n: str(n).encode()
        if mod == "hex":
            return lambda n: format(n, "x").encode()
        raise _bad_modifier(where, mod, "hex")
    if kind == "properties" and mod == "json":
        return lambda props: _utf8(json.dumps(props, ensure_ascii=False,
                                              separators=(",", ":")))
    if kind == "binary":
        convert = bytes if mod is None else _BYTE_MODIFIERS.get(mod)
        if convert is None:
            raise _bad_modifier(where, mod, "hex, base64, escape")
        return convert
    if kind == "body":
        extra = {"text": lambda d: _utf8(d.decode("utf-8", "replace")), "raw": bytes}
        if mod is None:
            return plain_body
        convert = {**_BYTE_MODIFIERS, **extra}.get(mod)
        if convert is None:
            raise _bad_modifier(where, mod, "hex, base64, escape, text, raw")
        return convert
    as_text: Callable[[object], bytes] = _utf8 if kind == "text" else \
        lambda props: _utf8(",".join(f"{k}={v}" for k, v in props.items()))
    if mod is None:
        return as_text
    convert = _BYTE_MODIFIERS.get(mod)
    if convert is None:
        raise _bad_modifier(where, mod, "hex, base64, escape" + (", json" if kind ==
                                                                 "properties" else ""))
    return lambda value: convert(as_text(value))


def _braces(fmt: str, i: int) -> tuple[str | None, int]:
    """The text of a `{...}` group at fmt[i] (None when there is none) and the index after
    it; `[...]` inside may hold braces (strftime patterns)."""
    if i >= len(fmt) or fmt[i] != "{":
        return None, i
    depth, j = 0, i + 1
    while j < len(fmt):
        c = fmt[j]
        if c == "[":
            depth += 1
        elif c == "]" and depth:
            depth -= 1
        elif c == "}" and not depth:
            return fmt[i + 1:j], j + 1
        j += 1
    raise click.UsageError(f"--format: '{fmt[i - 2:]}' has no closing brace")


Piece = bytes | Callable[[MessageExt, bytes], bytes]


class MessageFormat:
    """A compiled format string: `render(msg)` is the message's bytes. A plain %b is the
    body as --body shows it, or (raw_body) its bytes as stored."""

    def __init__(self, fmt: str, body_format: str = "auto", raw_body: bool = False) -> None:
        if raw_body:
            self._plain_body: Callable[[bytes], bytes] = bytes
        elif body_format == "auto":
            self._plain_body = _auto_body
        else:
            self._plain_body = lambda d: _utf8(body_text(d, body_format) or "")
        self.needs_body = False
        self.unknown: list[str] = []
        self.pieces: list[Piece] = self._compile(fmt)

    def _compile(self, fmt: str) -> list[Piece]:
        pieces: list[Piece] = []
        literal = bytearray()
        i = 0
        while i < len(fmt):
            c = fmt[i]
            nxt = fmt[i + 1] if i + 1 < len(fmt) else ""
            if c == "%" and nxt == "%":
                literal += b"%"
                i += 2
            elif c == "%" and (nxt in _FIELDS or nxt == "p"):
                piece, i = self._field(fmt, nxt, i + 2)
                if literal:
                    pieces.append(bytes(literal))
                    literal.clear()
                pieces.append(piece)
            elif c == "\\" and nxt in _ESCAPES:
                literal += _ESCAPES[nxt]
                i += 2
            elif c == "\\" and nxt == "x" and _is_hex(fmt[i + 2:i + 4]):
                literal.append(int(fmt[i + 2:i + 4], 16))
                i += 4
            else:
                if c in "%\\" and nxt.isalnum():  # "100% sure" is text, "%z" a typo
                    self.unknown.append(c + nxt)
                literal += _utf8(c)
                i += 1
        if literal:
            pieces.append(bytes(literal))
        return pieces

    def _field(self, fmt: str, letter: str, i: int) -> tuple[Piece, int]:
        where = f"%{letter}"
        if letter == "p":
            name, i = _braces(fmt, i)
            if not name:
                raise click.UsageError("--format: %p needs a property name, e.g. %p{KEYS}")
            kind, get = "text", (lambda m, b, name=name: m.properties.get(name, ""))
            where = f"%p{{{name}}}"
        else:
            kind, get = _FIELDS[letter]
        mod, i = _braces(fmt, i)
        convert = _converter(kind, mod, where, self._plain_body)
        self.needs_body |= letter in _NEEDS_BODY
        return (lambda m, b: convert(get(m, b))), i

    def render(self, msg: MessageExt) -> bytes:
        body = inflated_body(msg) if self.needs_body else b""
        return b"".join([p if p.__class__ is bytes else p(msg, body)  # type: ignore[operator]
                         for p in self.pieces])

    def warn_unknown(self, option: str = "--format") -> None:
        """One line on stderr for the tokens printed as they are (a typo, most likely)."""
        if self.unknown:
            names = ", ".join(dict.fromkeys(self.unknown))
            click.echo(f"rmqctl: {option}: unknown {names} printed as is (see --help)",
                       err=True)


def _auto_body(body: bytes) -> bytes:
    """body_text's auto, without decoding text only to encode it again."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return b"base64:" + base64.b64encode(body)
    return body


def _is_hex(text: str) -> bool:
    return len(text) == 2 and all(c in "0123456789abcdefABCDEF" for c in text)


def unescape(text: str, option: str = "--delimiter") -> bytes:
    """A delimiter as given on the command line ('\\0', '\\t', '\\x1e'): the escapes of the
    format language, nothing else; a bad escape is warned about under `option`'s name."""
    fmt = MessageFormat(text.replace("%", "%%"))
    fmt.warn_unknown(option)
    return b"".join(p for p in fmt.pieces if isinstance(p, bytes))


# --- consume and tail ----------------------------------------------------------------------

def binary_stdout():
    """stdout's byte stream (what is buffered as text goes first); a stand-in stdout
    without one (a test harness) gets text."""
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is not None:
        return buffer

    class Text:
        @staticmethod
        def write(data: bytes) -> None:
            sys.stdout.write(data.decode("utf-8", "replace"))

        @staticmethod
        def flush() -> None:
            sys.stdout.flush()
    return Text


def printer(ctx: Ctx, fmt: str | None, body_format: str, count: int | None,
            done: asyncio.Event, delimiter: str | None = None):
    """What consume and tail do with each message: a format line (bytes; -o raw: the body
    as stored), or a json/csv row, flushed at once, so that a message counts as shown (and
    its offset may be committed) only once it is out: when the reader went away
    (`| head -3`), the BrokenPipeError stops every queue at the message that did not get out."""
    structured = ctx.output in ("json", "ndjson", "csv")
    if structured and (fmt is not None or delimiter is not None):
        raise click.UsageError(f"--format and --delimiter are for table and raw output; -o "
                               f"{ctx.output} prints every field")
    write: Callable[[MessageExt], None]
    if ctx.output == "csv":
        rows = RowStream("csv", MESSAGE_COLUMNS)

        def write(msg: MessageExt) -> None:
            rows.write(message_row(msg, body_format))
    elif structured:
        def write(msg: MessageExt) -> None:
            emit_rows([message_row(msg, body_format)], "ndjson")
            sys.stdout.flush()
    else:
        raw = ctx.output == "raw"
        text = fmt if fmt is not None else "%b" if raw else "%t/%q@%o %i %b"
        compiled = MessageFormat(text, body_format, raw_body=raw)
        compiled.warn_unknown()
        if delimiter is not None:
            end = unescape(delimiter)
        else:
            end = b"" if text.endswith(("\\n", "\n")) else b"\n"
        out = binary_stdout()

        def write(msg: MessageExt) -> None:
            out.write(compiled.render(msg) + end)
            out.flush()
    printed = 0

    def show(msg: MessageExt) -> None:
        nonlocal printed
        try:
            write(msg)
        except BrokenPipeError:
            done.set()
            raise
        printed += 1
        if count is not None and printed >= count:
            done.set()
    return show

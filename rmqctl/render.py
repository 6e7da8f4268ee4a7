"""How rmqctl shows a message: its row of RocketMQ field names (json, ndjson, tables) and
kcat-style format strings, the same for consume, tail, message get and the offline readers."""

from __future__ import annotations

import asyncio
import base64
import re
import sys

import click

from rmqnode.message import CompressionError, MessageExt, decompress
from rmqctl.context import Ctx
from rmqctl.output import emit_rows

BODY_FORMATS = ("auto", "text", "base64", "hex", "none")


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


def message_row(msg: MessageExt, body_format: str) -> dict:
    """A message with RocketMQ's field names, as rmqctl prints messages everywhere."""
    try:
        body = decompress(msg.body, msg.sys_flag)
    except CompressionError as exc:
        body = msg.body
        click.echo(f"rmqctl: offset {msg.commit_log_offset}: {exc}", err=True)
    row = {"topic": msg.topic, "queueId": msg.queue_id, "queueOffset": msg.queue_offset,
           "commitLogOffset": msg.commit_log_offset, "msgId": msg.msg_id,
           "offsetMsgId": msg.offset_msg_id, "keys": " ".join(msg.keys), "tags": msg.tags,
           "properties": msg.properties, "bornTimestamp": msg.born_timestamp,
           "storeTimestamp": msg.store_timestamp, "bornHost": msg.born_host_text,
           "storeHost": msg.store_host_text, "sysFlag": msg.sys_flag,
           "reconsumeTimes": msg.reconsume_times, "storeSize": msg.store_size,
           "bodyCRC": msg.body_crc}
    text = body_text(body, body_format)
    if text is not None:
        row["body"] = text
    return row


_TOKEN = re.compile(r"%p\{([^}]*)\}|%[tqokTisb%]|\\[nt\\]")


def render(fmt: str, msg: MessageExt, body_format: str) -> str:
    """kcat-style format strings: %t topic, %q queue, %o offset, %k keys, %T tags, %i msgId,
    %s store time, %b body, %p{name} a property, \\n \\t escapes."""
    def sub(m: re.Match) -> str:
        token = m.group(0)
        if m.group(1) is not None:
            return msg.properties.get(m.group(1), "")
        return {"%t": msg.topic, "%q": str(msg.queue_id), "%o": str(msg.queue_offset),
                "%k": " ".join(msg.keys), "%T": msg.tags or "", "%i": msg.msg_id,
                "%s": str(msg.store_timestamp), "%%": "%", "\\n": "\n", "\\t": "\t",
                "\\\\": "\\"}.get(token) if token != "%b" else \
            (body_text(msg.body_inflated(), body_format) or "")
    return _TOKEN.sub(sub, fmt)


def printer(ctx: Ctx, fmt: str | None, body_format: str, count: int | None,
            done: asyncio.Event):
    """What consume and tail do with each message: a format line, or an ndjson row, flushed
    at once, so that a message counts as shown (and its offset may be committed) only once
    it is out: when the reader went away (`| head -3`), the BrokenPipeError stops every
    queue at the message that did not get out."""
    if fmt is None:
        fmt = "%b" if ctx.output == "raw" else "%t/%q@%o %i %b"
    if not fmt.endswith("\\n") and not fmt.endswith("\n"):
        fmt += "\n"
    printed = 0

    def show(msg: MessageExt) -> None:
        nonlocal printed
        try:
            if ctx.output in ("json", "ndjson"):
                emit_rows([message_row(msg, body_format)], "ndjson")
            else:
                sys.stdout.write(render(fmt, msg, body_format))
            sys.stdout.flush()
        except BrokenPipeError:
            done.set()
            raise
        printed += 1
        if count is not None and printed >= count:
            done.set()
    return show

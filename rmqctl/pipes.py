"""What consume and tail do with each message on its way out, beside --exec: print it
(render.printer), pipe its body through --translate, or --dump it; and what a command run
for a message learns about it (handler_env)."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import replace

import click

from rmqnode.message import COMPRESSED_FLAG, MessageExt
from rmqctl.context import Ctx
from rmqctl.render import inflated_body, printer


def handler_env(msg: MessageExt) -> dict[str, str]:
    """What an --exec command learns about its message, beside the body on stdin."""
    return {"RMQ_TOPIC": msg.topic, "RMQ_QUEUE_ID": str(msg.queue_id),
            "RMQ_QUEUE_OFFSET": str(msg.queue_offset), "RMQ_MSG_ID": msg.msg_id,
            "RMQ_KEYS": " ".join(msg.keys), "RMQ_TAGS": msg.tags or "",
            "RMQ_RECONSUME_TIMES": str(msg.reconsume_times),
            "RMQ_BORN_TIMESTAMP": str(msg.born_timestamp),
            "RMQ_STORE_TIMESTAMP": str(msg.store_timestamp)}


def translated(command: str, show):
    """--translate CMD (nats sub --translate): each body goes through CMD (with sh, the
    message's RMQ_* variables in its environment) and its stdout is the body that `show`
    gets. A command that fails leaves the body as it was, with one line on stderr."""
    async def handle(msg: MessageExt) -> bool:
        sys.stdout.flush()
        proc = await asyncio.create_subprocess_shell(
            command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env={**os.environ, **handler_env(msg)})
        out, _ = await proc.communicate(inflated_body(msg))
        if proc.returncode == 0:
            msg = replace(msg, body=out, sys_flag=msg.sys_flag & ~COMPRESSED_FLAG)
        else:
            how = f"exited {proc.returncode}" if proc.returncode > 0 else \
                f"was killed by signal {-proc.returncode}"
            click.echo(f"rmqctl: --translate {how} on {msg.topic}/{msg.queue_id}@"
                       f"{msg.queue_offset} (msgId {msg.msg_id}); its body is shown as it is",
                       err=True)
        outcome = show(msg)
        return True if outcome is None else await outcome
    return handle


def dump_name(msg: MessageExt) -> str:
    """A --dump file's name: TOPIC-QUEUEID-QUEUEOFFSET for people and globs, then the
    offsetMsgId, which `message get` reads and which no other message has (queue ids repeat
    on each broker of a topic)."""
    return f"{msg.topic}-{msg.queue_id}-{msg.queue_offset}-{msg.offset_msg_id}"


def dumper(directory: str):
    """--dump DIR: each body, exactly (inflated), in a file of its own. Written under a
    hidden name and renamed, so a file under its final name is whole; a message counts as
    shown once its file is there."""
    async def write(msg: MessageExt) -> bool:
        name = dump_name(msg)
        part = os.path.join(directory, f".{name}.part")
        with open(part, "wb") as out:
            out.write(inflated_body(msg))
        os.replace(part, os.path.join(directory, name))
        return True
    return write


PIPE_OPTIONS = [
    click.option("--translate", metavar="CMD",
                 help="Pipe each body through CMD (with sh, RMQ_* variables as --exec's) and "
                      "show its output instead; a failing CMD is said on stderr and the body "
                      "shown as it is."),
    click.option("--dump", metavar="DIR",
                 help="Write each body, exactly, to a file of its own in DIR (made if "
                      "missing): TOPIC-QUEUEID-QUEUEOFFSET-OFFSETMSGID. --dump - is -o raw "
                      "--delimiter '\\0': NUL-separated bodies on stdout."),
]


def pipe_options(command):
    """--translate and --dump, as consume and tail take them."""
    for option in reversed(PIPE_OPTIONS):
        command = option(command)
    return command


def shower(ctx: Ctx, fmt: str | None, body_format: str, count: int | None,
           done: asyncio.Event, delimiter: str | None, dump: str | None):
    """What consume and tail do with a message unless --exec: print it (render.printer),
    or --dump it (`--dump -` is `-o raw --delimiter '\\0'`, printed by the same printer)."""
    if dump is None:
        return printer(ctx, fmt, body_format, count, done, delimiter)
    if fmt is not None or delimiter is not None:
        raise click.UsageError("--dump writes bodies as they are: no --format or --delimiter "
                               "(for those, use -o raw --format ... --delimiter ...)")
    if dump == "-":
        if ctx.output not in ("table", "raw"):
            raise click.UsageError(f"--dump - is -o raw --delimiter '\\0', not -o {ctx.output}")
        return printer(replace(ctx, output="raw"), None, body_format, count, done, "\\0")
    try:
        os.makedirs(dump, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"--dump {dump}: {exc.strerror or exc}") from None
    return counted(dumper(dump), count, done)


def counted(handle, count: int | None, done: asyncio.Event):
    """A handler that sets `done` after `count` messages handled successfully."""
    handled = 0

    async def run(msg: MessageExt) -> bool:
        nonlocal handled
        ok = await handle(msg)
        handled += ok
        if count is not None and handled >= count:
            done.set()
        return ok
    return run

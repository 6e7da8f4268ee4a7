"""`rmqctl send`: messages in from an argument or stdin, a result out per message."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sys
import threading
from collections.abc import AsyncIterator

import click

from rmqctl.client.namesrv import NameServerClient
from rmqctl.client.producer import Producer, SendResult
from rmqctl.context import Ctx, pass_ctx
from rmqctl.output import RowStream, emit_object


MAX_BODY = 4 * 1024 * 1024  # DefaultMQProducer.maxMessageSize: what Java clients send at most


class StdinChunks:
    """stdin's bytes, read by a thread as they arrive (a pipe may take its time: `tail -f
    log | rmqctl send`), a few chunks ahead of the sends. os.read, not sys.stdin: a read
    left blocked when the command stops holds no lock the exit needs."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | OSError] = asyncio.Queue(16)
        self.loop = asyncio.get_running_loop()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                chunk: bytes | OSError = os.read(sys.stdin.fileno(), 1 << 16)
            except OSError as exc:
                chunk = exc
            try:
                asyncio.run_coroutine_threadsafe(self.queue.put(chunk), self.loop).result()
            except (RuntimeError, concurrent.futures.CancelledError):
                return  # the command is over
            if not isinstance(chunk, bytes) or not chunk:
                return

    async def next(self) -> bytes:
        chunk = await self.queue.get()
        if isinstance(chunk, OSError):
            raise chunk
        return chunk


async def stdin_messages(whole: bool, delimiter: str | None) -> AsyncIterator[tuple[int, bytes]]:
    """(line number, body) of each message in stdin, as it arrives: each line, each part
    between delimiters, or (whole) all of it as message 1. A trailing delimiter ends the last
    message, it does not start one. A body over MAX_BODY fails, naming its line."""
    sep = (delimiter or "\n").encode().decode("unicode_escape").encode()
    chunks = StdinChunks()
    buf, number = bytearray(), 0
    while chunk := await chunks.next():
        buf += chunk
        while not whole and (end := buf.find(sep)) >= 0:
            number += 1
            yield number, bytes(buf[:end])
            del buf[:end + len(sep)]
        if len(buf) > MAX_BODY:
            raise click.ClickException(
                f"line {number + 1} is over {MAX_BODY} bytes, the most a RocketMQ client "
                "sends in one message (maxMessageSize)")
    if buf or whole:
        yield number + 1, bytes(buf)


class Progress:
    """How far a send got: messages sent, and the last line up to which every line is sent
    (or skipped), so a script can go on after it with `tail -n +$((L + 1))`."""

    def __init__(self) -> None:
        self.sent = 0
        self.last_line = 0
        self._done: set[int] = set()

    def done(self, number: int, sent: bool = True) -> None:
        self.sent += sent
        self._done.add(number)
        while self.last_line + 1 in self._done:
            self.last_line += 1
            self._done.remove(self.last_line)


def result_row(r: SendResult) -> dict:
    return {"msgId": r.msg_id, "offsetMsgId": r.offset_msg_id, "topic": r.queue.topic,
            "brokerName": r.queue.broker_name, "queueId": r.queue.queue_id,
            "queueOffset": r.queue_offset, "status": r.status}


@click.command()
@click.argument("topic")
@click.argument("body", required=False)
@click.option("--tags", help="The message's tag (one; consumers filter on it).")
@click.option("--keys", help="Business keys, space-separated (indexed for lookups).")
@click.option("-p", "--property", "props", multiple=True, metavar="KEY=VALUE",
              help="A user property (repeatable).")
@click.option("--delay-level", type=click.IntRange(0, 18), default=0,
              help="Deliver after RocketMQ delay level N (1=1s ... 18=2h).")
@click.option("--mode", type=click.Choice(["sync", "async", "oneway"]), default="sync",
              show_default=True, help="async: up to 64 sends in flight.")
@click.option("--sharding-key", help="Same key, same queue (orderly per key).")
@click.option("--compress", type=click.Choice(["zlib", "zstd", "lz4"]),
              help="Compress bodies (zlib: every client; zstd, lz4: RocketMQ 5.x consumers).")
@click.option("--delimiter", help="Split stdin on this instead of newlines (e.g. '\\0').")
@click.option("--whole", is_flag=True, help="All of stdin is one message.")
@click.option("--batch", type=click.IntRange(1, 1024), default=1,
              help="Send stdin messages in batches of N (one request each).")
@click.option("--allow-empty", is_flag=True,
              help="Send empty lines as empty messages (skipped by default: Java clients "
                   "refuse empty bodies).")
@click.option("-q", "--quiet", is_flag=True,
              help="One summary at the end instead of a result per message.")
@pass_ctx
def send(ctx: Ctx, topic: str, body: str | None, tags: str | None, keys: str | None,
         props: tuple[str, ...], delay_level: int, mode: str, sharding_key: str | None,
         compress: str | None, delimiter: str | None, whole: bool, batch: int,
         allow_empty: bool, quiet: bool) -> None:
    """Send BODY to TOPIC, or each line of stdin as one message, as it arrives; a result is
    printed per message sent. Stopped by Ctrl-C or an error, it says on stderr how many it
    sent and the last line up to which all are sent.

    \b
    Examples:
      rmqctl send Orders 'hello' --tags TagA --keys order-1
      seq 1 5000 | rmqctl send Numbers --quiet
      tail -f app.log | rmqctl -o ndjson send Logs
      cat event.json | rmqctl send Events --whole -p source=cli
      rmqctl -o ndjson send Orders 'x' --sharding-key customer-7
    """
    properties = {}
    for item in props:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.UsageError(f"-p expects KEY=VALUE, got {item!r}")
        properties[key] = value
    if body is None and sys.stdin.isatty():
        raise click.UsageError("give BODY, or pipe messages into stdin")
    if body == "" and not allow_empty:
        raise click.UsageError("BODY is empty, which Java clients refuse; --allow-empty "
                               "sends it")
    key_list = keys.split() if keys else None
    progress = Progress()
    results = RowStream(ctx.output, ["msgId", "queueId", "queueOffset", "status"]
                        if ctx.output != "json" else [])

    async def messages() -> AsyncIterator[tuple[int, bytes]]:
        if body is not None:  # the shell's bytes, as given (os.fsencode keeps non-UTF-8)
            yield 1, os.fsencode(body)
            return
        async for number, part in stdin_messages(whole, delimiter):
            if part or allow_empty:
                yield number, part
            else:
                progress.done(number, sent=False)

    def sent(numbers: list[int], out: list[SendResult]) -> None:
        for number, result in zip(numbers, out):
            progress.done(number)
            if not quiet:
                results.write(result_row(result))

    async def work(ns: NameServerClient) -> None:
        producer = Producer(ns.remoting, ns, timeout=ctx.timeout)
        one = dict(tags=tags, keys=key_list, props=properties)

        async def send_one(number: int, data: bytes) -> None:
            sent([number], [await producer.send(
                topic, data, delay_level=delay_level, sharding_key=sharding_key,
                oneway=mode == "oneway", compression=compress, **one)])

        async def send_batch(held: list[tuple[int, bytes]]) -> None:
            sent([n for n, _ in held], await producer.send_batch(
                topic, [b for _, b in held], sharding_key=sharding_key, **one))

        if batch > 1:
            held: list[tuple[int, bytes]] = []
            async for item in messages():
                held.append(item)
                if len(held) == batch:
                    await send_batch(held)
                    held = []
            if held:
                await send_batch(held)
        elif mode == "async":
            await in_flight(messages(), send_one, 64)
        else:
            async for number, data in messages():
                await send_one(number, data)

    try:
        ctx.run(work)
    except BaseException:
        if body is None:  # stdin: say how far it got, for a script to go on from there
            click.echo(f"rmqctl: sent {progress.sent}, last line {progress.last_line}",
                       err=True)
        raise
    if not quiet:
        results.close()
    else:
        emit_object({"topic": topic, "sent": progress.sent, "lastLine": progress.last_line},
                     ctx.output)


async def in_flight(items: AsyncIterator[tuple[int, bytes]], send_one, window: int) -> None:
    """send_one(number, data) for each item, up to `window` at once; the first failure stops
    taking items and is raised once the sends in flight are over."""
    slots = asyncio.Semaphore(window)
    running: set[asyncio.Task] = set()
    failures: list[BaseException] = []

    def finished(task: asyncio.Task) -> None:
        running.discard(task)
        slots.release()
        if not task.cancelled() and task.exception() is not None:
            failures.append(task.exception())

    try:
        async for number, data in items:
            await slots.acquire()
            if failures:
                break
            task = asyncio.ensure_future(send_one(number, data))
            running.add(task)
            task.add_done_callback(finished)
        await asyncio.gather(*running, return_exceptions=True)
    finally:
        for task in running:
            task.cancel()
    if failures:
        raise failures[0]

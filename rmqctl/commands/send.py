"""`rmqctl send`: messages in from an argument or stdin, a result out per message."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable

import click

from rmqctl.client.namesrv import NameServerClient
from rmqctl.client.producer import MessageQueue, Outgoing, Producer, SendResult
from rmqctl.context import Ctx, exit_status, pass_ctx
from rmqctl.output import RowStream, emit_object
from rmqctl.render import unescape
from rmqctl.send_input import (MAX_DELAY_LEVEL, PLACEHOLDERS, BadInput, JsonLines, LineFormat,
                               Pace, Template)


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
            put = self.queue.put(chunk)
            try:
                asyncio.run_coroutine_threadsafe(put, self.loop).result()
            except (RuntimeError, concurrent.futures.CancelledError):
                put.close()  # the command is over (a closed loop never started it)
                return
            if not isinstance(chunk, bytes) or not chunk:
                return

    async def next(self) -> bytes:
        chunk = await self.queue.get()
        if isinstance(chunk, OSError):
            raise chunk
        return chunk


async def stdin_messages(whole: bool, sep: bytes) -> AsyncIterator[tuple[int, bytes]]:
    """(line number, body) of each message in stdin, as it arrives: each line, each part
    between delimiters, or (whole) all of it as message 1. A trailing delimiter ends the last
    message, it does not start one. A body over MAX_BODY fails, naming its line."""
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


def result_row(number: int, r: SendResult) -> dict:
    """A delivery report: the input line it came from and where the message landed."""
    return {"line": number, "msgId": r.msg_id, "offsetMsgId": r.offset_msg_id,
            "topic": r.queue.topic, "brokerName": r.queue.broker_name,
            "queueId": r.queue.queue_id, "queueOffset": r.queue_offset, "status": r.status}


def failure_row(number: int, topic: str, exc: Exception) -> dict:
    return {"line": number, "topic": topic, "status": "FAILED",
            "error": (exit_status(exc)[1] or "").splitlines()[0]}


async def fixed_queue(producer: Producer, topic: str, queue_id: int, broker: str | None
                      ) -> MessageQueue:
    """--queue N (--broker NAME): that writable queue of the topic's route."""
    queues = (await producer.route(topic)).write_queues
    found = [q for q in queues if q.queue_id == queue_id and broker in (None, q.broker_name)]
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(q.broker_name for q in found)
        raise ValueError(f"{topic} has a queue {queue_id} on {names}: name one with --broker")
    counts: dict[str, int] = {}
    for q in queues:
        counts[q.broker_name] = counts.get(q.broker_name, 0) + 1
    held = "; ".join(f"{name}: 0-{n - 1}" for name, n in sorted(counts.items()))
    where = f" on {broker}" if broker else ""
    raise ValueError(f"{topic} has no writable queue {queue_id}{where} (its queues: {held})")


@click.command()
@click.argument("topic")
@click.argument("body", required=False)
@click.option("--tags", help="The message's tag (one; consumers filter on it).")
@click.option("--keys", help="Business keys, space-separated (indexed for lookups).")
@click.option("-p", "--property", "props", multiple=True, metavar="KEY=VALUE",
              help="A user property (repeatable).")
@click.option("--delay-level", type=click.IntRange(0, MAX_DELAY_LEVEL), default=0,
              help="Deliver after RocketMQ delay level N (1=1s ... 18=2h).")
@click.option("--mode", type=click.Choice(["sync", "async", "oneway"]), default="sync",
              show_default=True, help="async: up to 64 sends in flight.")
@click.option("--sharding-key", help="Same key, same queue (orderly per key).")
@click.option("--queue", "queue_id", type=click.IntRange(0), metavar="N",
              help="Send to queue N of the topic (with --broker when several brokers have one).")
@click.option("--broker", metavar="NAME", help="The broker of --queue N.")
@click.option("--compress", type=click.Choice(["zlib", "zstd", "lz4"]),
              help="Compress bodies (zlib: every client; zstd, lz4: RocketMQ 5.x consumers).")
@click.option("--delimiter", help="Split stdin on this instead of newlines (e.g. '\\0').")
@click.option("--whole", is_flag=True, help="All of stdin is one message.")
@click.option("--batch", type=click.IntRange(1, 1024), default=1,
              help="Send stdin messages in batches of N (one request each).")
@click.option("--parse", "line_format", metavar="FORMAT",
              help="Split each line into fields: key, tag, body, p:NAME (a property), with "
                   "the separators between them, e.g. 'key\\tbody', 'tag,key,body'. A line "
                   "that does not match stops the send (exit 2).")
@click.option("--json-input", is_flag=True,
              help="Each line is a JSON object: body or bodyBase64, keys, tags, properties, "
                   "delayLevel (what `-o ndjson consume` prints replays as it is).")
@click.option("--template", is_flag=True,
              help=f"BODY, --keys, --tags and -p values are templates: {PLACEHOLDERS}.")
@click.option("-c", "--count", type=click.IntRange(1), metavar="N",
              help="Send BODY N times (no stdin); with stdin, stop after N messages.")
@click.option("--rate", type=click.FloatRange(0, min_open=True), metavar="N",
              help="At most N messages a second, evenly spaced.")
@click.option("--allow-empty", is_flag=True,
              help="Send empty lines as empty messages (skipped by default: Java clients "
                   "refuse empty bodies).")
@click.option("-q", "--quiet", is_flag=True,
              help="One summary at the end instead of a result per message.")
@pass_ctx
def send(ctx: Ctx, topic: str, body: str | None, tags: str | None, keys: str | None,
         props: tuple[str, ...], delay_level: int, mode: str, sharding_key: str | None,
         queue_id: int | None, broker: str | None, compress: str | None,
         delimiter: str | None, whole: bool, batch: int, line_format: str | None,
         json_input: bool, template: bool, count: int | None, rate: float | None,
         allow_empty: bool, quiet: bool) -> None:
    """Send BODY to TOPIC, or each line of stdin as one message, as it arrives; a result is
    printed per message sent (its input line, msgId, offsetMsgId, queue and offset, status;
    a failed send's error). Stopped by Ctrl-C or an error, it says on stderr how many it
    sent and the last line up to which all are sent.

    \b
    Examples:
      rmqctl send Orders 'hello' --tags TagA --keys order-1
      seq 1 5000 | rmqctl send Numbers --quiet
      tail -f app.log | rmqctl -o ndjson send Logs
      cat event.json | rmqctl send Events --whole -p source=cli
      rmqctl -o ndjson send Orders 'x' --sharding-key customer-7
      printf 'order-1\\tTagA\\t{"n":1}\\n' | rmqctl send Orders --parse 'key\\ttag\\tbody'
      rmqctl -o ndjson consume Orders -g copy -e | rmqctl send OrdersCopy --json-input
      rmqctl send Load 'event {{seq}} at {{now}}' --template -c 1000 --rate 200
      rmqctl send Orders 'x' --queue 3 --broker broker-a
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
    if line_format is not None and json_input:
        raise click.UsageError("--parse and --json-input are two ways to read a line: one")
    if queue_id is not None and sharding_key is not None:
        raise click.UsageError("--queue and --sharding-key both pick the queue: one")
    if broker is not None and queue_id is None:
        raise click.UsageError("--broker names the broker of --queue N")
    if batch > 1 and delay_level:
        raise click.UsageError("--delay-level: RocketMQ batches have no delay level")
    decoder = LineFormat(line_format) if line_format is not None else \
        JsonLines() if json_input else None

    def text(value: str, option: str) -> Callable[[int], str]:
        return Template(value, option).expand if template else lambda seq: value
    body_of = text(body or "", "BODY")
    tags_of = text(tags or "", "--tags")
    keys_of = text(keys or "", "--keys")
    props_of = {k: text(v, f"-p {k}") for k, v in properties.items()}
    sep = unescape(delimiter) if delimiter is not None else b"\n"
    pace = Pace(rate) if rate else None
    progress = Progress()
    stopped: list[click.ClickException] = []  # the input's failure, raised once sends end
    results = RowStream(ctx.output, ["line", "msgId", "queueId", "queueOffset", "status"]
                        if ctx.output != "json" else [])

    async def records() -> AsyncIterator[tuple[int, bytes]]:
        if body is not None:  # the shell's bytes, as given (os.fsencode keeps non-UTF-8)
            for number in range(1, (count or 1) + 1):
                yield number, os.fsencode(body_of(number))
            return
        async for number, part in stdin_messages(whole, sep):
            if part or allow_empty:
                yield number, part
            else:
                progress.done(number, sent=False)

    async def messages() -> AsyncIterator[tuple[int, Outgoing]]:
        """Each record as its message, paced; a record that does not fit ends the input
        here, so that what came before it is still sent and reported."""
        seq = 0
        try:
            async for number, raw in records():
                seq += 1
                if count is not None and seq > count:
                    return
                if pace is not None:
                    await pace.wait()
                base = Outgoing(raw, tags_of(seq) or None, keys_of(seq).split() or None,
                                {k: v(seq) for k, v in props_of.items()}, delay_level)
                msg = decoder.message(number, raw, base) if decoder is not None else base
                if not msg.body and not allow_empty:
                    raise BadInput(f"line {number}: the body is empty (Java clients refuse "
                                   "empty bodies; --allow-empty sends it)")
                if batch > 1 and msg.delay_level:
                    raise BadInput(f"line {number}: a delay level cannot go in a --batch")
                yield number, msg
        except click.ClickException as exc:
            stopped.append(exc)

    def sent(numbers: list[int], out: list[SendResult]) -> None:
        for number, result in zip(numbers, out):
            progress.done(number)
            if not quiet:
                results.write(result_row(number, result))

    def failed(numbers: list[int], exc: Exception) -> Exception:
        """Report the messages a send took with it; the error to stop with (a message the
        producer refused names its line)."""
        if not quiet:
            for number in numbers:
                results.write(failure_row(number, topic, exc))
        if isinstance(exc, ValueError):
            lines = f"line {numbers[0]}" if len(numbers) == 1 else \
                f"lines {numbers[0]}-{numbers[-1]}"
            return BadInput(f"{lines}: {exc}")
        return exc

    async def work(ns: NameServerClient) -> None:
        producer = Producer(ns.remoting, ns, timeout=ctx.timeout)
        queue = None if queue_id is None else \
            await fixed_queue(producer, topic, queue_id, broker)

        async def send_one(number: int, msg: Outgoing) -> None:
            try:
                result = await producer.send(
                    topic, msg.body, tags=msg.tags, keys=msg.keys, props=msg.props,
                    delay_level=msg.delay_level, sharding_key=sharding_key,
                    oneway=mode == "oneway", compression=compress, queue=queue)
            except Exception as exc:
                raise failed([number], exc) from exc
            sent([number], [result])

        async def send_batch(held: list[tuple[int, Outgoing]]) -> None:
            numbers = [n for n, _ in held]
            try:
                out = await producer.send_batch(topic, [m for _, m in held],
                                                sharding_key=sharding_key, queue=queue)
            except Exception as exc:
                raise failed(numbers, exc) from exc
            sent(numbers, out)

        if batch > 1:
            held: list[tuple[int, Outgoing]] = []
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
            async for number, msg in messages():
                await send_one(number, msg)
        if stopped:
            raise stopped[0]

    try:
        ctx.run(work)
    except BaseException as exc:
        if not quiet and not isinstance(exc, BrokenPipeError):
            results.close()  # -o json: the reports so far, as one document
        if body is None or count:  # say how far it got, for a script to go on from there
            click.echo(f"rmqctl: sent {progress.sent}, last line {progress.last_line}",
                       err=True)
        raise
    if not quiet:
        results.close()
    else:
        emit_object({"topic": topic, "sent": progress.sent, "lastLine": progress.last_line},
                    ctx.output)


async def in_flight(items: AsyncIterator[tuple[int, Outgoing]], send_one, window: int) -> None:
    """send_one(number, message) for each item, up to `window` at once; the first failure stops
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
        async for number, msg in items:
            await slots.acquire()
            if failures:
                break
            task = asyncio.ensure_future(send_one(number, msg))
            running.add(task)
            task.add_done_callback(finished)
        await asyncio.gather(*running, return_exceptions=True)
    finally:
        for task in running:
            task.cancel()
    if failures:
        raise failures[0]

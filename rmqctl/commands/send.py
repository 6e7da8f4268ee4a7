"""`rmqctl send`: messages in from an argument or stdin, a result out per message."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator

import click

from rmqctl.client.namesrv import NameServerClient
from rmqctl.client.producer import MessageQueue, Outgoing, Producer, SendResult
from rmqctl.context import Ctx, exit_status, pass_ctx
from rmqctl.output import RowStream, emit_object
from rmqctl.render import binary_stdout, unescape
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


LENGTH = 4  # --length-prefixed: a big-endian length before each body, as %R prints it


def _cut(buf: bytearray, sep: bytes, framed: bool, number: int) -> tuple[int, int] | None:
    """Where message `number`, the next in `buf`, ends, and where the one after it begins;
    None while it is not all there."""
    if not framed:
        end = buf.find(sep)
        return None if end < 0 else (end, end + len(sep))
    if len(buf) < LENGTH:
        return None
    size = int.from_bytes(buf[:LENGTH], "big")
    if size > MAX_BODY:
        raise BadInput(f"message {number} says it is {size} bytes long, over {MAX_BODY}, the "
                       "most a RocketMQ client sends (is stdin length-prefixed: a 4-byte "
                       "big-endian length, then the body?)")
    return (LENGTH + size, LENGTH + size) if len(buf) >= LENGTH + size else None


async def stdin_messages(whole: bool, sep: bytes, framed: bool = False
                         ) -> AsyncIterator[tuple[int, bytes]]:
    """(line number, body) of each message in stdin, as it arrives: each line, each part
    between delimiters, each length-prefixed body (framed), or (whole) all of it as message
    1. A trailing delimiter ends the last message, it does not start one. A body over
    MAX_BODY fails, naming its line; so does a framed stdin that ends inside a message."""
    chunks = StdinChunks()
    buf, number = bytearray(), 0
    while chunk := await chunks.next():
        buf += chunk
        while not whole and (cut := _cut(buf, sep, framed, number + 1)) is not None:
            number += 1
            yield number, bytes(buf[LENGTH if framed else 0:cut[0]])
            del buf[:cut[1]]
        if not framed and len(buf) > MAX_BODY:
            raise click.ClickException(
                f"line {number + 1} is over {MAX_BODY} bytes, the most a RocketMQ client "
                "sends in one message (maxMessageSize)")
    if framed and buf:
        raise BadInput(f"stdin ends inside message {number + 1} ({len(buf)} bytes of its "
                       "length and body): --length-prefixed input is a 4-byte big-endian "
                       "length, then the body, for each message")
    if buf or whole:
        yield number + 1, bytes(buf)


def file_messages(paths: tuple[str, ...], allow_empty: bool
                  ) -> Iterator[tuple[int, bytes]]:
    """--file: (N, the Nth file's bytes), each file one message, as kcat's file arguments."""
    for number, path in enumerate(paths, 1):
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_BODY + 1)
        except OSError as exc:
            raise click.ClickException(f"--file {path}: {exc.strerror or exc}") from None
        if len(data) > MAX_BODY:
            raise click.ClickException(f"--file {path} is over {MAX_BODY} bytes, the most a "
                                       "RocketMQ client sends in one message (maxMessageSize)")
        if not data and not allow_empty:
            raise BadInput(f"--file {path} is empty (Java clients refuse empty bodies; "
                           "--allow-empty sends it)")
        yield number, data


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
@click.option("--file", "files", multiple=True, metavar="PATH",
              type=click.Path(exists=True, dir_okay=False),
              help="Send this file's bytes as one message (repeatable: one message per file, "
                   "in order; no BODY or stdin).")
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
@click.option("--length-prefixed", "framed", is_flag=True,
              help="stdin is messages each after its length, 4 bytes big-endian (what "
                   "`-o raw consume -f '%R%b' --delimiter ''` prints).")
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
@click.option("-T", "--tee", is_flag=True,
              help="Echo each input record to stdout once it is sent, framed as it came (a "
                   "line, a delimited part, a length-prefixed body, a file's bytes), so send "
                   "can sit inside a pipe; the results (or -q's summary) go to stderr.")
@pass_ctx
def send(ctx: Ctx, topic: str, body: str | None, files: tuple[str, ...], tags: str | None,
         keys: str | None, props: tuple[str, ...], delay_level: int, mode: str,
         sharding_key: str | None, queue_id: int | None, broker: str | None,
         compress: str | None, delimiter: str | None, whole: bool, framed: bool, batch: int,
         line_format: str | None, json_input: bool, template: bool, count: int | None,
         rate: float | None, allow_empty: bool, quiet: bool, tee: bool) -> None:
    """Send BODY to TOPIC, each --file as one message, or each line (part, length-prefixed
    body) of stdin as one message, as it arrives; a result is printed per message sent (its
    input line, or file, number, msgId, offsetMsgId, queue and offset, status; a failed
    send's error), on stderr with --tee. Stopped by Ctrl-C or an error, it says on stderr how
    many it sent and the last line up to which all are sent.

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
      rmqctl send Blobs --file a.json --file b.bin             # one message per file
      rmqctl -o raw consume Blobs -g cp -e -f '%R%b' --delimiter '' |
        rmqctl send BlobsCopy --length-prefixed
      seq 1 10 | rmqctl send Numbers --tee -q | wc -l          # send inside a pipe
    """
    properties = {}
    for item in props:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.UsageError(f"-p expects KEY=VALUE, got {item!r}")
        properties[key] = value
    splits = [name for name, given in (("--whole", whole), ("--delimiter", delimiter is not None),
                                       ("--length-prefixed", framed)) if given]
    if files and (body is not None or splits):
        raise click.UsageError(f"--file is a whole message: no {(splits or ['BODY'])[0]} "
                               "with it")
    if len(splits) > 1:
        raise click.UsageError(f"{splits[0]} and {splits[1]} are two ways to split stdin: one")
    if body is not None and splits:
        raise click.UsageError(f"{splits[0]} splits stdin: not with BODY")
    if body is None and not files and sys.stdin.isatty():
        raise click.UsageError("give BODY or --file, or pipe messages into stdin")
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
    reports = sys.stderr if tee else None  # --tee: stdout is the records
    results = RowStream(ctx.output, ["line", "msgId", "queueId", "queueOffset", "status"]
                        if ctx.output != "json" else [], out=reports)
    teed: dict[int, bytes] = {}  # --tee: each record in flight, framed as it came

    def framing(record: bytes) -> bytes:
        if framed:
            return len(record).to_bytes(LENGTH, "big") + record
        return record if files or whole else record + (b"\n" if body is not None else sep)

    async def records() -> AsyncIterator[tuple[int, bytes]]:
        if body is not None:  # the shell's bytes, as given (os.fsencode keeps non-UTF-8)
            for number in range(1, (count or 1) + 1):
                yield number, os.fsencode(body_of(number))
            return
        if files:
            for number, data in file_messages(files, allow_empty):
                yield number, data
            return
        async for number, part in stdin_messages(whole, sep, framed):
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
                if tee:
                    teed[number] = framing(raw)
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
            if tee:
                echo = binary_stdout()
                echo.write(teed.pop(number))
                echo.flush()

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
                    ctx.output, out=reports)


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

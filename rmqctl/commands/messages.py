"""`rmqctl send` and `rmqctl consume`: messages in and out, for people and for pipes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import re
import sys
import threading
from collections.abc import AsyncIterator

import click

from rmqnode.errors import ConnectionLost, RemotingError, RemotingTimeout
from rmqnode.message import RETRY_TOPIC, MessageExt
from rmqctl.client.consumer import GroupConsumer
from rmqctl.client.pop import PopConsumer
from rmqctl.client.namesrv import NameServerClient
from rmqctl.client.producer import Producer, SendResult, topic_route
from rmqctl.client.requester import is_request, send_reply
from rmqctl.commands.store import BODY_FORMATS, body_text, message_row
from rmqctl.context import EXIT_ERROR, Ctx, pass_ctx
from rmqctl.output import RowStream, emit_object, emit_rows

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


class HandlerFailed(click.ClickException):
    """A --exec command failed a message and --retry was not given: consumption stops, and
    the message's offset is not committed, so the next run starts with it."""

    exit_code = EXIT_ERROR


def handler_env(msg: MessageExt) -> dict[str, str]:
    """What an --exec command learns about its message, beside the body on stdin."""
    return {"RMQ_TOPIC": msg.topic, "RMQ_QUEUE_ID": str(msg.queue_id),
            "RMQ_QUEUE_OFFSET": str(msg.queue_offset), "RMQ_MSG_ID": msg.msg_id,
            "RMQ_KEYS": " ".join(msg.keys), "RMQ_TAGS": msg.tags or "",
            "RMQ_RECONSUME_TIMES": str(msg.reconsume_times),
            "RMQ_BORN_TIMESTAMP": str(msg.born_timestamp),
            "RMQ_STORE_TIMESTAMP": str(msg.store_timestamp)}


class Replier:
    """consume --reply: answers each request message (rmqctl request, Java's
    DefaultMQProducer.request) once it is handled, as MessageUtil.createReplyMessage builds
    replies. A reply the broker could not push (the requester is gone) is said on stderr;
    the request still counts as handled."""

    def __init__(self) -> None:
        self.producer: Producer | None = None  # bound once the command's connections exist

    async def answer(self, request: MessageExt, body: bytes) -> None:
        assert self.producer is not None
        try:
            await send_reply(self.producer, request, body)
        except RemotingError as exc:
            click.echo(f"rmqctl: the reply to {request.msg_id} did not reach its requester: "
                       f"{exc}", err=True)

    def echo(self, show):
        """Without --exec: each message shown as without --reply; a request's reply is its
        own body."""
        async def handle(msg: MessageExt) -> bool:
            show(msg)
            if is_request(msg):
                await self.answer(msg, msg.body_inflated())
            return True
        return handle


def exec_handler(command: str, replier: Replier | None = None):
    """A handler that runs `command` (with sh) once per message, body on stdin; True when
    it exits 0. With a replier, a request's reply is the command's stdout (none if it
    fails)."""
    async def handle(msg: MessageExt) -> bool:
        request = replier is not None and is_request(msg)
        sys.stdout.flush()
        proc = await asyncio.create_subprocess_shell(
            command, stdin=asyncio.subprocess.PIPE, env={**os.environ, **handler_env(msg)},
            stdout=asyncio.subprocess.PIPE if request else None)
        out, _ = await proc.communicate(msg.body_inflated())
        if request and proc.returncode == 0:
            await replier.answer(msg, out)  # type: ignore[union-attr]
        return proc.returncode == 0
    return handle


async def read_queue(consumer: GroupConsumer, mq, start: str | None, exit_at_end: bool,
                     show, done: asyncio.Event, commit: bool = True,
                     on_failure=None) -> None:
    """Pull one queue from its start offset, in order, until caught up (exit_at_end) or
    `done`. `show` may be a coroutine answering whether the message was handled; a failed
    one goes to `on_failure` (retry) or stops the queue. The group's offset moves past what
    was handled only: committed with each pull, and when the queue stops for any reason
    (-c N, Ctrl-C, a closed output, a failure)."""
    offset = await consumer.start_offset(mq, start)
    committed = None
    try:
        while not done.is_set():
            pulled_at = committed = offset
            result = await consumer.pull(mq, pulled_at, 32, 0 if exit_at_end else 15000,
                                         commit_offset=pulled_at if commit else None)
            for msg in result.messages:
                if done.is_set():  # -c N reached, or the output closed, within the batch
                    return
                if mq.topic == consumer.retry_topic:
                    msg.topic = msg.properties.get(RETRY_TOPIC, msg.topic)  # as Java shows it
                outcome = show(msg)
                if outcome is not None and not await outcome:
                    if on_failure is None:
                        raise HandlerFailed(
                            f"the handler failed {msg.topic}/{msg.queue_id}@{msg.queue_offset}"
                            f" (msgId {msg.msg_id}); its offset is not committed (--retry "
                            "sends failed messages back instead)")
                    await on_failure(msg)
                offset = msg.queue_offset + 1
            if exit_at_end and result.next_offset == pulled_at >= result.max_offset:
                return
            offset = result.next_offset  # the whole batch is handled (or filtered out)
    finally:
        if commit and offset != committed:
            with contextlib.suppress(ConnectionLost, RemotingTimeout):
                await consumer.commit(mq, offset)


async def _stop_all(tasks) -> None:
    """Cancel readers and collect them, so nothing dies unobserved (Ctrl-C, -c N)."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def read_queues(consumer: GroupConsumer, queues: list, start: str | None,
                      exit_at_end: bool, show, done: asyncio.Event, commit: bool = True) -> None:
    """A fixed set of queues, read concurrently (tail, broadcasting)."""
    readers = asyncio.gather(*(read_queue(consumer, mq, start, exit_at_end, show, done, commit)
                               for mq in queues))
    stop = asyncio.ensure_future(done.wait())
    try:
        # All readers finish (caught up), one fails, or `done` (-c N, Ctrl-C) comes first.
        await asyncio.wait([readers, stop], return_when=asyncio.FIRST_COMPLETED)
    finally:
        await _stop_all([stop] + ([] if readers.done() else [readers]))
    if not readers.cancelled():
        readers.result()  # a reader's own failure (broker error) surfaces here


async def read_group(consumer: GroupConsumer, start: str | None, exit_at_end: bool, show,
                     done: asyncio.Event, rebalance_every: float = 20.0,
                     on_failure=None) -> None:
    """Clustering: read this member's share of the queues, and rebalance when the broker
    says the members changed or every 20 s. A queue given away stops (its offset is already
    committed); a queue taken over starts from the group's committed offset."""
    readers: dict = {}
    started: set = set()
    try:
        while not done.is_set():
            queues = set(await consumer.join())
            for mq in [mq for mq in readers if mq not in queues]:
                await _stop_all([readers.pop(mq)])
            for mq in queues - set(readers):
                readers[mq] = asyncio.ensure_future(read_queue(
                    consumer, mq, start if mq not in started else None, exit_at_end, show, done,
                    on_failure=on_failure))
                started.add(mq)
            for mq, task in list(readers.items()):
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()
            if exit_at_end and readers and all(t.done() for t in readers.values()):
                break
            waits = [asyncio.ensure_future(done.wait()),
                     asyncio.ensure_future(consumer.changed.wait())]
            try:
                await asyncio.wait(waits + list(readers.values()), timeout=rebalance_every,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                await _stop_all(waits)
            if exit_at_end and not readers:
                break
    finally:
        await _stop_all(list(readers.values()))  # each commits what it handled, on any exit


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


SQL_OPTION = click.option(
    "--sql", metavar="EXPR",
    help="SQL92 property filter the brokers evaluate, e.g. \"TAGS = 'A' AND price > 100\" "
         "(brokers need enablePropertyFilter=true). Not with --tags.")


def subscription(expression: str, sql: str | None) -> tuple[str, str]:
    """--tags or --sql as (expression, expression type)."""
    if sql is None:
        return expression, "TAG"
    if expression != "*":
        raise click.UsageError("--sql and --tags do not go together: filter tags in the SQL "
                               "with TAGS, e.g. \"TAGS IN ('A', 'B') AND ...\"")
    return sql, "SQL92"


@click.command()
@click.argument("topic")
@click.option("-n", "--lines", "last", type=int, default=0, show_default=True,
              help="Show the last N messages of each queue first.")
@click.option("--tags", "expression", default="*", show_default=True)
@SQL_OPTION
@click.option("-f", "--format", "fmt", help="kcat-style: %t %q %o %k %T %i %s %b %p{name}.")
@click.option("--body", "body_format", type=click.Choice(BODY_FORMATS), default="auto",
              show_default=True)
@pass_ctx
def tail(ctx: Ctx, topic: str, last: int, expression: str, sql: str | None, fmt: str | None,
         body_format: str) -> None:
    """Follow new messages on every queue of TOPIC, like tail -f, without joining a group or
    committing anything (Ctrl-C stops).

    \b
    Examples:
      rmqctl tail Orders
      rmqctl tail Orders -n 5 --format '%T %b'
      rmqctl tail Orders --sql "region = 'eu' AND amount > 100"
    """
    expression, kind = subscription(expression, sql)
    done = asyncio.Event()
    show = printer(ctx, fmt, body_format, None, done)

    async def work(ns: NameServerClient) -> None:
        consumer = GroupConsumer(ns.remoting, ns, f"rmqctl-tail-{os.getpid()}", topic,
                                 expression, broadcast=True, timeout=ctx.timeout,
                                 expression_type=kind)
        consumer.route = await topic_route(ns, topic)
        await consumer.check_filter()
        await read_queues(consumer, consumer.route.read_queues, f"-{last}" if last else "last",
                          False, show, done, commit=False)

    ctx.run(work)


@click.command()
@click.argument("topic")
@click.option("-g", "--group", required=True, help="Consumer group (offsets are committed).")
@click.option("--tags", "expression", default="*", show_default=True,
              help="Tag expression, e.g. 'TagA || TagB'.")
@SQL_OPTION
@click.option("--from", "start", metavar="WHERE",
              help="first, last, @TIMESTAMP_MS, -N (the last N per queue) or an offset. "
                   "Default: the group's committed offset.")
@click.option("-c", "--count", type=int, help="Stop after N messages.")
@click.option("-e", "--exit-at-end", is_flag=True, help="Stop when caught up.")
@click.option("--broadcast", is_flag=True, help="Read every queue; commit nothing.")
@click.option("-f", "--format", "fmt", help="kcat-style: %t %q %o %k %T %i %s %b %p{name}.")
@click.option("--body", "body_format", type=click.Choice(BODY_FORMATS), default="auto",
              show_default=True)
@click.option("--exec", "command", metavar="CMD",
              help="Run CMD (with sh) for each message instead of printing it: body on stdin, "
                   "RMQ_TOPIC, RMQ_MSG_ID, RMQ_KEYS, RMQ_TAGS, RMQ_RECONSUME_TIMES, ... in the "
                   "environment. A non-zero exit fails the message.")
@click.option("--retry", is_flag=True,
              help="Send failed messages back to be redelivered later through %RETRY%GROUP "
                   "(then %DLQ%GROUP), instead of stopping.")
@click.option("--max-retries", type=click.IntRange(0, 64), default=16, show_default=True,
              help="With --retry: redeliveries before a message goes to the DLQ.")
@click.option("--pop", is_flag=True,
              help="POP consumption (RocketMQ 5.x): the broker assigns messages; each is acked "
                   "once handled, or comes back after --invisible.")
@click.option("--invisible", type=click.FloatRange(1, 43200), default=60.0, show_default=True,
              help="With --pop: seconds a popped message stays hidden before it comes back.")
@click.option("--reply", is_flag=True,
              help="Answer request messages (rmqctl request, Java's request()) once handled: "
                   "with --exec the command's stdout is the reply, else the request's body "
                   "is echoed. Other messages get no reply.")
@pass_ctx
def consume(ctx: Ctx, topic: str, group: str, expression: str, sql: str | None,
            start: str | None,
            count: int | None, exit_at_end: bool, broadcast: bool, fmt: str | None,
            body_format: str, command: str | None, retry: bool, max_retries: int, pop: bool,
            invisible: float, reply: bool) -> None:
    """Consume TOPIC as a member of GROUP, printing each message or running a command for
    it (Ctrl-C stops).

    \b
    The group's offsets move past what was shown (or handled) only: after `| head -3`, the
    next run starts with the first message that did not get out, and consume exits 0 as
    Unix filters do. Exit codes: 0 done, 1 error (also: an --exec command failed a message
    without --retry; its offset is not committed), 2 misuse, 3 no such topic, 4 timeout,
    130 interrupted.

    \b
    Examples:
      rmqctl consume Numbers -g cli --from first -e --format '%b'
      rmqctl -o ndjson consume Orders -g audit --tags 'TagA || TagB' -c 10
      rmqctl consume Orders -g big --sql 'amount BETWEEN 100 AND 500' -e
      rmqctl consume Orders -g g2 --from @1700000000000 -e
      rmqctl consume Orders -g billing --exec './bill.sh' --retry
      rmqctl consume Orders -g popper --pop --invisible 30
      rmqctl consume Prices -g pricer --reply --exec './quote.sh'
    """
    if retry and not command:
        raise click.UsageError("--retry needs --exec: it is the command's failures that retry")
    if pop and (broadcast or start is not None):
        raise click.UsageError("--pop takes neither --broadcast nor --from: the broker keeps "
                               "the group's place")
    expression, kind = subscription(expression, sql)
    done = asyncio.Event()
    replier = Replier() if reply else None
    show = printer(ctx, fmt, body_format, count, done)
    if command:
        show = counted(exec_handler(command, replier), count, done)
    elif replier is not None:
        show = replier.echo(show)

    async def work(ns: NameServerClient) -> None:
        if replier is not None:
            replier.producer = Producer(ns.remoting, ns, timeout=ctx.timeout)
        if pop:
            await pop_loop(PopConsumer(ns.remoting, ns, group, ctx.timeout), topic,
                           (expression, kind), int(invisible * 1000), exit_at_end, show, retry,
                           done)
            return
        consumer = GroupConsumer(ns.remoting, ns, group, topic, expression, broadcast,
                                 ctx.timeout, retry=retry, expression_type=kind)

        async def send_back(msg: MessageExt) -> None:
            await consumer.send_back(msg, max_retries)

        failure = send_back if retry else None
        try:
            if broadcast:
                await read_queues(consumer, await consumer.join(), start, exit_at_end, show,
                                  done)
            else:
                await read_group(consumer, start, exit_at_end, show, done,
                                 on_failure=failure)
        finally:
            await consumer.leave()

    ctx.run(work)


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


async def pop_loop(consumer: PopConsumer, topic: str, expression: tuple[str, str],
                   invisible_ms: int, exit_at_end: bool, show, retry: bool,
                   done: asyncio.Event) -> None:
    """POP until `done` (or, with -e, until a pop finds nothing): each message handled is
    acked; a failed one is left to come back after its invisible time (--retry), or stops
    consumption unacked."""
    while not done.is_set():
        popped = await consumer.pop(topic, 32, invisible_ms, 0 if exit_at_end else 15000,
                                    expression[0], expression_type=expression[1])
        if not popped and exit_at_end:
            return
        for item in popped:
            if done.is_set():
                return
            outcome = show(item.message)
            if outcome is None or await outcome:
                await consumer.ack(item)
            elif not retry:
                raise HandlerFailed(f"the handler failed {item.message.topic}/"
                                    f"{item.message.queue_id}@{item.message.queue_offset} "
                                    f"(msgId {item.message.msg_id}); it is not acked and comes "
                                    f"back after {invisible_ms / 1000:g} s")

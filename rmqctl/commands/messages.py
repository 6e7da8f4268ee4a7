"""`rmqctl send` and `rmqctl consume`: messages in and out, for people and for pipes."""

from __future__ import annotations

import asyncio
import os
import re
import sys

import click

from rmqnode.message import RETRY_TOPIC, MessageExt
from rmqctl.client.consumer import GroupConsumer
from rmqctl.client.pop import PopConsumer
from rmqctl.client.namesrv import NameServerClient
from rmqctl.client.producer import Producer, SendResult, topic_route
from rmqctl.commands.store import BODY_FORMATS, body_text, message_row
from rmqctl.context import Ctx, pass_ctx
from rmqctl.output import emit_rows

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


def split_input(data: bytes, whole: bool, delimiter: str | None) -> list[bytes]:
    if whole:
        return [data]
    sep = (delimiter or "\n").encode().decode("unicode_escape").encode()
    parts = data.split(sep)
    if parts and parts[-1] == b"":
        parts.pop()  # a trailing delimiter ends the last message, it does not start one
    return parts


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
@pass_ctx
def send(ctx: Ctx, topic: str, body: str | None, tags: str | None, keys: str | None,
         props: tuple[str, ...], delay_level: int, mode: str, sharding_key: str | None,
         compress: str | None, delimiter: str | None, whole: bool, batch: int) -> None:
    """Send BODY to TOPIC, or each line of stdin as one message.

    \b
    Examples:
      rmqctl send Orders 'hello' --tags TagA --keys order-1
      seq 1 5000 | rmqctl send Numbers
      cat event.json | rmqctl send Events --whole -p source=cli
      rmqctl -o ndjson send Orders 'x' --sharding-key customer-7
    """
    properties = {}
    for item in props:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.UsageError(f"-p expects KEY=VALUE, got {item!r}")
        properties[key] = value
    if body is not None:
        bodies = [body.encode()]
    elif sys.stdin.isatty():
        raise click.UsageError("give BODY, or pipe messages into stdin")
    else:
        bodies = split_input(sys.stdin.buffer.read(), whole, delimiter)
    key_list = keys.split() if keys else None

    async def work(ns: NameServerClient) -> list[SendResult]:
        producer = Producer(ns.remoting, ns, timeout=ctx.timeout)
        one = dict(tags=tags, keys=key_list, props=properties)
        if batch > 1:
            out = []
            for i in range(0, len(bodies), batch):
                out += await producer.send_batch(topic, bodies[i:i + batch],
                                                 sharding_key=sharding_key, **one)
            return out
        if mode == "async":
            window = asyncio.Semaphore(64)

            async def limited(b: bytes) -> SendResult:
                async with window:
                    return await producer.send(topic, b, delay_level=delay_level,
                                               sharding_key=sharding_key, compression=compress,
                                               **one)
            return list(await asyncio.gather(*(limited(b) for b in bodies)))
        return [await producer.send(topic, b, delay_level=delay_level, sharding_key=sharding_key,
                                    oneway=mode == "oneway", compression=compress, **one)
                for b in bodies]

    results = ctx.run(work)
    emit_rows([result_row(r) for r in results], ctx.output,
              ["msgId", "queueId", "queueOffset", "status"] if ctx.output != "json" else None)


class HandlerFailed(click.ClickException):
    """A --exec command failed a message and --retry was not given: consumption stops, and
    the message's offset is not committed, so the next run starts with it."""

    exit_code = 3


def handler_env(msg: MessageExt) -> dict[str, str]:
    """What an --exec command learns about its message, beside the body on stdin."""
    return {"RMQ_TOPIC": msg.topic, "RMQ_QUEUE_ID": str(msg.queue_id),
            "RMQ_QUEUE_OFFSET": str(msg.queue_offset), "RMQ_MSG_ID": msg.msg_id,
            "RMQ_KEYS": " ".join(msg.keys), "RMQ_TAGS": msg.tags or "",
            "RMQ_RECONSUME_TIMES": str(msg.reconsume_times),
            "RMQ_BORN_TIMESTAMP": str(msg.born_timestamp),
            "RMQ_STORE_TIMESTAMP": str(msg.store_timestamp)}


def exec_handler(command: str):
    """A handler that runs `command` (with sh) once per message, body on stdin; True when
    it exits 0."""
    async def handle(msg: MessageExt) -> bool:
        sys.stdout.flush()
        proc = await asyncio.create_subprocess_shell(
            command, stdin=asyncio.subprocess.PIPE, env={**os.environ, **handler_env(msg)})
        await proc.communicate(msg.body_inflated())
        return proc.returncode == 0
    return handle


async def read_queue(consumer: GroupConsumer, mq, start: str | None, exit_at_end: bool,
                     show, done: asyncio.Event, commit: bool = True,
                     on_failure=None) -> None:
    """Pull one queue from its start offset, in order, until caught up (exit_at_end) or
    `done`; offsets are committed after every batch. `show` may be a coroutine answering
    whether the message was handled; a failed one goes to `on_failure` (retry) or stops
    the queue with its offset uncommitted."""
    offset = await consumer.start_offset(mq, start)
    while not done.is_set():
        result = await consumer.pull(mq, offset, 32, 0 if exit_at_end else 15000,
                                     commit_offset=offset if commit else None)
        for msg in result.messages:
            if done.is_set():  # -c N reached within the batch: what was shown is consumed
                if commit:
                    await consumer.commit(mq, msg.queue_offset)
                return
            if mq.topic == consumer.retry_topic:
                msg.topic = msg.properties.get(RETRY_TOPIC, msg.topic)  # as Java shows it
            outcome = show(msg)
            if outcome is None or await outcome:
                continue
            if on_failure is not None:
                await on_failure(msg)
                continue
            if commit:
                await consumer.commit(mq, msg.queue_offset)
            raise HandlerFailed(f"the handler failed {msg.topic}/{msg.queue_id}@"
                                f"{msg.queue_offset} (msgId {msg.msg_id}); its offset is not "
                                "committed (--retry sends failed messages back instead)")
        if result.next_offset != offset:
            offset = result.next_offset
            if commit:
                await consumer.commit(mq, offset)
        elif exit_at_end and offset >= result.max_offset:
            return
        sys.stdout.flush()


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
                await _stop_all(list(readers.values()))
                raise task.exception()
        if exit_at_end and readers and all(t.done() for t in readers.values()):
            break
        waits = [asyncio.ensure_future(done.wait()), asyncio.ensure_future(consumer.changed.wait())]
        try:
            await asyncio.wait(waits + list(readers.values()), timeout=rebalance_every,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            await _stop_all(waits)
        if exit_at_end and not readers:
            break
    await _stop_all(list(readers.values()))


def printer(ctx: Ctx, fmt: str | None, body_format: str, count: int | None,
            done: asyncio.Event):
    """What consume and tail do with each message: a format line, or an ndjson row."""
    if fmt is None:
        fmt = "%b" if ctx.output == "raw" else "%t/%q@%o %i %b"
    if not fmt.endswith("\\n") and not fmt.endswith("\n"):
        fmt += "\n"
    printed = 0

    def show(msg: MessageExt) -> None:
        nonlocal printed
        if ctx.output in ("json", "ndjson"):
            emit_rows([message_row(msg, body_format)], "ndjson")
        else:
            sys.stdout.write(render(fmt, msg, body_format))
        printed += 1
        if count is not None and printed >= count:
            done.set()
    return show


@click.command()
@click.argument("topic")
@click.option("-n", "--lines", "last", type=int, default=0, show_default=True,
              help="Show the last N messages of each queue first.")
@click.option("--tags", "expression", default="*", show_default=True)
@click.option("-f", "--format", "fmt", help="kcat-style: %t %q %o %k %T %i %s %b %p{name}.")
@click.option("--body", "body_format", type=click.Choice(BODY_FORMATS), default="auto",
              show_default=True)
@pass_ctx
def tail(ctx: Ctx, topic: str, last: int, expression: str, fmt: str | None,
         body_format: str) -> None:
    """Follow new messages on every queue of TOPIC, like tail -f, without joining a group or
    committing anything (Ctrl-C stops).

    \b
    Examples:
      rmqctl tail Orders
      rmqctl tail Orders -n 5 --format '%T %b'
    """
    done = asyncio.Event()
    show = printer(ctx, fmt, body_format, None, done)

    async def work(ns: NameServerClient) -> None:
        consumer = GroupConsumer(ns.remoting, ns, f"rmqctl-tail-{os.getpid()}", topic,
                                 expression, broadcast=True, timeout=ctx.timeout)
        consumer.route = await topic_route(ns, topic)
        await read_queues(consumer, consumer.route.read_queues, f"-{last}" if last else "last",
                          False, show, done, commit=False)

    ctx.run(work)


@click.command()
@click.argument("topic")
@click.option("-g", "--group", required=True, help="Consumer group (offsets are committed).")
@click.option("--tags", "expression", default="*", show_default=True,
              help="Tag expression, e.g. 'TagA || TagB'.")
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
@pass_ctx
def consume(ctx: Ctx, topic: str, group: str, expression: str, start: str | None,
            count: int | None, exit_at_end: bool, broadcast: bool, fmt: str | None,
            body_format: str, command: str | None, retry: bool, max_retries: int, pop: bool,
            invisible: float) -> None:
    """Consume TOPIC as a member of GROUP, printing each message or running a command for
    it (Ctrl-C stops).

    \b
    Exit codes: 0 done, 1 error, 2 misuse, 3 a --exec command failed a message (without
    --retry; the message's offset is not committed), 130 interrupted.

    \b
    Examples:
      rmqctl consume Numbers -g cli --from first -e --format '%b'
      rmqctl -o ndjson consume Orders -g audit --tags 'TagA || TagB' -c 10
      rmqctl consume Orders -g g2 --from @1700000000000 -e
      rmqctl consume Orders -g billing --exec './bill.sh' --retry
      rmqctl consume Orders -g popper --pop --invisible 30
    """
    if retry and not command:
        raise click.UsageError("--retry needs --exec: it is the command's failures that retry")
    if pop and (broadcast or start is not None):
        raise click.UsageError("--pop takes neither --broadcast nor --from: the broker keeps "
                               "the group's place")
    done = asyncio.Event()
    show = printer(ctx, fmt, body_format, count, done)
    if command:
        show = counted(exec_handler(command), count, done)

    async def work(ns: NameServerClient) -> None:
        if pop:
            await pop_loop(PopConsumer(ns.remoting, ns, group, ctx.timeout), topic, expression,
                           int(invisible * 1000), exit_at_end, show, retry, done)
            return
        consumer = GroupConsumer(ns.remoting, ns, group, topic, expression, broadcast,
                                 ctx.timeout, retry=retry)

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
            sys.stdout.flush()
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


async def pop_loop(consumer: PopConsumer, topic: str, expression: str, invisible_ms: int,
                   exit_at_end: bool, show, retry: bool, done: asyncio.Event) -> None:
    """POP until `done` (or, with -e, until a pop finds nothing): each message handled is
    acked; a failed one is left to come back after its invisible time (--retry), or stops
    consumption unacked."""
    while not done.is_set():
        popped = await consumer.pop(topic, 32, invisible_ms, 0 if exit_at_end else 15000,
                                    expression)
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

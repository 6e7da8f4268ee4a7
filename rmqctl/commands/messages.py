"""`rmqctl consume` and `rmqctl tail`: messages out, for people and for pipes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

import click

from rmqnode.errors import ConnectionLost, RemotingError, RemotingTimeout
from rmqnode.message import RETRY_TOPIC, MessageExt
from rmqctl.client.consumer import GroupConsumer
from rmqctl.client.pop import PopConsumer
from rmqctl.client.namesrv import NameServerClient
from rmqctl.client.producer import Producer, topic_route
from rmqctl.client.requester import is_request, send_reply
from rmqctl.context import EXIT_ERROR, Ctx, pass_ctx
from rmqctl.render import BODY_FORMATS, format_options, printer


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
@format_options
@click.option("--body", "body_format", type=click.Choice(BODY_FORMATS), default="auto",
              show_default=True)
@pass_ctx
def tail(ctx: Ctx, topic: str, last: int, expression: str, sql: str | None, fmt: str | None,
         delimiter: str | None, body_format: str) -> None:
    """Follow new messages on every queue of TOPIC, like tail -f, without joining a group or
    committing anything (Ctrl-C stops).

    \b
    Examples:
      rmqctl tail Orders
      rmqctl tail Orders -n 5 --format '%T %b'
      rmqctl tail Orders --format '%s{strftime[%F %T]} %k %p{traceId} %b{escape}'
      rmqctl tail Orders --sql "region = 'eu' AND amount > 100"
    """
    expression, kind = subscription(expression, sql)
    done = asyncio.Event()
    show = printer(ctx, fmt, body_format, None, done, delimiter)

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
@format_options
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
            delimiter: str | None, body_format: str, command: str | None, retry: bool,
            max_retries: int, pop: bool, invisible: float, reply: bool) -> None:
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
      rmqctl -o raw consume Blobs -g dump -e --delimiter '\\0' | xargs -0 -n1 echo
      rmqctl -o csv consume Orders -g report -e > orders.csv
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
    show = printer(ctx, fmt, body_format, count, done, delimiter)
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

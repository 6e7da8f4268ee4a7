"""`rmqctl consume` and `rmqctl tail`: messages out, for people and for pipes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from typing import TypeVar

import click

from rmqnode.errors import ConnectionLost, RemotingError, RemotingTimeout
from rmqnode.message import RETRY_TOPIC, MessageExt
from rmqctl.client.admin import Admin
from rmqctl.client.consumer import GroupConsumer
from rmqctl.client.pop import PopConsumer
from rmqctl.client.namesrv import NameServerClient
from rmqctl.client.producer import MessageQueue, Producer, TopicRoute, topic_route
from rmqctl.client.requester import is_request, send_reply
from rmqctl.commands.message import find_message
from rmqctl.context import EXIT_ERROR, Ctx, NotFound, pass_ctx
from rmqctl.positions import (Anchor, Kind, Position, PositionError, Span, parse_position,
                              parse_queue_ids, parse_span, with_end)
from rmqctl.pipes import counted, handler_env, pipe_options, shower, translated
from rmqctl.render import BODY_FORMATS, format_options

T = TypeVar("T")


class HandlerFailed(click.ClickException):
    """A --exec command failed a message and --retry was not given: consumption stops, and
    the message's offset is not committed, so the next run starts with it."""

    exit_code = EXIT_ERROR


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
            outcome = show(msg)
            if outcome is not None and not await outcome:
                return False
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


@dataclass(frozen=True)
class Plan:
    """How every queue is read: from where (None: the group's committed offset; an Anchor:
    each queue from a message, --from msgid:ID), up to where (None: on and on), and whether
    to stop once caught up (-e)."""
    start: Position | Anchor | None = None
    stop: Position | None = None
    exit_at_end: bool = False

    @property
    def finite(self) -> bool:
        """Every queue's reader ends by itself, so the command ends when they all have."""
        return self.exit_at_end or self.stop is not None

    def start_of(self, consumer: GroupConsumer, mq: MessageQueue) -> Position | None:
        if isinstance(self.start, Anchor):
            return self.start.start(mq.topic, consumer.addr(mq), mq.queue_id)
        return self.start


async def anchored(ctx: Ctx, ns: NameServerClient, topic: str, plan: Plan) -> Plan:
    """--from msgid:ID: the message found as `message get` finds it (an offsetMsgId where it
    points, a msgId in TOPIC's index), which must be one of TOPIC's; tables say on stderr
    which message it is."""
    if not isinstance(plan.start, Position) or plan.start.kind is not Kind.MESSAGE:
        return plan
    msg_id = plan.start.msg_id
    kind, msg = await find_message(Admin(ns), msg_id, topic)
    if msg.topic != topic:
        raise NotFound(f"--from msgid:{msg_id}: that is a message of {msg.topic}, not {topic}")
    if ctx.output == "table":
        click.echo(f"rmqctl: --from msgid:{msg_id} ({kind}): {topic}/{msg.queue_id}@"
                   f"{msg.queue_offset} at {msg.store_host_text}, stored at "
                   f"{msg.store_timestamp}", err=True)
    return replace(plan, start=Anchor(topic, msg.store_host_text, msg.queue_id,
                                      msg.queue_offset, msg.store_timestamp))


async def read_queue(consumer: GroupConsumer, mq, plan: Plan, show, done: asyncio.Event,
                     commit: bool = True, on_failure=None) -> None:
    """Pull one queue from its start offset, in order, until its stop (the first message at
    or past it is not read), caught up (-e), or `done`. `show` may be a coroutine answering
    whether the message was handled; a failed one goes to `on_failure` (retry) or stops the
    queue. The group's offset moves past what was handled only: committed with each pull,
    and when the queue stops for any reason (-c N, Ctrl-C, a closed output, a failure)."""
    offset = await consumer.start_offset(mq, plan.start_of(consumer, mq))
    stop = await consumer.stop_at(mq, plan.stop) if plan.stop is not None else None
    committed = None
    try:
        while not done.is_set() and not (stop and stop.passed(offset)):
            pulled_at = committed = offset
            wait = 0 if plan.exit_at_end else stop.wait_ms(15000) if stop else 15000
            room = stop.offset - offset if stop and stop.offset is not None else 32
            result = await consumer.pull(mq, pulled_at, min(32, room), wait,
                                         commit_offset=pulled_at if commit else None)
            for msg in result.messages:
                if done.is_set():  # -c N reached, or the output closed, within the batch
                    return
                if stop and stop.before(msg):
                    offset = msg.queue_offset
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
            caught_up = result.next_offset == pulled_at >= result.max_offset
            if caught_up and (plan.exit_at_end or (stop and stop.expired())):
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


async def until_done(work: Awaitable[T], done: asyncio.Event) -> T | None:
    """`work`, cancelled when `done` comes first (-c N, --idle-timeout, a closed output);
    its own failure surfaces here."""
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(done.wait())
    try:
        await asyncio.wait([task, stop], return_when=asyncio.FIRST_COMPLETED)
    finally:
        cut = not task.done()
        await _stop_all([stop, task] if cut else [stop])
    return None if cut else task.result()


async def read_queues(consumer: GroupConsumer, queues: list, plan: Plan, show,
                      done: asyncio.Event, commit: bool = True, on_failure=None) -> None:
    """A fixed set of queues, read concurrently (tail, broadcasting, --queue), until every
    reader ends or `done`."""
    await until_done(asyncio.gather(*(read_queue(consumer, mq, plan, show, done, commit,
                                                 on_failure) for mq in queues)), done)


async def read_group(consumer: GroupConsumer, plan: Plan, show, done: asyncio.Event,
                     rebalance_every: float = 20.0, on_failure=None) -> None:
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
                    consumer, mq, plan if mq not in started else replace(plan, start=None),
                    show, done, on_failure=on_failure))
                started.add(mq)
            for mq, task in list(readers.items()):
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()
            if plan.finite and readers and all(t.done() for t in readers.values()):
                break
            waits = [asyncio.ensure_future(done.wait()),
                     asyncio.ensure_future(consumer.changed.wait())]
            try:
                await asyncio.wait(waits + list(readers.values()), timeout=rebalance_every,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                await _stop_all(waits)
            if plan.finite and not readers:
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


def now_ms() -> int:
    return int(time.time() * 1000)


def parsed(parse):
    """A click callback parsing with `parse`; an error names the option (one line, exit 2).
    Relative times mean the moment the command starts."""
    def callback(click_ctx: click.Context, param: click.Parameter, value):
        if value is None or value == ():
            return None
        try:
            return parse(value)
        except PositionError as exc:
            raise PositionError(f"{param.opts[-1]} {exc}") from None
    return callback


FROM_HELP = ("Where to start, or START:END: an offset N, first, last, -N (the last N per "
             "queue), +N (N after the first), @TIME (@1764410400000 ms, @1764410400 s, "
             "@2026-11-29, @2026-11-29T10:00:00Z, @-1h, @-1m30s), msgid:ID (a message, by "
             "offsetMsgId or msgId: its queue starts at it, the others at its store time), or "
             "a range (10:20, :end, @-1h:end, @T1:T2, @2026-11-29:1h, msgid:ID:end).")
QUEUE_OPTION = click.option(
    "--queue", "queue_ids", multiple=True, metavar="N[,N...]",
    callback=parsed(parse_queue_ids), help="Only these queue ids (repeatable, or a comma list).")
BROKER_OPTION = click.option(
    "--broker", "broker_name", metavar="NAME",
    help="Only this broker's queues (needed with --queue when several brokers have the topic).")


def range_options(default: str):
    """--from, --to, --idle-timeout, --queue and --broker, as consume and tail take them."""
    def decorate(command):
        for option in reversed([
            click.option("--from", "span", metavar="WHERE",
                         callback=parsed(lambda v: parse_span(v, now_ms())),
                         help=f"{FROM_HELP} Default: {default}."),
            click.option("--to", "end", metavar="WHERE",
                         callback=parsed(lambda v: parse_position(v, now_ms())),
                         help="Stop each queue before this offset, or at the first message "
                              "stored at or after this @TIME (the same forms as --from; "
                              "'end': the end as it is at start); exit when every queue has."),
            click.option("--idle-timeout", type=click.FloatRange(0, min_open=True),
                         metavar="SECONDS", help="Stop when no message came for SECONDS."),
            QUEUE_OPTION, BROKER_OPTION]):
            command = option(command)
        return command
    return decorate


def pick_queues(topic: str, route: TopicRoute, queue_ids: tuple[int, ...] | None,
                broker_name: str | None) -> list[MessageQueue] | None:
    """The queues --queue and --broker name, or None when they name none (all queues). A
    queue id is a queue of one broker, so several brokers need --broker."""
    if not queue_ids and broker_name is None:
        return None
    names = sorted({mq.broker_name for mq in route.read_queues})
    if broker_name is not None and broker_name not in names:
        raise NotFound(f"{topic} has no queues on a broker {broker_name!r} (its "
                       f"brokers: {', '.join(names)})")
    if queue_ids and broker_name is None and len(names) > 1:
        raise PositionError(f"--queue: several brokers have {topic} ({', '.join(names)})"
                            "; give --broker NAME too")
    mine = [mq for mq in route.read_queues if broker_name in (None, mq.broker_name)]
    have = sorted(mq.queue_id for mq in mine)
    for queue_id in queue_ids or ():
        if queue_id not in have:
            where = f" on {mine[0].broker_name}" if mine else ""
            raise NotFound(f"{topic} has no queue {queue_id}{where} (its queues: "
                           f"{', '.join(map(str, have)) or 'none'})")
    return [mq for mq in mine if not queue_ids or mq.queue_id in queue_ids]


class Idle:
    """--idle-timeout: `done` once no message came for `seconds` (None: never)."""

    def __init__(self, seconds: float | None, done: asyncio.Event) -> None:
        self.seconds = seconds
        self.done = done
        self.last = time.monotonic()

    def watching(self, show):
        """`show`, noting when each message came."""
        if self.seconds is None:
            return show

        def seen(msg: MessageExt):
            self.last = time.monotonic()
            return show(msg)
        return seen

    @contextlib.asynccontextmanager
    async def running(self):
        """The watch, for as long as the command reads."""
        if self.seconds is None:
            yield
            return
        self.last = time.monotonic()
        watch = asyncio.ensure_future(self._watch())
        try:
            yield
        finally:
            await _stop_all([watch])

    async def _watch(self) -> None:
        assert self.seconds is not None
        while (left := self.last + self.seconds - time.monotonic()) > 0:
            await asyncio.sleep(left)
        self.done.set()


@click.command()
@click.argument("topic")
@click.option("-n", "--lines", "last", type=click.IntRange(0), default=0, show_default=True,
              help="Show the last N messages of each queue first (as --from -N).")
@range_options("the end of each queue (-n: the last N)")
@click.option("--tags", "expression", default="*", show_default=True)
@SQL_OPTION
@format_options
@click.option("--body", "body_format", type=click.Choice(BODY_FORMATS), default="auto",
              show_default=True)
@pipe_options
@pass_ctx
def tail(ctx: Ctx, topic: str, last: int, span: Span | None, end: Position | None,
         idle_timeout: float | None, queue_ids: tuple[int, ...] | None,
         broker_name: str | None, expression: str, sql: str | None, fmt: str | None,
         delimiter: str | None, body_format: str, translate: str | None,
         dump: str | None) -> None:
    """Follow new messages on every queue of TOPIC (or --queue), like tail -f, without
    joining a group or committing anything (Ctrl-C stops; --to, --idle-timeout and a range
    in --from stop it too).

    \b
    Examples:
      rmqctl tail Orders
      rmqctl tail Orders -n 5 --format '%T %b'
      rmqctl tail Orders --format '%s{strftime[%F %T]} %k %p{traceId} %b{escape}'
      rmqctl tail Orders --from @-15m                  # the last 15 minutes, then follow
      rmqctl tail Orders --from @-1h:end               # the last hour, then exit
      rmqctl tail Orders --queue 0,2 --idle-timeout 30
      rmqctl tail Orders --sql "region = 'eu' AND amount > 100"
      rmqctl tail Orders --from msgid:7F00000100002A9F0000000000001234  # from a message
      rmqctl tail Blobs --translate 'gunzip' --format '%b{escape}'
      rmqctl tail Blobs --from first:end --dump ./blobs  # a file per message
    """
    if last and span is not None:
        raise PositionError("-n N and --from do not go together (-n N is --from -N)")
    expression, kind = subscription(expression, sql)
    start = Position(Kind.BEFORE_END, last) if last else Position(Kind.END)
    span = with_end(span or Span(start, None), end)
    plan = Plan(span.start or start, span.end)
    done = asyncio.Event()
    idle = Idle(idle_timeout, done)
    show = shower(ctx, fmt, body_format, None, done, delimiter, dump)
    if translate is not None:
        show = translated(translate, show)
    show = idle.watching(show)

    async def work(ns: NameServerClient) -> None:
        consumer = GroupConsumer(ns.remoting, ns, f"rmqctl-tail-{os.getpid()}", topic,
                                 expression, broadcast=True, timeout=ctx.timeout,
                                 expression_type=kind)
        consumer.route = await topic_route(ns, topic)
        queues = pick_queues(topic, consumer.route, queue_ids, broker_name)
        await consumer.check_filter()
        found = await anchored(ctx, ns, topic, plan)
        async with idle.running():
            await read_queues(consumer, queues or consumer.route.read_queues, found, show,
                              done, commit=False)

    ctx.run(work)


@click.command()
@click.argument("topic")
@click.option("-g", "--group", required=True, help="Consumer group (offsets are committed).")
@click.option("--tags", "expression", default="*", show_default=True,
              help="Tag expression, e.g. 'TagA || TagB'.")
@SQL_OPTION
@range_options("the group's committed offset")
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
@pipe_options
@pass_ctx
def consume(ctx: Ctx, topic: str, group: str, expression: str, sql: str | None,
            span: Span | None, end: Position | None, idle_timeout: float | None,
            queue_ids: tuple[int, ...] | None, broker_name: str | None,
            count: int | None, exit_at_end: bool, broadcast: bool, fmt: str | None,
            delimiter: str | None, body_format: str, command: str | None, retry: bool,
            max_retries: int, pop: bool, invisible: float, reply: bool,
            translate: str | None, dump: str | None) -> None:
    """Consume TOPIC as a member of GROUP, printing each message or running a command for
    it (Ctrl-C stops).

    \b
    The group's offsets move past what was shown (or handled) only: after `| head -3`, the
    next run starts with the first message that did not get out, and consume exits 0 as
    Unix filters do. With an end (--to, or START:END in --from) each queue stops before it
    and consume exits once every queue has. --queue (and --broker) read just those queues,
    outside the group's rebalancing, still committing offsets. Exit codes: 0 done, 1 error
    (also: an --exec command failed a message without --retry; its offset is not
    committed), 2 misuse, 3 no such topic, queue or broker, 4 timeout, 130 interrupted.

    \b
    Examples:
      rmqctl consume Numbers -g cli --from first -e --format '%b'
      rmqctl -o ndjson consume Orders -g audit --tags 'TagA || TagB' -c 10
      rmqctl -o raw consume Blobs -g dump -e --delimiter '\\0' | xargs -0 -n1 echo
      rmqctl -o csv consume Orders -g report -e > orders.csv
      rmqctl consume Orders -g big --sql 'amount BETWEEN 100 AND 500' -e
      rmqctl consume Orders -g g2 --from @2026-11-29T09:00:00Z --to @2026-11-29T10:00:00Z
      rmqctl consume Orders -g g2 --from @-1h:end          # the last hour, then exit
      rmqctl consume Orders -g g2 --from 100:200 --queue 3 # offsets 100..199 of queue 3
      rmqctl consume Orders -g g2 --from :end              # catch up to now, then exit
      rmqctl consume Orders -g g2 --idle-timeout 10        # until 10 s without a message
      rmqctl consume Orders -g billing --exec './bill.sh' --retry
      rmqctl consume Orders -g popper --pop --invisible 30
      rmqctl consume Prices -g pricer --reply --exec './quote.sh'
      rmqctl consume Orders -g g2 --from msgid:7F0000014DAC478E98D07BF9B51D1388 -e
      rmqctl consume Events -g cli --translate 'jq -c .payload' -e
      rmqctl consume Blobs -g dump -e --dump ./blobs       # a file per message
      rmqctl consume Blobs -g dump -e --dump - | xargs -0 -n1 echo
    """
    if command and dump is not None:
        raise click.UsageError("--exec and --dump both handle each message: one")
    if retry and not command:
        raise click.UsageError("--retry needs --exec: it is the command's failures that retry")
    if pop and (broadcast or span or end or queue_ids or broker_name):
        raise click.UsageError("--pop takes neither --broadcast, --from, --to, --queue nor "
                               "--broker: the broker keeps the group's place and assigns "
                               "the queues")
    expression, kind = subscription(expression, sql)
    span = with_end(span or Span(None, None), end)
    plan = Plan(span.start, span.end, exit_at_end)
    done = asyncio.Event()
    idle = Idle(idle_timeout, done)
    replier = Replier() if reply else None
    show = shower(ctx, fmt, body_format, count, done, delimiter, dump)
    if command:
        show = counted(exec_handler(command, replier), count, done)
    elif replier is not None:
        show = replier.echo(show)
    if translate is not None:
        show = translated(translate, show)
    show = idle.watching(show)

    async def work(ns: NameServerClient) -> None:
        if replier is not None:
            replier.producer = Producer(ns.remoting, ns, timeout=ctx.timeout)
        if pop:
            async with idle.running():
                await until_done(pop_loop(
                    PopConsumer(ns.remoting, ns, group, ctx.timeout), topic, (expression, kind),
                    int(invisible * 1000), exit_at_end, show, retry, done), done)
            return
        consumer = GroupConsumer(ns.remoting, ns, group, topic, expression, broadcast,
                                 ctx.timeout, retry=retry, expression_type=kind)
        found = await anchored(ctx, ns, topic, plan)

        async def send_back(msg: MessageExt) -> None:
            await consumer.send_back(msg, max_retries)

        failure = send_back if retry else None
        if queue_ids or broker_name is not None:
            # Pinned: no heartbeat, so the group's members keep sharing every queue among
            # themselves; the pulls and commits need no membership.
            consumer.route = await topic_route(ns, topic)
            queues = pick_queues(topic, consumer.route, queue_ids, broker_name)
            await consumer.check_filter()
            async with idle.running():
                await read_queues(consumer, queues, found, show, done, not broadcast, failure)
            return
        try:
            async with idle.running():
                if broadcast:
                    await read_queues(consumer, await consumer.join(), found, show, done)
                else:
                    await read_group(consumer, found, show, done, on_failure=failure)
        finally:
            await consumer.leave()

    ctx.run(work)


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

"""`rmqctl dlq ...`: the dead-letter topics (%DLQ%<group>) where messages end up once a
group has failed them retryMaxTimes times; look at them and send them back.

RocketMQ 4.9.8 (and rmqnode) creates a DLQ topic readable and writable, so these commands
read it as it is. Brokers before 4.9 (and rmqnode before it matched 4.9.8) created it
write-only, and a broker refuses pulls from such a topic: `--grant-read` makes it readable
(read-write, as operators do with `updateTopicPerm -p 6`), and without it the command says so
rather than changing the cluster behind your back.
"""

from __future__ import annotations

import asyncio

import click

from rmqnode.errors import RemotingError
from rmqnode.message import (CLUSTER, DELAY, DLQ_PREFIX, KEYS, MAX_OFFSET, MIN_OFFSET,
                             ORIGIN_MESSAGE_ID, REAL_QID, REAL_TOPIC, RETRY_TOPIC, TAGS, UNIQ_KEY,
                             WAIT, MessageExt)
from rmqnode.net.codes import PERM_READ, PERM_WRITE, RequestCode, ResponseCode
from rmqctl.client.admin import Admin
from rmqctl.client.consumer import GroupConsumer
from rmqctl.client.namesrv import NameServerClient
from rmqctl.client.producer import MessageQueue, Producer, topic_route
from rmqctl.render import BODY_FORMATS, message_row
from rmqctl.context import Ctx, pass_ctx
from rmqctl.output import emit_rows

# Properties a resend must not carry over: tags and keys go as themselves, the rest was set
# by brokers (retry, delay, DLQ bookkeeping) or is the producer's own per-send state.
BROKER_SET = (TAGS, KEYS, RETRY_TOPIC, UNIQ_KEY, WAIT, CLUSTER, MAX_OFFSET, MIN_OFFSET,
              REAL_TOPIC, REAL_QID, DELAY, ORIGIN_MESSAGE_ID)


@click.group()
def dlq() -> None:
    """Dead-letter queues: list, show and resend what groups gave up on."""


async def dead_letter_counts(ctx: Ctx, ns: NameServerClient, group: str | None) -> list[dict]:
    """Per DLQ topic (one group's, or all) and queue: how many messages are stored, on every
    broker that answers (ctx.each_broker names those that do not)."""
    topics = sorted(t for t in await ns.topic_list() if t.startswith(DLQ_PREFIX)
                    and (group is None or t == DLQ_PREFIX + group))
    admin = Admin(ns)
    rows = []
    for topic in topics:
        for table in await ctx.each_broker(
                await admin.topic_masters(topic), lambda broker, addr: admin.queue_tables(
                    {broker: addr}, RequestCode.GET_TOPIC_STATS_INFO, {"topic": topic})):
            rows += [{"group": topic[len(DLQ_PREFIX):], "topic": topic, "broker": broker,
                      "queueId": queue["queueId"],
                      "messages": stats["maxOffset"] - stats["minOffset"]}
                     for broker, queue, stats in table]
    return rows


@dlq.command("list")
@click.option("-g", "--group", help="Only this group's DLQ.")
@pass_ctx
def dlq_list(ctx: Ctx, group: str | None) -> None:
    """The %DLQ% topics and how many messages each holds."""
    emit_rows(ctx.run(lambda ns: dead_letter_counts(ctx, ns, group)), ctx.output,
              ["group", "topic", "broker", "queueId", "messages"])
    ctx.finish()


async def readable(ns: NameServerClient, topic: str, grant: bool) -> list[MessageQueue]:
    """The DLQ's queues, after making it readable when asked to (its queue count kept)."""
    try:
        route = await topic_route(ns, topic)
    except RemotingError as exc:
        if exc.code == ResponseCode.TOPIC_NOT_EXIST:
            raise ValueError(f"no dead letters: {topic} does not exist") from None
        raise
    if route.read_queues:
        return route.read_queues
    if not grant:
        raise ValueError(f"{topic} is write-only, as brokers before 4.9 created it; add "
                         f"--grant-read to make it readable (or: rmqctl topic update {topic} "
                         "--perm RW)")
    admin = Admin(ns)
    for addr in route.addrs.values():
        await admin.create_topic(addr, topic, max(len(route.write_queues), 1),
                                 perm=PERM_READ | PERM_WRITE)
    for _ in range(50):  # the brokers register the change with the name servers at once
        route = await topic_route(ns, topic)
        if route.read_queues:
            return route.read_queues
        await asyncio.sleep(0.1)
    raise ValueError(f"{topic} did not become readable")


async def dead_letters(ns: NameServerClient, group: str, grant: bool,
                       timeout: float) -> list[MessageExt]:
    """Every message stored in the group's DLQ, oldest first per queue."""
    topic = DLQ_PREFIX + group
    reader = GroupConsumer(ns.remoting, ns, f"rmqctl-dlq-{group}", topic, broadcast=True,
                           timeout=timeout)
    queues = await readable(ns, topic, grant)
    reader.route = await topic_route(ns, topic)
    found: list[MessageExt] = []
    for mq in queues:
        offset = await reader.start_offset(mq, "first")
        while True:
            result = await reader.pull(mq, offset, 32, 0)
            found += result.messages
            if result.next_offset == offset or result.next_offset >= result.max_offset:
                break
            offset = result.next_offset
    return found


@dlq.command("show")
@click.option("-g", "--group", required=True)
@click.option("--grant-read", is_flag=True, help="Make a write-only DLQ readable first "
              "(as brokers before 4.9 created it).")
@click.option("--body", "body_format", type=click.Choice(BODY_FORMATS), default="auto",
              show_default=True)
@pass_ctx
def dlq_show(ctx: Ctx, group: str, grant_read: bool, body_format: str) -> None:
    """The messages in GROUP's DLQ, with the topic each came from (RETRY_TOPIC)."""
    found = ctx.run(lambda ns: dead_letters(ns, group, grant_read, ctx.timeout))
    rows = [message_row(m, body_format) | {"originTopic": m.properties.get(RETRY_TOPIC, "")}
            for m in found]
    emit_rows(rows, ctx.output, ["msgId", "originTopic", "reconsumeTimes", "storeTimestamp",
                                 "body"] if ctx.output in ("table", "raw") else None)


@dlq.command("resend")
@click.option("-g", "--group", required=True)
@click.option("--msg-id", "msg_ids", multiple=True, help="Only this message (repeatable).")
@click.option("--all", "resend_all", is_flag=True, help="Every message in the DLQ.")
@click.option("--to", "to_topic", help="Send here instead of each message's original topic.")
@click.option("--grant-read", is_flag=True, help="Make a write-only DLQ readable first.")
@pass_ctx
def dlq_resend(ctx: Ctx, group: str, msg_ids: tuple[str, ...], resend_all: bool,
               to_topic: str | None, grant_read: bool) -> None:
    """Send dead messages again, to their original topic (or --to), with their body, tags,
    keys and properties; the copies in the DLQ stay (RocketMQ never deletes one message).

    \b
    Examples:
      rmqctl dlq resend -g billing --all
      rmqctl dlq resend -g billing --msg-id 7F0000014DAC478E98D07BF9B51D1388
    """
    if bool(msg_ids) == resend_all:
        raise click.UsageError("give --msg-id (repeatable) or --all")

    async def work(ns: NameServerClient) -> list[dict]:
        found = await dead_letters(ns, group, grant_read, ctx.timeout)
        chosen = [m for m in found if resend_all or m.msg_id in msg_ids]
        missing = set(msg_ids) - {m.msg_id for m in chosen}
        if missing:
            raise ValueError(f"not in {DLQ_PREFIX}{group}: {', '.join(sorted(missing))}")
        producer = Producer(ns.remoting, ns, timeout=ctx.timeout)
        rows = []
        for msg in chosen:
            topic = to_topic or msg.properties.get(RETRY_TOPIC)
            if not topic:
                raise ValueError(f"{msg.msg_id} has no RETRY_TOPIC: give --to")
            props = {k: v for k, v in msg.properties.items()
                     if k not in BROKER_SET}
            sent = await producer.send(topic, msg.body_inflated(), tags=msg.tags,
                                       keys=msg.keys or None, props=props)
            rows.append({"msgId": msg.msg_id, "topic": topic, "newMsgId": sent.msg_id,
                         "queueId": sent.queue.queue_id, "queueOffset": sent.queue_offset})
        return rows

    emit_rows(ctx.run(work), ctx.output, ["msgId", "topic", "newMsgId"])

"""`rmqctl message ...`: find messages by id, key or offset."""

from __future__ import annotations

import time

import click

from rmqnode.errors import RemotingError
from rmqnode.message import (DELAY, DLQ_PREFIX, ORIGIN_MESSAGE_ID, REAL_TOPIC, RETRY_PREFIX,
                             RETRY_TOPIC, UNIQ_KEY, MessageExt, decode_offset_msg_id)
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode, ResponseCode
from rmqnode.storage.dispatch import SCHEDULE_TOPIC
from rmqctl.client.admin import Admin
from rmqctl.client.consumer import parse_messages
from rmqctl.commands.store import BODY_FORMATS, message_row
from rmqctl.context import Ctx, pass_ctx
from rmqctl.output import emit_object, emit_rows


@click.group()
def message() -> None:
    """Messages: get by id or offset, query by key, trace through retries."""


async def _by_key(admin: Admin, topic: str, key: str, unique: bool, limit: int) -> list:
    found = []
    for addr in (await admin.topic_masters(topic)).values():
        fields = {"topic": topic, "key": key, "maxNum": limit, "beginTimestamp": 0,
                  "endTimestamp": int(time.time() * 1000) + 60_000}
        if unique:
            fields["_UNIQUE_KEY_QUERY"] = True
        resp = await admin.remoting.invoke(addr, RemotingCommand.request(
            RequestCode.QUERY_MESSAGE, fields), admin.namesrv.timeout)
        if resp.code == 0:
            found += [m for m in parse_messages(resp.body)
                      if (m.msg_id == key if unique else key in m.keys)]
    return found


@message.command("get")
@click.argument("msg_id", required=False)
@click.option("-t", "--topic", help="Needed when MSG_ID is a client id (UNIQ_KEY).")
@click.option("--offset", type=int, help="A commit log offset instead of an id (with -b).")
@click.option("-b", "--broker", "broker_addr", help="The broker holding --offset.")
@click.option("--body", "body_format", type=click.Choice(BODY_FORMATS), default="auto",
              show_default=True)
@pass_ctx
def message_get(ctx: Ctx, msg_id: str | None, topic: str | None, offset: int | None,
                broker_addr: str | None, body_format: str) -> None:
    """Show one message: by offset id (the broker's), by client id with -t, or by --offset.

    \b
    Examples:
      rmqctl message get 7F00000100002A9F0000000000001234
      rmqctl message get 7F0000014DAC478E98D07BF9B51D1388 -t Orders
      rmqctl message get --offset 4096 -b 127.0.0.1:10911
    """
    async def work(ns):
        admin = Admin(ns)
        if offset is not None:
            if not broker_addr:
                raise ValueError("--offset needs -b BROKER_ADDR")
            addr, phy = broker_addr, offset
        elif msg_id and topic is None:
            addr, phy = decode_offset_msg_id(msg_id)
        elif msg_id:
            found = await _by_key(admin, topic, msg_id, True, 32)
            if not found:
                raise ValueError(f"no message {msg_id} in topic {topic}")
            return found[0]
        else:
            raise ValueError("give MSG_ID, or --offset with -b")
        resp = await admin.call(addr, RequestCode.VIEW_MESSAGE_BY_ID, {"offset": phy})
        return parse_messages(resp.body)[0]
    emit_object(message_row(ctx.run(work), body_format), ctx.output)


@message.command("query")
@click.option("-t", "--topic", required=True)
@click.option("-k", "--key", required=True, help="A business key (KEYS).")
@click.option("--max", "limit", type=int, default=32, show_default=True)
@click.option("--body", "body_format", type=click.Choice(BODY_FORMATS), default="auto",
              show_default=True)
@pass_ctx
def message_query(ctx: Ctx, topic: str, key: str, limit: int, body_format: str) -> None:
    """Messages of TOPIC whose keys include KEY (`mqadmin queryMsgByKey`)."""
    found = ctx.run(lambda ns: _by_key(Admin(ns), topic, key, False, limit))
    emit_rows([message_row(m, body_format) for m in found], ctx.output,
              ["msgId", "queueId", "queueOffset", "keys", "tags", "storeTimestamp", "body"]
              if ctx.output in ("table", "raw") else None)


async def _committed(admin: Admin, addr: str, group: str, topic: str, queue_id: int) -> int:
    resp = await admin.remoting.invoke(addr, RemotingCommand.request(
        RequestCode.QUERY_CONSUMER_OFFSET, {"consumerGroup": group, "topic": topic,
                                            "queueId": queue_id}), admin.namesrv.timeout)
    return int(resp.field("offset") or -1) if resp.code == 0 else -1


def _copies_of(original: MessageExt):
    """The search key for a message's stored copies, and the test a found message must pass.
    A sent-back copy keeps UNIQ_KEY when the producer set one (Java's do); a copy of a
    message without it (ali-ons, C++ 1.x batches) is found by its first KEYS word and
    recognised by ORIGIN_MESSAGE_ID, the original's offset id."""
    if UNIQ_KEY in original.properties:
        uniq = original.properties[UNIQ_KEY]
        return uniq, True, lambda m: m.msg_id == uniq
    if original.keys:
        origin = original.offset_msg_id
        return original.keys[0], False, lambda m: (
            m.offset_msg_id == origin or m.properties.get(ORIGIN_MESSAGE_ID) == origin)
    return None, False, lambda m: m.offset_msg_id == original.offset_msg_id


async def trace(admin: Admin, original: MessageExt, group: str) -> list[dict]:
    """Every stored copy of a message, through its retries and the DLQ, oldest first: the
    topic it was sent to, the delay parking topic, the group's %RETRY% and %DLQ% topics are
    each queried for it (their index holds every copy's keys)."""
    topic = original.properties.get(RETRY_TOPIC, original.topic)
    key, unique, matches = _copies_of(original)
    hops = []
    stages = {topic: "sent", RETRY_PREFIX + group: "retry", DLQ_PREFIX + group: "dead"}
    for place in [topic, SCHEDULE_TOPIC, RETRY_PREFIX + group, DLQ_PREFIX + group]:
        if key is None:
            found = [original] if place == topic else []
        else:
            try:
                found = await _by_key(admin, place, key, unique, 64)
            except RemotingError as exc:
                if exc.code == ResponseCode.TOPIC_NOT_EXIST:
                    continue  # no retry or DLQ topic yet: nothing went there
                raise
        for m in (m for m in found if matches(m)):
            consumed = None
            if place in (topic, RETRY_PREFIX + group):
                done = await _committed(admin, m.store_host_text, group, m.topic, m.queue_id)
                consumed = done > m.queue_offset
            hops.append({"stage": stages.get(place, "waiting " + m.properties.get(REAL_TOPIC, "")),
                         "storeTimestamp": m.store_timestamp, "topic": m.topic,
                         "queueId": m.queue_id, "queueOffset": m.queue_offset,
                         "reconsumeTimes": m.reconsume_times,
                         "delayLevel": m.properties.get(DELAY, ""),
                         "consumedByGroup": consumed, "offsetMsgId": m.offset_msg_id})
    return sorted(hops, key=lambda h: (h["storeTimestamp"], h["reconsumeTimes"]))


@message.command("trace")
@click.argument("msg_id")
@click.option("-g", "--group", required=True, help="The consumer group whose retries to follow.")
@click.option("-t", "--topic", help="The topic it was sent to: needed with a client id "
              "(UNIQ_KEY), not with the broker's offset id.")
@pass_ctx
def message_trace(ctx: Ctx, msg_id: str, group: str, topic: str | None) -> None:
    """Follow one message through GROUP's retries and DLQ: every stored copy, when, where,
    how many times it was reconsumed, and whether the group consumed it.

    \b
    Examples:
      rmqctl message trace 7F0000014DAC478E98D07BF9B51D1388 -g billing -t Orders
    """
    async def work(ns):
        admin = Admin(ns)
        if topic is not None:
            found = await _by_key(admin, topic, msg_id, True, 1)
            if not found:
                raise ValueError(f"no message {msg_id} in topic {topic}")
            original = found[0]
        else:
            try:
                addr, phy = decode_offset_msg_id(msg_id)
            except ValueError:
                raise ValueError("give -t TOPIC with a client message id") from None
            resp = await admin.call(addr, RequestCode.VIEW_MESSAGE_BY_ID, {"offset": phy})
            original = parse_messages(resp.body)[0]
        return await trace(admin, original, group)
    emit_rows(ctx.run(work), ctx.output, ["stage", "storeTimestamp", "topic", "queueId",
                                          "queueOffset", "reconsumeTimes", "consumedByGroup"])

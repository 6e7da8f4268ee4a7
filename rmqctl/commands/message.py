"""`rmqctl message ...`: find messages by id, key or offset."""

from __future__ import annotations

import contextlib
import re
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
from rmqctl.render import BODY_FORMATS, message_row
from rmqctl.client.namesrv import check_addr
from rmqctl.context import Ctx, NotFound, pass_ctx
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


OFFSET_ID = "offset id"
UNIQUE_KEY = "unique key"


def id_kind(msg_id: str) -> str:
    """Which kind of message id this is. Both are 32 hex digits for IPv4: a broker's offset
    id holds its address (4 bytes), port (4) and commit log offset (8); a 4.x client's unique
    key (UNIQ_KEY) holds its IP (4), pid (2), an int (4), a time (4), a counter (2), so read
    as an offset id its port is out of range. 56 hex digits are an IPv6 offset id; 34 starting
    with 01 are a 5.x client's id (version 01: MAC, pid, time, sequence), a unique key too."""
    if re.fullmatch(r"01[0-9A-Fa-f]{32}", msg_id):
        return UNIQUE_KEY
    if not re.fullmatch(r"[0-9A-Fa-f]{32}|[0-9A-Fa-f]{56}", msg_id):
        raise ValueError(f"{msg_id!r} is not a message id (32 hex digits, 56 for an IPv6 "
                         "broker, or 34 from a 5.x client)")
    port = int(msg_id[8:16], 16)
    return OFFSET_ID if len(msg_id) == 56 or 0 < port < 65536 else UNIQUE_KEY


async def _at_offset(admin: Admin, addr: str, phy: int) -> MessageExt:
    """The message at commit log offset `phy` of the broker at `addr` (VIEW_MESSAGE_BY_ID)."""
    resp = await admin.remoting.invoke(addr, RemotingCommand.request(
        RequestCode.VIEW_MESSAGE_BY_ID, {"offset": phy}), admin.namesrv.timeout)
    found = parse_messages(resp.body) if resp.code == ResponseCode.SUCCESS else []
    if not found:
        raise NotFound(f"{addr} has no message at commit log offset {phy}")
    return found[0]


async def find_message(admin: Admin, msg_id: str, topic: str | None) -> tuple[str, MessageExt]:
    """A message by either kind of id, and the kind: an offset id is read where it points;
    a unique key is queried in TOPIC's index, or without a topic in every topic's but retry
    and dead-letter ones (QUERY_MESSAGE with the uniqueKey flag, as mqadmin queryMsgById)."""
    if id_kind(msg_id) == OFFSET_ID:
        return OFFSET_ID, await _at_offset(admin, *decode_offset_msg_id(msg_id))
    topics = [topic] if topic else sorted(
        t for t in await admin.namesrv.topic_list() if not t.startswith((RETRY_PREFIX, DLQ_PREFIX)))
    for name in topics:
        try:
            found = await _by_key(admin, name, msg_id, True, 32)
        except RemotingError as exc:
            if exc.code != ResponseCode.TOPIC_NOT_EXIST or topic:
                raise
            continue  # listed, but served by no broker now
        if found:
            return UNIQUE_KEY, found[0]
    raise NotFound(f"no message {msg_id} (a unique key) in "
                   + (f"topic {topic}" if topic else "any topic"))


def _say_kind(ctx: Ctx, msg_id: str, kind: str, msg: MessageExt) -> None:
    """Tables tell people which kind of id they gave (json output has it as idKind)."""
    if ctx.output == "table":
        click.echo(f"{msg_id}: {kind}, topic {msg.topic}, stored at {msg.store_host_text}",
                   err=True)


@message.command("get")
@click.argument("msg_id", required=False)
@click.option("-t", "--topic", help="Where to look for a unique key (UNIQ_KEY) [default: "
              "every topic]; not needed with an offset id.")
@click.option("--offset", type=int, help="A commit log offset instead of an id (with -b).")
@click.option("-b", "--broker", "broker_addr", help="The broker holding --offset.")
@click.option("--body", "body_format", type=click.Choice(BODY_FORMATS), default="auto",
              show_default=True)
@pass_ctx
def message_get(ctx: Ctx, msg_id: str | None, topic: str | None, offset: int | None,
                broker_addr: str | None, body_format: str) -> None:
    """Show one message by either kind of id, the broker's offset id or the client's unique
    key (it says which it found), or by --offset. Exit code 3 when there is no such message.

    \b
    Examples:
      rmqctl message get 7F00000100002A9F0000000000001234
      rmqctl message get 7F0000014DAC478E98D07BF9B51D1388 -t Orders
      rmqctl message get --offset 4096 -b 127.0.0.1:10911
    """
    if (msg_id is None) == (offset is None) or (offset is not None) != bool(broker_addr):
        raise click.UsageError("give MSG_ID, or --offset with -b")

    async def work(ns):
        admin = Admin(ns)
        if msg_id is not None:
            return await find_message(admin, msg_id, topic)
        return OFFSET_ID, await _at_offset(admin, check_addr(broker_addr), offset)
    kind, msg = ctx.run(work)
    if msg_id is not None:
        _say_kind(ctx, msg_id, kind, msg)
    emit_object({"idKind": kind} | message_row(msg, body_format), ctx.output)


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
                with contextlib.suppress(RemotingError):  # unknown: the column stays empty
                    done = await admin.committed(m.store_host_text, group, m.topic, m.queue_id)
                    consumed = done is not None and done > m.queue_offset
            hops.append({"stage": stages.get(place, "waiting " + m.properties.get(REAL_TOPIC, "")),
                         "storeTimestamp": m.store_timestamp, "topic": m.topic,
                         "queueId": m.queue_id, "queueOffset": m.queue_offset,
                         "reconsumeTimes": m.reconsume_times,
                         "delayLevel": m.properties.get(DELAY, ""),
                         "consumedByGroup": consumed, "offsetMsgId": m.offset_msg_id})
    return sorted(hops, key=lambda h: (h["storeTimestamp"], h["reconsumeTimes"]))


TRACE_TOPIC = "RMQ_SYS_TRACE_TOPIC"
_TRACE_SPLIT, _FIELD_SPLIT = "\x01", "\x02"  # TraceConstants.CONTENT_SPLITOR, FIELD_SPLITOR
# TraceDataEncoder's layouts: the fields each kind of trace record has, in order, up to
# what every client version writes (newer ones add fields at the end).
_TRACE_FIELDS = {
    "Pub": ["timestamp", "regionId", "group", "topic", "msgId", "tags", "keys", "storeHost",
            "bodyLength", "costTime", "msgType", "offsetMsgId", "success", "clientHost"],
    "SubBefore": ["timestamp", "regionId", "group", "requestId", "msgId", "retryTimes", "keys"],
    "SubAfter": ["requestId", "msgId", "costTime", "success", "keys", "contextCode",
                 "timestamp", "group"],
    "EndTransaction": ["timestamp", "regionId", "group", "topic", "msgId", "tags", "keys",
                       "storeHost", "msgType", "transactionId", "transactionState",
                       "fromTransactionCheck"],
}
_TRACE_MIN = {"Pub": 12, "SubBefore": 7, "SubAfter": 5, "EndTransaction": 12}


def decode_trace(data: str) -> list[dict]:
    """TraceDataEncoder.decoderFromTraceDataString: one trace message holds many records,
    each a type and its fields. Records of an unknown type or too short are skipped (the
    trace topic is anyone's to write); Pub's 13-field form has no offsetMsgId."""
    records = []
    for context in data.split(_FIELD_SPLIT):
        kind, *values = context.split(_TRACE_SPLIT)
        names = _TRACE_FIELDS.get(kind)
        if names is None or len(values) < _TRACE_MIN[kind]:
            continue
        if kind == "Pub" and len(values) == 12:
            values.insert(11, "")
        records.append({"type": kind, **{name: _typed(name, value)
                                         for name, value in zip(names, values)}})
    return records


_TRACE_NUMBERS = {"timestamp", "bodyLength", "costTime", "retryTimes"}
_TRACE_FLAGS = {"success", "fromTransactionCheck"}


def _typed(name: str, value: str) -> object:
    """A trace field as JSON shows it: times, sizes and counts as numbers, flags as
    booleans (the trace text is Java's String.valueOf of each); anything else, or a value
    that does not parse, as the text it is."""
    if name in _TRACE_NUMBERS and value.lstrip("-").isdigit():
        return int(value)
    if name in _TRACE_FLAGS and value in ("true", "false"):
        return value == "true"
    return value


async def trace_records(admin: Admin, trace_topic: str, msg_id: str) -> list[dict]:
    """What clients with tracing on recorded of a message (mqadmin queryMsgTraceById): the
    trace topic queried by the message id, a key of every trace message about it, and its
    records about that id, oldest first, with the host that sent each."""
    try:
        found = await _by_key(admin, trace_topic, msg_id, False, 64)
    except RemotingError as exc:
        if exc.code == ResponseCode.TOPIC_NOT_EXIST:
            return []  # no client traced anything to this cluster
        raise
    rows = []
    for m in found:
        for record in decode_trace(m.body_inflated().decode("utf-8", "replace")):
            if record["msgId"] == msg_id:
                record.setdefault("clientHost", m.born_host_text)
                rows.append(record)
    order = list(_TRACE_FIELDS)
    return sorted(rows, key=lambda r: (r["timestamp"] if isinstance(r.get("timestamp"), int)
                                       else 0, order.index(r["type"])))


@message.command("trace")
@click.argument("msg_id")
@click.option("-g", "--group", help="Without trace records: the consumer group whose "
              "retries to follow.")
@click.option("-t", "--topic", help="The topic it was sent to, where to look for a unique key "
              "(UNIQ_KEY) [default: every topic]; not needed with an offset id.")
@click.option("--trace-topic", default=TRACE_TOPIC, show_default=True,
              help="Where clients send trace records (the brokers' msgTraceTopicName).")
@pass_ctx
def message_trace(ctx: Ctx, msg_id: str, group: str | None, topic: str | None,
                  trace_topic: str) -> None:
    """The trace of one message: what clients with tracing on recorded of it (send, consume
    before and after, transaction end; `mqadmin queryMsgTraceById`) when the trace topic has
    records of it; otherwise, with -g, every stored copy through GROUP's retries and DLQ:
    when, where, how many times it was reconsumed, and whether the group consumed it. MSG_ID
    is either kind of id, as with `message get` (traces are kept by the client's id).

    \b
    Examples:
      rmqctl message trace 7F0000014DAC478E98D07BF9B51D1388
      rmqctl message trace 7F0000014DAC478E98D07BF9B51D1388 -g billing -t Orders
      rmqctl message trace 7F00000100002A9F0000000000001234 -g billing
    """
    async def work(ns):
        admin = Admin(ns)
        found = None
        if id_kind(msg_id) == OFFSET_ID:
            found = await find_message(admin, msg_id, topic)
        key = found[1].msg_id if found else msg_id
        records = await trace_records(admin, trace_topic, key)
        if records:
            return None, records
        if group is None:
            raise NotFound(f"no trace records of {key} in {trace_topic}; give -g GROUP to "
                           "follow its stored copies instead")
        kind, original = found or await find_message(admin, msg_id, topic)
        return (kind, original), await trace(admin, original, group)
    found, rows = ctx.run(work)
    if found is None:
        emit_rows(rows, ctx.output, ["type", "group", "clientHost", "timestamp", "costTime",
                                     "success", "topic", "tags", "keys"])
        return
    _say_kind(ctx, msg_id, *found)
    emit_rows(rows, ctx.output, ["stage", "storeTimestamp", "topic", "queueId",
                                 "queueOffset", "reconsumeTimes", "consumedByGroup"])

"""`rmqctl offset reset`: move a group's offsets, live or on a stopped node's store."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from rmqnode import validation
from rmqnode.broker.admin import reset_target
from rmqnode.broker.groups import SubscriptionGroupManager
from rmqnode.broker.offsets import ConsumerOffsetManager
from rmqnode.broker.topics import TopicConfigManager
from rmqnode.config import BrokerConfig
from rmqnode.errors import RemotingError
from rmqnode.net.codes import RequestCode, ResponseCode
from rmqnode.storage.store import MessageStore
from rmqctl.client.admin import Admin
from rmqctl.client.consumer import GroupConsumer
from rmqctl.client.namesrv import NameServerClient
from rmqctl.client.producer import TopicRoute, topic_route
from rmqctl.commands.messages import BROKER_OPTION, QUEUE_OPTION, now_ms, parsed, pick_queues
from rmqctl.context import EXIT_NOT_FOUND, Ctx, pass_ctx
from rmqctl.output import emit_rows
from rmqctl.positions import parse_time

# MQVersion.Version.V3_0_7_SNAPSHOT: older clients cannot take a reset while they run (a
# Java broker refuses to reset a group that has one).
V3_0_7_SNAPSHOT = 28

# What became of each live member, worst last (a member of several brokers gets the worst).
TOLD, MAY_NOT_APPLY, NOT_TOLD = "told", "may not apply it", "not told"
_WORST = [TOLD, MAY_NOT_APPLY, NOT_TOLD]


def _name(check):
    """A click callback checking a topic or group name as the broker will."""
    def callback(click_ctx: click.Context, param: click.Parameter, value: str) -> str:
        try:
            return check(value)
        except RemotingError as exc:
            raise click.BadParameter(exc.remark) from None
    return callback


@dataclass(frozen=True)
class Target:
    """Where a reset puts each queue: `offset` (clamped to what the queue holds), or the
    first message stored at or after `timestamp` (0: the first one, -1: after the last)."""
    timestamp: int
    offset: int | None

    def spec(self) -> str:
        """The same place as GroupConsumer.start_offset reads it."""
        if self.offset is not None:
            return str(self.offset)
        return "last" if self.timestamp < 0 else f"@{self.timestamp}"

    def row(self, topic: str, broker_name: str | None, queue_id: int, offset: int,
            via: str | None = None) -> dict[str, Any]:
        """One queue's result; with --to-offset, what was asked and which end cut it."""
        row = {"topic": topic} | ({"brokerName": broker_name} if broker_name else {}) | \
            {"queueId": queue_id, "offset": offset}
        if self.offset is not None:
            row |= {"requested": self.offset, "clamped": None if offset == self.offset else
                    "to max" if offset < self.offset else "to min"}
        return row | ({"via": via} if via else {})


@click.group()
def offset() -> None:
    """Consumer offsets."""


@offset.command("reset")
@click.option("-g", "--group", required=True, callback=_name(validation.group))
@click.option("-t", "--topic", required=True, callback=_name(validation.topic))
@click.option("--to-timestamp", type=click.IntRange(0, validation.INT64[1]), metavar="MS",
              help="First message stored at or after.")
@click.option("--to-offset", type=click.IntRange(0, validation.INT64[1]),
              help="This offset, on every queue (or --queue), clamped to what each holds.")
@click.option("--earliest", is_flag=True, help="The first message still stored.")
@click.option("--latest", is_flag=True, help="After the last message.")
@click.option("--queue", type=click.IntRange(0, validation.INT32[1]), help="Only this queue.")
@click.option("--offline", "store", type=click.Path(file_okay=False, path_type=Path),
              help="Edit consumerOffset.json of a STOPPED node's store instead.")
@pass_ctx
def offset_reset(ctx: Ctx, group: str, topic: str, to_timestamp: int | None,
                 to_offset: int | None, earliest: bool, latest: bool, queue: int | None,
                 store: Path | None) -> None:
    """Move GROUP's offsets on TOPIC. Live: every broker of the topic resets them and tells
    the group's live members, which are listed on stderr (told, or may not apply it: restart
    those); a broker that answers CONSUMER_NOT_ONLINE (Java's, when nobody is online) gets
    each queue's offset set with UPDATE_CONSUMER_OFFSET instead, as mqadmin does. --offline
    edits a stopped node's store, with the same clamping. With --to-offset, each row says
    what was asked and whether the queue's first or last offset cut it.

    \b
    Examples:
      rmqctl offset reset -g orders-service -t Orders --to-timestamp 1700000000000
      rmqctl offset reset -g audit -t Orders --earliest
      rmqctl offset reset -g audit -t Orders --to-offset 100 --queue 2
      rmqctl offset reset -g audit -t Orders --latest --offline ~/.rmqnode/store
    """
    chosen = [x for x in (to_timestamp is not None, to_offset is not None, earliest, latest) if x]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --to-timestamp, --to-offset, --earliest, "
                               "--latest")
    target = Target(-1 if latest else to_timestamp or 0, to_offset)
    if store is not None:
        emit_rows(_reset_offline(ctx, store, group, topic, target, queue), ctx.output)
        return
    emit_rows(ctx.run(lambda ns: _reset_live(ctx, ns, group, topic, target, queue)),
              ctx.output)
    ctx.finish()


async def _reset_live(ctx: Ctx, ns: NameServerClient, group: str, topic: str, target: Target,
                      queue: int | None) -> list[dict]:
    """Every broker of the topic in turn; one that fails is reported and the others still
    reset (the command then exits with its code)."""
    admin = Admin(ns)
    route = await topic_route(ns, topic)
    fields = {"topic": topic, "group": group, "timestamp": target.timestamp, "isForce": True}
    if target.offset is not None:
        fields["offset"] = target.offset
    if queue is not None:
        fields["queueId"] = queue
    members: dict[str, tuple[str, dict]] = {}

    async def reset(broker_name: str, addr: str) -> list[dict]:
        live = await admin.members(addr, group)
        try:
            data = await admin.call_json(addr, RequestCode.INVOKE_BROKER_TO_RESET_OFFSET, fields)
        except RemotingError as exc:
            if exc.code != ResponseCode.CONSUMER_NOT_ONLINE:
                raise
            click.echo(f"rmqctl: {broker_name}: no member of {group} online "
                       "(CONSUMER_NOT_ONLINE); setting each queue's offset with "
                       "UPDATE_CONSUMER_OFFSET instead, as mqadmin does", err=True)
            return await _set_each_queue(ns, admin, route, broker_name, group, topic, target,
                                         queue)
        for member in live:
            status = _status(member, data.get("notified"))
            old = members.get(member["clientId"], (TOLD, member))[0]
            members[member["clientId"]] = (max(old, status, key=_WORST.index), member)
        return [target.row(topic, broker_name, key.as_dict()["queueId"], value, "reset")
                for key, value in data.get("offsetTable", {}).items()]

    rows = [row for rows in await ctx.each_broker(route.addrs, reset) for row in rows]
    _report(group, members)
    return sorted(rows, key=lambda r: (r["brokerName"], r["queueId"]))


def _status(member: dict, notified: list[str] | None) -> str:
    """rmqnode lists the members it told; a Java broker tells every member, and sends a
    C++ client the map form of the offsets, which C++ clients do not read."""
    if notified is not None and member["clientId"] not in notified:
        return NOT_TOLD
    if member.get("version", 0) < V3_0_7_SNAPSHOT or \
            (notified is None and member.get("language") == "CPP"):
        return MAY_NOT_APPLY
    return TOLD


def _report(group: str, members: dict[str, tuple[str, dict]]) -> None:
    """One line on stderr per outcome, naming the members."""
    if not members:
        click.echo(f"rmqctl: no live member of {group}: its consumers start from the new "
                   "offsets", err=True)
    why = {TOLD: "told", MAY_NOT_APPLY: "may not apply it (restart them to take the new "
           "offsets)", NOT_TOLD: "not told (their connection closed; they commit their old "
           "position unless restarted)"}
    for status in _WORST:
        named = [f"{cid} ({m.get('language')}, version {m.get('version')})"
                 for cid, (s, m) in sorted(members.items()) if s == status]
        if named:
            click.echo(f"rmqctl: {why[status]}: {', '.join(named)}", err=True)


async def _set_each_queue(ns: NameServerClient, admin: Admin, route: TopicRoute,
                          broker_name: str, group: str, topic: str, target: Target,
                          queue: int | None) -> list[dict]:
    """mqadmin's fallback (resetOffsetByTimestampOld): read where each queue goes from the
    broker (GET_MIN_OFFSET/GET_MAX_OFFSET, SEARCH_OFFSET_BY_TIMESTAMP) and set it."""
    reader = GroupConsumer(ns.remoting, ns, group, topic, timeout=ns.timeout)
    reader.route = route
    rows = []
    for mq in route.read_queues:
        if mq.broker_name != broker_name or queue not in (None, mq.queue_id):
            continue
        offset = await reader.start_offset(mq, target.spec())
        await admin.call(route.addrs[broker_name], RequestCode.UPDATE_CONSUMER_OFFSET, {
            "consumerGroup": group, "topic": mq.topic, "queueId": mq.queue_id,
            "commitOffset": offset})
        rows.append(target.row(topic, broker_name, mq.queue_id, offset,
                               "UPDATE_CONSUMER_OFFSET"))
    return rows


def _reset_offline(ctx: Ctx, store: Path, group: str, topic: str, target: Target,
                   queue: int | None) -> list[dict]:
    """The live reset's checks and clamping, on a stopped node's files: the group and the
    topic must be known to the store, offsets come from its consume queues (read-only)."""
    if not (store / "commitlog").is_dir() and not (store / "config").is_dir():
        raise click.UsageError(f"{store} is not a store: it has neither commitlog/ nor config/")
    _check_stopped(store)
    config = _store_config(store)
    topics, groups, offsets = (TopicConfigManager(config), SubscriptionGroupManager(config),
                               ConsumerOffsetManager(config))
    for manager in (topics, groups, offsets):
        manager.load()
    if groups.find(group, auto_create=False) is None and not offsets.topics_of_group(group):
        ctx.fail(f"{store} knows no group {group}", EXIT_NOT_FOUND)
    topic_config = topics.table.get(topic)
    if topic_config is None:
        ctx.fail(f"{store} has no topic {topic}", EXIT_NOT_FOUND)
    queues = [q for q in range(topic_config.readQueueNums) if queue in (None, q)]
    if not queues:
        ctx.fail(f"{topic} has no queue {queue} in {store} (it has "
                 f"{topic_config.readQueueNums})", EXIT_NOT_FOUND)
    reader = MessageStore(config, readonly=True)
    reader.open()
    try:
        moved = {q: reset_target(reader, topic, q, target.timestamp, target.offset)
                 for q in queues}
    finally:
        reader.close_readonly()
    for q, o in moved.items():
        offsets.commit(group, topic, q, o)
    offsets.persist()  # atomically, keeping the previous file as .bak
    return [target.row(topic, None, q, o) for q, o in moved.items()]


def _check_stopped(store: Path) -> None:
    lock = store / "lock"
    if not lock.exists():
        return
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise click.ClickException(f"{store} is in use by a running node: stop it first, or "
                                   "reset live") from None
    finally:
        os.close(fd)


def _store_config(store: Path) -> BrokerConfig:
    """The store's own file sizes, which its node may have set to anything: those of the
    first CommitLog file and of the first consume queue file found."""
    sizes = {}
    for key, pattern in (("mappedFileSizeCommitLog", "commitlog/*"),
                         ("mappedFileSizeConsumeQueue", "consumequeue/*/*/*")):
        found = next((p for p in sorted(store.glob(pattern))
                      if p.name.isdigit() and p.stat().st_size), None)
        if found is not None:
            sizes[key] = found.stat().st_size
    return BrokerConfig(storePathRootDir=str(store), **sizes)


@offset.command("at")
@click.argument("topic", callback=_name(validation.topic))
@click.option("--time", "timestamp", required=True, metavar="TIME",
              callback=parsed(lambda v: parse_time(v, now_ms())),
              help="1764410400000 (ms), 1764410400 (s), 2026-11-29 (UTC), "
                   "2026-11-29T10:00:00Z, 2026-11-29T10:00:00+08:00, -1h, -1m30s (before "
                   "now); @ optional.")
@QUEUE_OPTION
@BROKER_OPTION
@pass_ctx
def offset_at(ctx: Ctx, topic: str, timestamp: int, queue_ids: tuple[int, ...] | None,
              broker_name: str | None) -> None:
    """Each queue's offset for a time (kcat -Q): the first message stored at or after
    it, found by the broker (SEARCH_OFFSET_BY_TIMESTAMP, as Java's searchOffset); maxOffset
    when none is. What `consume --from @TIME` starts at and `--to @TIME` stops before.

    \b
    Examples:
      rmqctl offset at Orders --time 2026-11-29T09:00:00Z
      rmqctl offset at Orders --time -1h --queue 0,1
      rmqctl -o json offset at Orders --time 1764410400000
    """
    async def work(ns: NameServerClient) -> list[dict]:
        reader = GroupConsumer(ns.remoting, ns, "rmqctl-offset-at", topic, timeout=ctx.timeout)
        reader.route = await topic_route(ns, topic)
        rows = []
        for mq in pick_queues(topic, reader.route, queue_ids, broker_name) or \
                reader.route.read_queues:
            low, high = await reader.bounds(mq)
            rows.append({"brokerName": mq.broker_name, "queueId": mq.queue_id,
                         "offset": await reader.offset_at(mq, timestamp),
                         "minOffset": low, "maxOffset": high})
        return rows

    emit_rows(ctx.run(work), ctx.output)

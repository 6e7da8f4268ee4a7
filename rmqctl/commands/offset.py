"""`rmqctl offset`: see, save and move a group's offsets, live or on a stopped node's store.
A reset shows what it will do first (rmqctl.offset_plan); saved offsets are JSON files
(rmqctl.offset_file)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click

from rmqnode import validation
from rmqnode.atomicfile import write_atomic
from rmqnode.broker.admin import reset_target
from rmqnode.broker.runtime import IMPLEMENTATION_KEY
from rmqnode.broker.groups import SubscriptionGroupManager
from rmqnode.broker.offsets import ConsumerOffsetManager
from rmqnode.broker.topics import TopicConfigManager
from rmqnode.config import BrokerConfig
from rmqnode.errors import RemotingError
from rmqnode.net.codes import RequestCode, ResponseCode
from rmqnode.storage.reader import store_config
from rmqnode.storage.store import MessageStore
from rmqctl import offset_file
from rmqctl.client.admin import Admin
from rmqctl.client.consumer import GroupConsumer
from rmqctl.client.namesrv import NameServerClient
from rmqctl.client.producer import TopicRoute, topic_route
from rmqctl.commands.messages import BROKER_OPTION, QUEUE_OPTION, now_ms, parsed, pick_queues
from rmqctl.context import EXIT_NOT_FOUND, Ctx, NotFound, pass_ctx
from rmqctl.offset_file import QueueOffsets
from rmqctl.offset_plan import QueuePlan, Target, go_ahead
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
    def callback(click_ctx: click.Context, param: click.Parameter, value: str | None
                 ) -> str | None:
        try:
            return None if value is None else check(value)
        except RemotingError as exc:
            raise click.BadParameter(exc.remark) from None
    return callback


def _label(click_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A broker name, with the characters the name server takes."""
    if value is not None and not validation.LABEL_PATTERN.fullmatch(value):
        raise click.BadParameter(f"{validation.quote(value)} is not a broker name")
    return value


@click.group()
def offset() -> None:
    """Consumer offsets: reset them (with a preview), export and restore them."""


@offset.command("reset")
@click.option("-g", "--group", callback=_name(validation.group),
              help="The group to move (with --to-file: default the file's group).")
@click.option("-t", "--topic", callback=_name(validation.topic),
              help="Its topic (with --to-file: default every topic of the file).")
@click.option("--to-timestamp", type=click.IntRange(0, validation.INT64[1]), metavar="MS",
              help="First message stored at or after.")
@click.option("--to-offset", type=click.IntRange(0, validation.INT64[1]),
              help="This offset, on every queue (or --queue), clamped to what each holds.")
@click.option("--earliest", is_flag=True, help="The first message still stored.")
@click.option("--latest", is_flag=True, help="After the last message.")
@click.option("--to-group", metavar="GROUP", callback=_name(validation.group),
              help="Where GROUP committed, queue by queue (as mqadmin cloneGroupOffset).")
@click.option("--to-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The offsets saved in this file by `offset export`.")
@click.option("--queue", type=click.IntRange(0, validation.INT32[1]), help="Only this queue.")
@click.option("--offline", "store", type=click.Path(file_okay=False, path_type=Path),
              help="Edit consumerOffset.json of a STOPPED node's store instead.")
@click.option("--broker-name", callback=_label,
              help="With --offline --to-file: which broker's offsets of the file are this "
                   "store's [default: the file's only broker].")
@click.option("--dry-run", is_flag=True, help="Print the preview and change nothing.")
@click.option("-y", "--yes", is_flag=True,
              help="Reset without asking (needed where stdin or stdout is no terminal).")
@pass_ctx
def offset_reset(ctx: Ctx, group: str | None, topic: str | None, to_timestamp: int | None,
                 to_offset: int | None, earliest: bool, latest: bool, to_group: str | None,
                 to_file: Path | None, queue: int | None, store: Path | None,
                 broker_name: str | None, dry_run: bool, yes: bool) -> None:
    """Move GROUP's offsets on TOPIC, after a preview: per queue the committed offset
    `before`, the offset `after`, the queue's `maxOffset` and the lag (messages left to read)
    before and after, and its change. --dry-run prints the preview alone. Otherwise a
    terminal (stdin and stdout) asks "Reset N queues of group G on topic T? [y/N]"; --yes
    skips the question, and is needed where there is no terminal: without it nothing
    changes and the exit code is 2 (as a no). The output is then the same rows as the reset
    left them.

    Live: every broker of the topic resets them and tells the group's live members, which
    are listed on stderr (told, or may not apply it: restart those); a broker that answers
    CONSUMER_NOT_ONLINE (Java's, when nobody is online) gets each queue's offset set with
    UPDATE_CONSUMER_OFFSET instead, as mqadmin does. --offline edits a stopped node's store,
    with the same clamping. With --to-offset, --to-group and --to-file, each row says what
    was asked and whether the queue's first or last offset cut it; queues that the other
    group never committed, or that the file does not hold, stay as they are (`unchanged`).

    \b
    Examples:
      rmqctl offset reset -g orders-service -t Orders --to-timestamp 1700000000000 --dry-run
      rmqctl offset reset -g audit -t Orders --earliest
      rmqctl offset reset -g audit -t Orders --to-offset 100 --queue 2 --yes
      rmqctl offset reset -g audit-replay -t Orders --to-group audit
      rmqctl offset export -g audit -f audit.json; rmqctl offset reset --to-file audit.json
      rmqctl offset reset -g audit -t Orders --latest --offline ~/.rmqnode/store --yes
    """
    chosen = [x for x in (to_timestamp is not None, to_offset is not None, earliest, latest,
                          to_group, to_file) if x]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --to-timestamp, --to-offset, --earliest, "
                               "--latest, --to-group, --to-file")
    if broker_name is not None and (store is None or to_file is None):
        raise click.UsageError("--broker-name goes with --offline and --to-file")
    target = Target(-1 if latest else to_timestamp or 0, to_offset)
    if to_file is not None:
        group, topics, target = _from_file(to_file, group, topic)
    elif group is None or topic is None:
        raise click.UsageError("give -g/--group and -t/--topic (only --to-file names them)")
    else:
        topics = [topic]
    if to_group == group:
        raise click.UsageError(f"--to-group {to_group} is the group being reset")

    if store is not None:
        with _stopped(store):
            offsets, plans, target = _plan_offline(ctx, store, group, topics, target, queue,
                                                   to_group, broker_name)
            _check_some(plans, target, topics)
            if go_ahead(ctx, plans, target, group, dry_run, yes):
                for plan in plans:
                    if plan.after is not None:
                        offsets.commit(group, plan.topic, plan.queue_id, plan.after)
                offsets.persist()  # atomically, keeping the previous file as .bak
                emit_rows([p.row(target) for p in plans], ctx.output)
        return

    routes, plans, target = ctx.run(lambda ns: _plan_live(ctx, ns, group, topics, target,
                                                          queue, to_group))
    if not plans and not ctx.broker_failures:
        raise NotFound(f"{', '.join(topics)} has no readable queue"
                       + (f" {queue}" if queue is not None else ""))
    if plans:
        _check_some(plans, target, topics)
        if go_ahead(ctx, plans, target, group, dry_run, yes):
            emit_rows(ctx.run(lambda ns: _apply_live(ctx, ns, group, routes, plans, target,
                                                     queue)), ctx.output)
    ctx.finish()


def _from_file(path: Path, group: str | None, topic: str | None
               ) -> tuple[str, list[str], Target]:
    """The group (the file's unless -g), topics (the file's unless -t) and offsets of a
    saved file."""
    saved = offset_file.load(path)
    if topic is not None and topic not in saved.topics:
        raise NotFound(f"{path} has no offsets of topic {topic} (it has: "
                       f"{', '.join(sorted(saved.topics)) or 'none'})")
    topics = [topic] if topic else sorted(saved.topics)
    if not topics:
        raise NotFound(f"{path} holds no topic")
    return group or saved.group, topics, Target(saved={t: saved.topics[t] for t in topics},
                                                source=str(path))


def _check_some(plans: list[QueuePlan], target: Target, topics: list[str]) -> None:
    """Saved offsets that fit no queue are a wrong name, not a reset of nothing."""
    if target.saved is not None and all(p.after is None for p in plans):
        raise NotFound(f"{target.source} has no offset of any queue of {', '.join(topics)} "
                       "to reset: nothing changed")


async def _plan_live(ctx: Ctx, ns: NameServerClient, group: str, topics: list[str],
                     target: Target, queue: int | None, to_group: str | None
                     ) -> tuple[dict[str, TopicRoute], list[QueuePlan], Target]:
    """Each queue's preview, read from its broker; with --to-group, that group's committed
    offsets are read there too and become the target. A broker that fails is reported and
    left out (the command then exits with its code)."""
    admin = Admin(ns)
    routes = {t: await topic_route(ns, t) for t in topics}
    saved: dict[str, QueueOffsets] = {}
    plans = []
    for topic, route in routes.items():
        async def plan(broker_name: str, addr: str) -> list[QueuePlan]:
            out = []
            for mq in route.read_queues:
                if mq.broker_name != broker_name or queue not in (None, mq.queue_id):
                    continue
                requested = target.requested(topic, broker_name, mq.queue_id)
                if to_group is not None:
                    requested = await admin.committed(addr, to_group, topic, mq.queue_id)
                    if requested is not None:
                        saved.setdefault(topic, {})[broker_name, mq.queue_id] = requested
                keep = requested is None and (to_group is not None or target.saved is not None)
                after, high = await _where(admin, addr, topic, mq.queue_id, target.timestamp,
                                           requested, keep)
                out.append(QueuePlan(topic, broker_name, mq.queue_id, await admin.committed(
                    addr, group, topic, mq.queue_id), after, high, requested))
            return out
        plans += [p for found in await ctx.each_broker(route.addrs, plan) for p in found]
    if to_group is not None:
        target = Target(saved=saved, source=f"group {to_group}")
    return routes, plans, target


@dataclass(frozen=True)
class _Bounds:
    """One queue's offsets as its broker reports them, read as reset_target reads a store's."""
    low: int
    high: int
    by_time: int

    def min_offset(self, topic: str, queue_id: int) -> int:
        return self.low

    def max_offset(self, topic: str, queue_id: int) -> int:
        return self.high

    def offset_by_time(self, topic: str, queue_id: int, timestamp: int) -> int:
        return self.by_time


async def _where(admin: Admin, addr: str, topic: str, queue_id: int, timestamp: int,
                 offset: int | None, keep: bool = False) -> tuple[int | None, int]:
    """Where a reset puts a queue (None with `keep`) and its max offset: the broker's own
    rule (reset_target) over what the broker says of the queue."""
    high = await admin.queue_offset(addr, RequestCode.GET_MAX_OFFSET, topic, queue_id)
    if keep:
        return None, high
    low = await admin.queue_offset(addr, RequestCode.GET_MIN_OFFSET, topic, queue_id)
    by_time = high if offset is not None or timestamp < 0 else await admin.queue_offset(
        addr, RequestCode.SEARCH_OFFSET_BY_TIMESTAMP, topic, queue_id, timestamp=timestamp)
    return reset_target(_Bounds(low, high, by_time), topic, queue_id, timestamp, offset), high


async def _apply_live(ctx: Ctx, ns: NameServerClient, group: str,
                      routes: dict[str, TopicRoute], plans: list[QueuePlan], target: Target,
                      queue: int | None) -> list[dict]:
    """Every broker of each topic in turn: one reset of all (or --queue's) queues, or one
    per queue for saved offsets; a broker that fails is reported and the others still
    reset (the command then exits with its code)."""
    admin = Admin(ns)
    members: dict[str, tuple[str, dict]] = {}
    rows = []
    for topic, route in routes.items():
        async def reset(broker_name: str, addr: str) -> list[dict]:
            mine = [p for p in plans if p.topic == topic and p.broker_name == broker_name]
            todo = [p for p in mine if p.after is not None]
            if not todo:
                return [p.row(target) for p in mine]
            live = await admin.members(addr, group)
            if live and (target.offset is not None or target.saved is not None
                         or queue is not None):
                await _check_queue_resets(admin, addr)
            fields = target.fields(topic, group)
            requests = [fields | {"queueId": p.queue_id, "offset": p.requested} for p in todo] \
                if target.saved is not None else \
                [fields | ({"queueId": queue} if queue is not None else {})]
            offsets: dict[int, int] = {}
            via = "reset"
            try:
                for request in requests:
                    data = await admin.call_json(
                        addr, RequestCode.INVOKE_BROKER_TO_RESET_OFFSET, request)
                    _tell(members, live, data.get("notified"))
                    offsets |= {key.as_dict()["queueId"]: value
                                for key, value in data.get("offsetTable", {}).items()}
            except RemotingError as exc:
                if exc.code != ResponseCode.CONSUMER_NOT_ONLINE:
                    raise
                click.echo(f"rmqctl: {broker_name}: no member of {group} online "
                           "(CONSUMER_NOT_ONLINE); setting each queue's offset with "
                           "UPDATE_CONSUMER_OFFSET instead, as mqadmin does", err=True)
                offsets, via = await _set_each_queue(admin, addr, group, todo, target), \
                    "UPDATE_CONSUMER_OFFSET"
            return [p.row(target) if p.after is None else p.done(offsets[p.queue_id]).row(
                target, via) for p in mine if p.after is None or p.queue_id in offsets]
        rows += [row for found in await ctx.each_broker(route.addrs, reset) for row in found]
    _report(group, members)
    return rows


async def _check_queue_resets(admin: Admin, addr: str) -> None:
    """Refuse a per-queue reset (an exact offset, --queue, saved offsets) of a group with
    members online on a broker that would reset every queue by time instead: Java brokers
    before 5.x ignore the request's queueId and offset fields (rmqnode and 5.x read them)."""
    info = (await admin.call_json(addr, RequestCode.GET_BROKER_RUNTIME_INFO)).get("table", {})
    version = str(info.get("brokerVersionDesc", "?"))
    if IMPLEMENTATION_KEY in info or not version.startswith(("V3", "V4")):
        return
    raise click.ClickException(
        f"{addr} runs RocketMQ {version}, which resets every queue by time, ignoring the "
        "queue and offset asked for, while the group has members online: stop them first "
        "(each queue is then set on its own), or reset by time (--to-timestamp, --earliest, "
        "--latest, without --queue)")


def _tell(members: dict[str, tuple[str, dict]], live: list[dict],
          notified: list[str] | None) -> None:
    """Each live member's worst outcome so far."""
    for member in live:
        status = _status(member, notified)
        old = members.get(member["clientId"], (TOLD, member))[0]
        members[member["clientId"]] = (max(old, status, key=_WORST.index), member)


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


async def _set_each_queue(admin: Admin, addr: str, group: str, todo: list[QueuePlan],
                          target: Target) -> dict[int, int]:
    """mqadmin's fallback (resetOffsetByTimestampOld): read where each queue goes from the
    broker (GET_MIN_OFFSET/GET_MAX_OFFSET, SEARCH_OFFSET_BY_TIMESTAMP) and set it."""
    offsets = {}
    for plan in todo:
        offset, _ = await _where(admin, addr, plan.topic, plan.queue_id, target.timestamp,
                                 plan.requested)
        await admin.call(addr, RequestCode.UPDATE_CONSUMER_OFFSET, {
            "consumerGroup": group, "topic": plan.topic, "queueId": plan.queue_id,
            "commitOffset": offset})
        offsets[plan.queue_id] = offset
    return offsets


def _open_store(ctx: Ctx, store: Path, group: str
                ) -> tuple[BrokerConfig, TopicConfigManager, ConsumerOffsetManager]:
    """A stopped node's config files, which must know `group`."""
    if not (store / "commitlog").is_dir() and not (store / "config").is_dir():
        raise click.UsageError(f"{store} is not a store: it has neither commitlog/ nor config/")
    config = store_config(store)
    topics, groups, offsets = (TopicConfigManager(config), SubscriptionGroupManager(config),
                               ConsumerOffsetManager(config))
    for manager in (topics, groups, offsets):
        manager.load()
    if groups.find(group, auto_create=False) is None and not offsets.topics_of_group(group):
        ctx.fail(f"{store} knows no group {group}", EXIT_NOT_FOUND)
    return config, topics, offsets


def _plan_offline(ctx: Ctx, store: Path, group: str, topics: list[str], target: Target,
                  queue: int | None, to_group: str | None, broker_name: str | None
                  ) -> tuple[ConsumerOffsetManager, list[QueuePlan], Target]:
    """The live reset's checks, preview and clamping, on a stopped node's files: the group
    and the topics must be known to the store, offsets come from its consume queues
    (read-only). The store does not know its broker's name: a file's offsets are those of
    its only broker, or of --broker-name."""
    config, topic_configs, offsets = _open_store(ctx, store, group)
    queues = {}
    for topic in topics:
        topic_config = topic_configs.table.get(topic)
        if topic_config is None:
            ctx.fail(f"{store} has no topic {topic}", EXIT_NOT_FOUND)
        queues[topic] = [q for q in range(topic_config.readQueueNums) if queue in (None, q)]
        if not queues[topic]:
            ctx.fail(f"{topic} has no queue {queue} in {store} (it has "
                     f"{topic_config.readQueueNums})", EXIT_NOT_FOUND)
    if to_group is not None:
        broker_name = config.brokerName
        target = Target(saved={t: {(broker_name, q): o for q, o in offsets.queues(
            to_group, t).items()} for t in topics}, source=f"group {to_group}")
    elif target.saved is not None and broker_name is None:
        brokers = sorted({b for saved in target.saved.values() for b, _ in saved})
        if len(brokers) > 1:
            raise ValueError(f"{target.source} has offsets of brokers {', '.join(brokers)}: "
                             f"give --broker-name, the one whose store {store} is")
        broker_name = brokers[0] if brokers else config.brokerName
    reader = MessageStore(config, readonly=True)
    reader.open()
    plans = []
    try:
        for topic, queue_ids in queues.items():
            for q in queue_ids:
                requested = target.requested(topic, broker_name or config.brokerName, q)
                after = None if target.saved is not None and requested is None else \
                    reset_target(reader, topic, q, target.timestamp, requested)
                before = offsets.query(group, topic, q)
                plans.append(QueuePlan(topic, None, q, None if before < 0 else before, after,
                                       reader.max_offset(topic, q), requested))
    finally:
        reader.close_readonly()
    return offsets, plans, target


@offset.command("export")
@click.option("-g", "--group", required=True, callback=_name(validation.group))
@click.option("-t", "--topic", callback=_name(validation.topic),
              help="Only this topic [default: every topic the group committed offsets on].")
@click.option("-f", "--file", "path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the offsets here (replaced whole) [default: stdout].")
@click.option("--offline", "store", type=click.Path(file_okay=False, path_type=Path),
              help="Read consumerOffset.json of a node's store instead.")
@click.option("--broker-name", default=BrokerConfig.brokerName, show_default=True,
              callback=_label, help="With --offline: the name written for the store's broker.")
@pass_ctx
def offset_export(ctx: Ctx, group: str, topic: str | None, path: Path | None,
                  store: Path | None, broker_name: str) -> None:
    """Save GROUP's committed offsets as JSON, to restore them later with `offset reset
    --to-file` (or copy them to another group with -g): {"group": G, "topics": {T:
    [{"brokerName": B, "queueId": Q, "offset": O}, ...]}}. Only queues the group committed
    are saved. Exit code 3 when it committed none; nothing is written when a broker fails.

    \b
    Examples:
      rmqctl offset export -g audit > audit.json
      rmqctl offset export -g audit -t Orders -f audit-orders.json
      rmqctl offset reset --to-file audit.json --dry-run
      rmqctl offset export -g audit --offline ~/.rmqnode/store --broker-name broker-a
    """
    if store is not None:
        _, _, offsets = _open_store(ctx, store, group)
        topics = {t: {(broker_name, q): o for q, o in offsets.queues(group, t).items()}
                  for t in ([topic] if topic else offsets.topics_of_group(group))}
    else:
        topics = ctx.run(lambda ns: _export_live(ctx, ns, group, topic))
        ctx.finish()
    topics = {t: queues for t, queues in topics.items() if queues}
    if not topics:
        raise NotFound(f"group {group} has no committed offsets"
                       + (f" on topic {topic}" if topic else ""))
    text = offset_file.dumps(group, topics)
    if path is None:
        click.echo(text, nl=False)
        return
    write_atomic(path, text.encode(), keep_bak=False)
    click.echo(f"rmqctl: saved {sum(map(len, topics.values()))} queues of {group} on "
               f"{', '.join(sorted(topics))} to {path}", err=True)


async def _export_live(ctx: Ctx, ns: NameServerClient, group: str, topic: str | None
                       ) -> dict[str, QueueOffsets]:
    """The queues GET_CONSUME_STATS lists for the group (on every master, or the topic's),
    each with its exact committed offset (which the stats floor at 0)."""
    admin = Admin(ns)
    masters = await admin.topic_masters(topic) if topic else await admin.masters()
    fields = {"consumerGroup": group} | ({"topic": topic} if topic else {})

    async def read(broker_name: str, addr: str) -> list[tuple[str, str, int, int]]:
        found = []
        for _, mq, _ in await admin.queue_tables({broker_name: addr},
                                                 RequestCode.GET_CONSUME_STATS, fields):
            committed = await admin.committed(addr, group, mq["topic"], mq["queueId"])
            if committed is not None:
                found.append((mq["topic"], broker_name, mq["queueId"], committed))
        return found
    topics: dict[str, QueueOffsets] = {}
    for found in await ctx.each_broker(masters, read):
        for t, broker_name, queue_id, committed in found:
            topics.setdefault(t, {})[broker_name, queue_id] = committed
    return topics


@contextmanager
def _stopped(store: Path) -> Iterator[None]:
    """Holds the store's lock from the preview to the write, so that no node starts on
    the store in between (the node takes the same lock)."""
    lock = store / "lock"
    if not lock.exists():
        yield
        return
    fd = os.open(lock, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise click.ClickException(f"{store} is in use by a running node: stop it first, "
                                       "or reset live") from None
        yield
    finally:
        os.close(fd)


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

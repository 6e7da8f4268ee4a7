"""`rmqctl topic ...`: topics as the name servers route them."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import click

from rmqnode.broker.stats import GROUP_GET_NUMS, TOPIC_PUT_NUMS
from rmqnode.broker.topics import MESSAGE_TYPE, MESSAGE_TYPES
from rmqnode.errors import RemotingError
from rmqnode.net import fastjson
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import PERM_READ, PERM_WRITE, RequestCode, perm_text
from rmqctl.client.admin import Admin
from rmqctl.client.namesrv import check_addr
from rmqctl.context import Ctx, NotFound, pass_ctx
from rmqctl.output import emit_object, emit_rows


@click.group()
def topic() -> None:
    """Topics: list, create, update, delete, route, status, stats."""


@topic.command("list")
@click.option("-c", "--cluster", help="Only topics served by this cluster.")
@pass_ctx
def topic_list(ctx: Ctx, cluster: str | None) -> None:
    """Every topic the name servers know.

    \b
    Examples:
      rmqctl topic list
      rmqctl --output raw topic list | grep -v '^%RETRY%'
    """
    async def work(ns):
        if cluster:
            resp = await ns.invoke_ok(RequestCode.GET_TOPICS_BY_CLUSTER, {"cluster": cluster})
            names = fastjson.loads(resp.body).get("topicList", [])
        else:
            names = await ns.topic_list()
        admin = Admin(ns)
        types = await _message_types(ctx, admin, await admin.masters(cluster))
        return [{"topic": t, "type": "/".join(sorted({b[t] for b in types.values() if t in b}))}
                for t in sorted(names)]

    emit_rows(ctx.run(work), ctx.output, ["topic", "type"])
    ctx.finish()


async def _message_types(ctx: Ctx, admin: Admin, targets: dict[str, str]
                         ) -> dict[str, dict[str, str]]:
    """Per broker, each topic's 5.x message type (attribute message.type; NORMAL when unset),
    from its configs (GET_ALL_TOPIC_CONFIG): routes do not carry attributes. A broker that
    fails is reported and left out."""
    async def one(broker_name: str, addr: str) -> tuple[str, dict[str, str]]:
        data = await admin.call_json(addr, RequestCode.GET_ALL_TOPIC_CONFIG)
        return broker_name, {name: (config.get("attributes") or {}).get(MESSAGE_TYPE, "NORMAL")
                             for name, config in data.get("topicConfigTable", {}).items()}
    return dict(await ctx.each_broker(targets, one))


@topic.command("route")
@click.argument("name")
@pass_ctx
def topic_route(ctx: Ctx, name: str) -> None:
    """Which brokers serve TOPIC, with how many queues and what permission.

    \b
    Examples:
      rmqctl topic route TopicTest
      rmqctl --output json topic route TopicTest
    """
    async def work(ns):
        route = await ns.topic_route(name)
        addrs = {b["brokerName"]: b.get("brokerAddrs", {}).get("0", "-")
                 for b in route.get("brokerDatas", [])}
        masters = {broker: addr for broker, addr in addrs.items() if addr != "-"}
        return route, addrs, await _message_types(ctx, Admin(ns), masters)

    route, addrs, types = ctx.run(work)
    if ctx.output == "json":
        emit_object(route, "json")
        ctx.finish()
        return
    rows = [{"brokerName": q["brokerName"], "addr": addrs.get(q["brokerName"], "-"),
             "readQueueNums": q["readQueueNums"], "writeQueueNums": q["writeQueueNums"],
             "perm": perm_text(q["perm"]), "type": types.get(q["brokerName"], {}).get(name, "")}
            for q in route.get("queueDatas", [])]
    emit_rows(rows, ctx.output,
              ["brokerName", "addr", "readQueueNums", "writeQueueNums", "perm", "type"])
    ctx.finish()


PERMS = {"R": PERM_READ, "W": PERM_WRITE, "RW": PERM_READ | PERM_WRITE}
DEFAULT_QUEUES = 8


async def topic_config(admin: Admin, addr: str, name: str) -> dict | None:
    """NAME's config on the broker at `addr` (GET_ALL_TOPIC_CONFIG), None when it has none."""
    data = await admin.call_json(addr, RequestCode.GET_ALL_TOPIC_CONFIG)
    return data.get("topicConfigTable", {}).get(name)


def _wanted(name: str, current: dict | None, queues: int | None, perm: str | None,
            order: bool, message_type: str | None) -> dict:
    """The config to send: what is given, and for the rest what the broker has now (or the
    defaults for a broker without the topic). --perm sets the read and write bits only."""
    current = current or {"readQueueNums": DEFAULT_QUEUES, "writeQueueNums": DEFAULT_QUEUES,
                          "perm": PERM_READ | PERM_WRITE, "topicFilterType": "SINGLE_TAG",
                          "topicSysFlag": 0, "order": False}
    bits = current["perm"] if perm is None else \
        current["perm"] & ~(PERM_READ | PERM_WRITE) | PERMS[perm]
    return {"topic": name, "defaultTopic": "TBW102",
            "readQueueNums": current["readQueueNums"] if queues is None else queues,
            "writeQueueNums": current["writeQueueNums"] if queues is None else queues,
            "perm": bits, "topicFilterType": current.get("topicFilterType", "SINGLE_TAG"),
            "topicSysFlag": current.get("topicSysFlag", 0),
            "order": order or bool(current.get("order")),
            # The broker keeps the attributes a request does not name.
            **({"attributes": f"+{MESSAGE_TYPE}={message_type}"} if message_type else {})}


async def _hidden_messages(admin: Admin, addr: str, name: str, keep: int) -> int:
    """Messages in the queues from `keep` on: consumers stop reading them once the topic
    has `keep` read queues."""
    stats = await admin.queue_tables({addr: addr}, RequestCode.GET_TOPIC_STATS_INFO,
                                     {"topic": name})
    return sum(value["maxOffset"] - value["minOffset"] for _, mq, value in stats
               if mq["queueId"] >= keep)


def _apply_topic(ctx: Ctx, name: str, queues: int | None, perm: str | None, order: bool,
                 message_type: str | None, cluster: str | None, broker_addr: str | None,
                 yes: bool) -> list[dict]:
    """Create or update NAME on each broker, keeping what is not given; fewer read queues
    than a broker has need --yes (or a yes on a terminal), told how many messages that
    hides."""
    async def plan(ns):
        admin = Admin(ns)
        targets = {broker_addr: check_addr(broker_addr)} if broker_addr else \
            await admin.masters(cluster)
        if not targets:
            raise ValueError("no broker to create the topic on (see: rmqctl cluster list)")

        async def one(broker_name: str, addr: str) -> tuple:
            current = await topic_config(admin, addr, name)
            wanted = _wanted(name, current, queues, perm, order, message_type)
            wanted_type = message_type or ((current or {}).get("attributes") or {}).get(
                MESSAGE_TYPE, "NORMAL")
            shrink = None
            if current and wanted["readQueueNums"] < current["readQueueNums"]:
                hidden = await _hidden_messages(admin, addr, name, wanted["readQueueNums"])
                shrink = (f"{broker_name} from {current['readQueueNums']} to "
                          f"{wanted['readQueueNums']} read queues hides {hidden} messages "
                          f"in queues {wanted['readQueueNums']}-{current['readQueueNums'] - 1}")
            return broker_name, addr, wanted, wanted_type, shrink
        return await ctx.each_broker(targets, one)

    planned = ctx.run(plan)
    shrinks = [shrink for *_, shrink in planned if shrink]
    if shrinks:
        ctx.confirm(f"shrinking {name} on {'; '.join(shrinks)} from consumers", yes)

    async def apply(ns):
        admin = Admin(ns)
        rows = []
        for broker_name, addr, wanted, wanted_type, _ in planned:
            await admin.call(addr, RequestCode.UPDATE_AND_CREATE_TOPIC, wanted)
            rows.append({"topic": name, "broker": broker_name, "addr": addr,
                         "readQueueNums": wanted["readQueueNums"],
                         "writeQueueNums": wanted["writeQueueNums"],
                         "perm": perm_text(wanted["perm"]), "order": wanted["order"],
                         "type": wanted_type})
        ordered = [r for r in rows if r["order"]]
        if ordered:  # ordered topics are announced to every name server, as mqadmin -o does
            await ns.kv_put("ORDER_TOPIC_CONFIG", name, ";".join(
                f"{r['broker']}:{r['writeQueueNums']}" for r in ordered))
        return rows
    return ctx.run(apply)


_TOPIC_OPTIONS = [
    click.option("-q", "--queues", type=click.IntRange(1, 1024),
                 help=f"Read and write queues per broker [default: the broker's, or "
                      f"{DEFAULT_QUEUES} for a new topic]."),
    click.option("--perm", type=click.Choice(["RW", "R", "W"]),
                 help="Read, write or both [default: the broker's, or RW for a new topic]."),
    click.option("--order", is_flag=True, help="An ordered topic (ORDER_TOPIC_CONFIG)."),
    click.option("-t", "--type", "message_type", type=click.Choice(MESSAGE_TYPES),
                 help="What RocketMQ 5.x (gRPC) producers may send (attribute message.type, "
                      "as mqadmin updateTopic -a +message.type=FIFO sets it) [default: the "
                      "broker's, or NORMAL for a new topic]."),
    click.option("-c", "--cluster", help="On every master of this cluster (default: all)."),
    click.option("-b", "--broker", "broker_addr", help="Only on the broker at this address."),
    click.option("-y", "--yes", is_flag=True,
                 help="Shrink the queues without asking, though their messages become "
                      "unreachable."),
]


def _topic_options(f):
    for option in reversed(_TOPIC_OPTIONS):
        f = option(f)
    return f


@topic.command("create")
@click.argument("name")
@_topic_options
@pass_ctx
def topic_create(ctx: Ctx, name: str, queues: int | None, perm: str | None, order: bool,
                 message_type: str | None, cluster: str | None, broker_addr: str | None,
                 yes: bool) -> None:
    """Create NAME on brokers; on a broker that has it already, the same as `update`.

    \b
    Examples:
      rmqctl topic create Orders -q 8
      rmqctl topic create Payments -q 4 --order -c DefaultCluster
      rmqctl topic create Orders5 --type FIFO
    """
    emit_rows(_apply_topic(ctx, name, queues, perm, order, message_type, cluster, broker_addr,
                           yes), ctx.output)
    ctx.finish()


@topic.command("update")
@click.argument("name")
@_topic_options
@pass_ctx
def topic_update(ctx: Ctx, name: str, queues: int | None, perm: str | None, order: bool,
                 message_type: str | None, cluster: str | None, broker_addr: str | None,
                 yes: bool) -> None:
    """Change NAME's queue count or permission on brokers; what is not given stays as each
    broker has it. Fewer queues hide the messages of the dropped ones from consumers: that
    needs --yes (or a yes on a terminal), and says how many messages it hides.

    \b
    Examples:
      rmqctl topic update Orders --perm R
      rmqctl topic update Orders -q 4 --yes
    """
    emit_rows(_apply_topic(ctx, name, queues, perm, order, message_type, cluster, broker_addr,
                           yes), ctx.output)
    ctx.finish()


@topic.command("delete")
@click.argument("name")
@click.option("-c", "--cluster", help="Only in this cluster (default: everywhere).")
@pass_ctx
def topic_delete(ctx: Ctx, name: str, cluster: str | None) -> None:
    """Delete NAME from the brokers that have it and from every name server; exit code 3
    when no broker or name server knows it.

    \b
    Example:
      rmqctl topic delete Orders -c DefaultCluster
    """
    async def work(ns):
        admin = Admin(ns)

        async def delete(broker_name: str, addr: str) -> dict | None:
            if await topic_config(admin, addr, name) is None:
                return None
            await admin.call(addr, RequestCode.DELETE_TOPIC_IN_BROKER, {"topic": name})
            return {"topic": name, "broker": broker_name, "addr": addr}
        rows = [r for r in await ctx.each_broker(await admin.masters(cluster), delete) if r]
        if not rows and not ctx.broker_failures and name not in await ns.topic_list():
            raise NotFound(f"no topic {name}" + (f" in cluster {cluster}" if cluster else ""))
        for addr in ns.addrs:
            resp = await ns.remoting.invoke(addr, RemotingCommand.request(
                RequestCode.DELETE_TOPIC_IN_NAMESRV, {"topic": name, "clusterName": cluster}),
                ns.timeout)
            if resp.code != 0:
                raise RemotingError(resp.code, resp.remark or "")
        return rows
    emit_rows(ctx.run(work), ctx.output, ["topic", "broker", "addr"])
    ctx.finish()


@topic.command("status")
@click.argument("name")
@pass_ctx
def topic_status(ctx: Ctx, name: str) -> None:
    """Min and max offset of every queue of NAME, as `mqadmin topicStatus` shows them."""
    async def work(ns):
        admin = Admin(ns)

        async def stats(broker_name: str, addr: str) -> list[dict]:
            return [{"brokerName": broker_name, "queueId": mq["queueId"],
                     "minOffset": value["minOffset"], "maxOffset": value["maxOffset"],
                     "lastUpdateTimestamp": value["lastUpdateTimestamp"]}
                    for _, mq, value in await admin.queue_tables(
                        {broker_name: addr}, RequestCode.GET_TOPIC_STATS_INFO, {"topic": name})]
        rows = await ctx.each_broker(await admin.topic_masters(name), stats)
        return sorted((r for broker_rows in rows for r in broker_rows),
                      key=lambda r: (r["brokerName"], r["queueId"]))
    emit_rows(ctx.run(work), ctx.output)
    ctx.finish()


def _day_sum(data: dict) -> int:
    """mqadmin's compute24HourSum: the day's sum, or failing that the hour's, the minute's."""
    for window in ("statsDay", "statsHour", "statsMinute"):
        if data.get(window, {}).get("sum"):
            return data[window]["sum"]
    return 0


async def _traffic(admin: Admin, addr: str, name: str, key: str) -> tuple[float, int]:
    """(TPS over the last minute, messages in the last 24 hours) on one broker; an item the
    broker does not have (no traffic yet) counts 0, as mqadmin counts it."""
    try:
        data = await admin.call_json(addr, RequestCode.VIEW_BROKER_STATS_DATA,
                                     {"statsName": name, "statsKey": key})
    except RemotingError:
        return 0.0, 0
    return data.get("statsMinute", {}).get("tps", 0.0), _day_sum(data)


@dataclass
class _Traffic:
    """One topic's, or one topic@group's, figures summed over brokers."""
    tps: float = 0.0
    day: int = 0
    backlog: int = 0

    def add(self, tps: float, day: int, backlog: int = 0) -> None:
        self.tps += tps
        self.day += day
        self.backlog += backlog


async def _broker_traffic(admin: Admin, topic: str, broker: str, addr: str
                          ) -> tuple[tuple[float, int], dict[str, tuple[float, int, int]]]:
    """What one broker knows of a topic: its traffic in, and per consuming group the traffic
    out and the backlog."""
    incoming = await _traffic(admin, addr, TOPIC_PUT_NUMS, topic)
    data = await admin.call_json(addr, RequestCode.QUERY_TOPIC_CONSUME_BY_WHO, {"topic": topic})
    groups = {}
    for group in data.get("groupList", []):
        backlog = sum(value["brokerOffset"] - value["consumerOffset"]
                      for _, _, value in await admin.queue_tables(
                          {broker: addr}, RequestCode.GET_CONSUME_STATS,
                          {"consumerGroup": group, "topic": topic}))
        groups[group] = (*await _traffic(admin, addr, GROUP_GET_NUMS, f"{topic}@{group}"),
                         backlog)
    return incoming, groups


@topic.command("stats")
@click.argument("names", nargs=-1, metavar="[TOPIC]...")
@click.option("-a", "--active", is_flag=True,
              help="Only topics and groups with messages in the last 24 hours.")
@pass_ctx
def topic_stats(ctx: Ctx, names: tuple[str, ...], active: bool) -> None:
    """Traffic per topic and consuming group, as `mqadmin statsAll` shows it: the backlog, the
    TPS in and out over the last minute, and the messages in and out over the last 24 hours,
    summed over the brokers that answer (one that does not is named on stderr, and the
    command then exits non-zero). Without TOPIC: every topic but retry and dead-letter ones.

    \b
    Examples:
      rmqctl topic stats
      rmqctl topic stats Orders --active
    """
    async def work(ns):
        admin = Admin(ns)
        topics = names or [t for t in await ns.topic_list()
                           if not t.startswith(("%RETRY%", "%DLQ%"))]
        rows = []
        for name in sorted(topics):
            incoming, outgoing = _Traffic(), defaultdict(_Traffic)
            for (tps, day), groups in await ctx.each_broker(
                    await admin.topic_masters(name),
                    lambda broker, addr: _broker_traffic(admin, name, broker, addr)):
                incoming.add(tps, day)
                for group, figures in groups.items():
                    outgoing[group].add(*figures)
            if not outgoing and (incoming.day or not active):
                rows.append({"topic": name, "group": "", "accumulation": 0,
                             "inTps": round(incoming.tps, 2), "outTps": None,
                             "inMsg24Hour": incoming.day, "outMsg24Hour": None})
            for group, out in sorted(outgoing.items()):
                if active and not (incoming.day or out.day):
                    continue
                rows.append({"topic": name, "group": group, "accumulation": max(out.backlog, 0),
                             "inTps": round(incoming.tps, 2), "outTps": round(out.tps, 2),
                             "inMsg24Hour": incoming.day, "outMsg24Hour": out.day})
        return rows
    emit_rows(ctx.run(work), ctx.output)
    ctx.finish()

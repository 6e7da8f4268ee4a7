"""`rmqctl topic ...`: topics as the name servers route them."""

from __future__ import annotations

import click

from rmqnode.broker.stats import GROUP_GET_NUMS, TOPIC_PUT_NUMS
from rmqnode.errors import RemotingError
from rmqnode.net import fastjson
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import PERM_READ, PERM_WRITE, RequestCode, perm_text
from rmqctl.client.admin import Admin
from rmqctl.context import Ctx, pass_ctx
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
            return fastjson.loads(resp.body).get("topicList", [])
        return await ns.topic_list()

    emit_rows([{"topic": t} for t in sorted(ctx.run(work))], ctx.output, ["topic"])


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
    route = ctx.run(lambda ns: ns.topic_route(name))
    if ctx.output == "json":
        emit_object(route, "json")
        return
    addrs = {b["brokerName"]: b.get("brokerAddrs", {}) for b in route.get("brokerDatas", [])}
    rows = [{"brokerName": q["brokerName"],
             "addr": addrs.get(q["brokerName"], {}).get("0", "-"),
             "readQueueNums": q["readQueueNums"], "writeQueueNums": q["writeQueueNums"],
             "perm": perm_text(q["perm"])} for q in route.get("queueDatas", [])]
    emit_rows(rows, ctx.output, ["brokerName", "addr", "readQueueNums", "writeQueueNums", "perm"])


def _apply_topic(ctx: Ctx, name: str, queues: int, perm: str, order: bool,
                 cluster: str | None, broker: str | None) -> list[dict]:
    perms = {"R": PERM_READ, "W": PERM_WRITE, "RW": PERM_READ | PERM_WRITE}
    async def work(ns):
        admin = Admin(ns)
        targets = {broker: broker} if broker else await admin.masters(cluster)
        if not targets:
            raise ValueError("no broker to create the topic on (see: rmqctl cluster list)")
        rows = []
        for broker_name, addr in targets.items():
            await admin.create_topic(addr, name, queues, perms[perm], order)
            rows.append({"topic": name, "broker": broker_name, "addr": addr, "queues": queues,
                         "perm": perm})
        if order:  # ordered topics are announced to every name server, as mqadmin -o does
            conf = ";".join(f"{b}:{queues}" for b in targets)
            await ns.kv_put("ORDER_TOPIC_CONFIG", name, conf)
        return rows
    return ctx.run(work)


_TOPIC_OPTIONS = [
    click.option("-q", "--queues", type=click.IntRange(1, 1024), default=8, show_default=True),
    click.option("--perm", type=click.Choice(["RW", "R", "W"]), default="RW", show_default=True),
    click.option("--order", is_flag=True, help="An ordered topic (ORDER_TOPIC_CONFIG)."),
    click.option("-c", "--cluster", help="On every master of this cluster (default: all)."),
    click.option("-b", "--broker", "broker_addr", help="Only on the broker at this address."),
]


def _topic_options(f):
    for option in reversed(_TOPIC_OPTIONS):
        f = option(f)
    return f


@topic.command("create")
@click.argument("name")
@_topic_options
@pass_ctx
def topic_create(ctx: Ctx, name: str, queues: int, perm: str, order: bool,
                 cluster: str | None, broker_addr: str | None) -> None:
    """Create NAME on brokers (idempotent; `update` is the same request).

    \b
    Examples:
      rmqctl topic create Orders -q 8
      rmqctl topic create Payments -q 4 --order -c DefaultCluster
    """
    emit_rows(_apply_topic(ctx, name, queues, perm, order, cluster, broker_addr), ctx.output)


@topic.command("update")
@click.argument("name")
@_topic_options
@pass_ctx
def topic_update(ctx: Ctx, name: str, queues: int, perm: str, order: bool,
                 cluster: str | None, broker_addr: str | None) -> None:
    """Change NAME's queue count or permission on brokers."""
    emit_rows(_apply_topic(ctx, name, queues, perm, order, cluster, broker_addr), ctx.output)


@topic.command("delete")
@click.argument("name")
@click.option("-c", "--cluster", help="Only in this cluster (default: everywhere).")
@pass_ctx
def topic_delete(ctx: Ctx, name: str, cluster: str | None) -> None:
    """Delete NAME from its brokers and from every name server."""
    async def work(ns):
        admin = Admin(ns)
        for addr in (await admin.masters(cluster)).values():
            await admin.call(addr, RequestCode.DELETE_TOPIC_IN_BROKER, {"topic": name})
        for addr in ns.addrs:
            resp = await ns.remoting.invoke(addr, RemotingCommand.request(
                RequestCode.DELETE_TOPIC_IN_NAMESRV, {"topic": name, "clusterName": cluster}),
                ns.timeout)
            if resp.code != 0:
                raise RemotingError(resp.code, resp.remark or "")
    ctx.run(work)


@topic.command("status")
@click.argument("name")
@pass_ctx
def topic_status(ctx: Ctx, name: str) -> None:
    """Min and max offset of every queue of NAME, as `mqadmin topicStatus` shows them."""
    async def work(ns):
        admin = Admin(ns)
        rows = [{"brokerName": broker_name, "queueId": mq["queueId"],
                 "minOffset": value["minOffset"], "maxOffset": value["maxOffset"],
                 "lastUpdateTimestamp": value["lastUpdateTimestamp"]}
                for broker_name, mq, value in await admin.queue_tables(
                    await admin.topic_masters(name), RequestCode.GET_TOPIC_STATS_INFO,
                    {"topic": name})]
        return sorted(rows, key=lambda r: (r["brokerName"], r["queueId"]))
    emit_rows(ctx.run(work), ctx.output)


def _day_sum(data: dict) -> int:
    """mqadmin's compute24HourSum: the day's sum, or failing that the hour's, the minute's."""
    for window in ("statsDay", "statsHour", "statsMinute"):
        if data.get(window, {}).get("sum"):
            return data[window]["sum"]
    return 0


async def _traffic(admin: Admin, masters: dict[str, str], name: str, key: str
                   ) -> tuple[float, int]:
    """(TPS over the last minute, messages in the last 24 hours) over every master; an item a
    broker does not have (no traffic yet) counts 0, as mqadmin counts it."""
    tps, day = 0.0, 0
    for addr in masters.values():
        try:
            data = await admin.call_json(addr, RequestCode.VIEW_BROKER_STATS_DATA,
                                         {"statsName": name, "statsKey": key})
        except RemotingError:
            continue
        tps += data.get("statsMinute", {}).get("tps", 0.0)
        day += _day_sum(data)
    return tps, day


@topic.command("stats")
@click.argument("names", nargs=-1, metavar="[TOPIC]...")
@click.option("-a", "--active", is_flag=True,
              help="Only topics and groups with messages in the last 24 hours.")
@pass_ctx
def topic_stats(ctx: Ctx, names: tuple[str, ...], active: bool) -> None:
    """Traffic per topic and consuming group, as `mqadmin statsAll` shows it: the backlog, the
    TPS in and out over the last minute, and the messages in and out over the last 24 hours.
    Without TOPIC: every topic but retry and dead-letter ones.

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
            masters = await admin.topic_masters(name)
            in_tps, in_day = await _traffic(admin, masters, TOPIC_PUT_NUMS, name)
            groups: set[str] = set()
            for addr in masters.values():
                data = await admin.call_json(addr, RequestCode.QUERY_TOPIC_CONSUME_BY_WHO,
                                             {"topic": name})
                groups.update(data.get("groupList", []))
            if not groups and (in_day or not active):
                rows.append({"topic": name, "group": "", "accumulation": 0,
                             "inTps": round(in_tps, 2), "outTps": None, "inMsg24Hour": in_day,
                             "outMsg24Hour": None})
            for group in sorted(groups):
                out_tps, out_day = await _traffic(admin, masters, GROUP_GET_NUMS,
                                                  f"{name}@{group}")
                if active and not (in_day or out_day):
                    continue
                backlog = sum(value["brokerOffset"] - value["consumerOffset"]
                              for _, _, value in await admin.queue_tables(
                                  masters, RequestCode.GET_CONSUME_STATS,
                                  {"consumerGroup": group, "topic": name}))
                rows.append({"topic": name, "group": group, "accumulation": max(backlog, 0),
                             "inTps": round(in_tps, 2), "outTps": round(out_tps, 2),
                             "inMsg24Hour": in_day, "outMsg24Hour": out_day})
        return rows
    emit_rows(ctx.run(work), ctx.output)

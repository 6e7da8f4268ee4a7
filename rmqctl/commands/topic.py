"""`rmqctl topic ...`: topics as the name servers route them."""

from __future__ import annotations

import click

from rmqnode.errors import RemotingError
from rmqnode.net import fastjson
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import PERM_READ, PERM_WRITE, RequestCode, perm_text
from rmqctl.client.admin import Admin
from rmqctl.context import Ctx, pass_ctx
from rmqctl.output import emit_object, emit_rows


@click.group()
def topic() -> None:
    """Topics: list, create, update, delete, route, status."""


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

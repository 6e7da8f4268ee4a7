"""`rmqctl topic ...`: topics as the name servers route them."""

from __future__ import annotations

import click

from rmqnode.net import fastjson
from rmqnode.net.codes import RequestCode
from rmqctl.context import Ctx, pass_ctx
from rmqctl.output import emit_object, emit_rows


@click.group()
def topic() -> None:
    """Topics: list them, see their routes."""


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


def perm_text(perm: int) -> str:
    """6 -> 'RW', 7 -> 'RWX' (X: may serve as an auto-create template), as people read them."""
    return ("R" if perm & 4 else "") + ("W" if perm & 2 else "") + ("X" if perm & 1 else "") \
        or "-"

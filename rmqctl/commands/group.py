"""`rmqctl group ...`: consumer groups, their progress and members."""

from __future__ import annotations

import click

from rmqnode.errors import RemotingError
from rmqnode.message import RETRY_PREFIX
from rmqnode.net import fastjson
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode, ResponseCode
from rmqctl.client.admin import Admin
from rmqctl.context import Ctx, NotFound, pass_ctx
from rmqctl.output import emit_object, emit_rows


@click.group()
def group() -> None:
    """Consumer groups: list, create, delete, progress, connections, status."""


@group.command("list")
@pass_ctx
def group_list(ctx: Ctx) -> None:
    """Groups with a retry topic, which every clustering consumer group has."""
    names = ctx.run(lambda ns: ns.topic_list())
    emit_rows([{"group": t[len(RETRY_PREFIX):]} for t in sorted(names)
               if t.startswith(RETRY_PREFIX)], ctx.output, ["group"])


@group.command("create")
@click.argument("name")
@click.option("--retry-max-times", type=int, default=16, show_default=True)
@click.option("--no-consume", is_flag=True, help="Create it with consuming disabled.")
@click.option("-c", "--cluster", help="On every master of this cluster (default: all).")
@pass_ctx
def group_create(ctx: Ctx, name: str, retry_max_times: int, no_consume: bool,
                 cluster: str | None) -> None:
    """Create or update subscription group NAME on brokers."""
    body = fastjson.dumpb({"groupName": name, "retryMaxTimes": retry_max_times,
                           "consumeEnable": not no_consume})

    async def work(ns):
        admin = Admin(ns)
        await ctx.each_broker(await admin.masters(cluster), lambda _, addr: admin.call(
            addr, RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, body=body))
    ctx.run(work)
    ctx.finish()


@group.command("delete")
@click.argument("name")
@click.option("--clean-offset", is_flag=True, help="Also forget its committed offsets.")
@click.option("-c", "--cluster", help="Only in this cluster.")
@pass_ctx
def group_delete(ctx: Ctx, name: str, clean_offset: bool, cluster: str | None) -> None:
    """Delete subscription group NAME from brokers."""
    async def work(ns):
        admin = Admin(ns)
        await ctx.each_broker(await admin.masters(cluster), lambda _, addr: admin.call(
            addr, RequestCode.DELETE_SUBSCRIPTIONGROUP,
            {"groupName": name, "cleanOffset": clean_offset}))
    ctx.run(work)
    ctx.finish()


@group.command("progress")
@click.argument("name")
@click.option("-t", "--topic", help="Only this topic.")
@pass_ctx
def group_progress(ctx: Ctx, name: str, topic: str | None) -> None:
    """Per queue: the broker's offset, the group's, and the lag (`mqadmin consumerProgress`).
    Exit code 3 when no broker has offsets of the group (no such group, or it never
    committed one), as mqadmin finds no consume stats.

    \b
    Examples:
      rmqctl group progress orders-service
      rmqctl -o json group progress orders-service -t Orders
    """
    async def work(ns):
        admin = Admin(ns)
        fields = {"consumerGroup": name} | ({"topic": topic} if topic else {})

        async def progress(broker_name: str, addr: str) -> list[dict]:
            return [{"topic": mq["topic"], "brokerName": broker_name, "queueId": mq["queueId"],
                     "brokerOffset": value["brokerOffset"],
                     "consumerOffset": value["consumerOffset"],
                     "diff": value["brokerOffset"] - value["consumerOffset"],
                     "lastTimestamp": value["lastTimestamp"]}
                    for _, mq, value in await admin.queue_tables(
                        {broker_name: addr}, RequestCode.GET_CONSUME_STATS, fields)]
        rows = [r for broker_rows in await ctx.each_broker(await admin.masters(), progress)
                for r in broker_rows]
        if not rows and not ctx.broker_failures:
            raise NotFound(f"no consume progress of group {name}"
                           + (f" on topic {topic}" if topic else "")
                           + ": no such group, or it never committed an offset")
        return sorted(rows, key=lambda r: (r["topic"], r["brokerName"], r["queueId"]))
    emit_rows(ctx.run(work), ctx.output)
    ctx.finish()


@group.command("connections")
@click.argument("name")
@pass_ctx
def group_connections(ctx: Ctx, name: str) -> None:
    """The group's live members: client id, address, language, version, from every broker
    that answers (one that does not is named on stderr, and the command exits non-zero)."""
    async def work(ns):
        async def members(_: str, addr: str) -> list[dict]:
            resp = await ns.remoting.invoke(addr, RemotingCommand.request(
                RequestCode.GET_CONSUMER_CONNECTION_LIST, {"consumerGroup": name}), ns.timeout)
            if resp.code != 0:  # nobody of the group on this broker
                return []
            data = fastjson.loads(resp.body)
            return [c | {"messageModel": data.get("messageModel")}
                    for c in data.get("connectionSet", [])]

        rows = [row for found in await ctx.each_broker(await Admin(ns).masters(), members)
                for row in found]
        if not rows:
            raise RemotingError(ResponseCode.CONSUMER_NOT_ONLINE,
                                f"the consumer group {name} is not online")
        return rows
    emit_rows(ctx.run(work), ctx.output)
    ctx.finish()


@group.command("status")
@click.argument("name")
@click.option("--client", "client_id", help="Only this member (a client id).")
@pass_ctx
def group_status(ctx: Ctx, name: str, client_id: str | None) -> None:
    """What each live member of NAME says of itself (ConsumerRunningInfo, relayed by the
    broker as for `mqadmin consumerStatus`): consume type, subscriptions, queues held and
    TPS. `-o json` shows every property the client sent.

    \b
    Examples:
      rmqctl group status orders-service
      rmqctl -o json group status orders-service --client 10.0.0.7@12345
    """
    async def work(ns):
        admin = Admin(ns)
        infos = {}
        for addr in (await admin.masters()).values():
            for member in await admin.members(addr, name):
                cid = member["clientId"]
                if cid in infos or client_id not in (None, cid):
                    continue
                infos[cid] = await admin.call_json(
                    addr, RequestCode.GET_CONSUMER_RUNNING_INFO,
                    {"consumerGroup": name, "clientId": cid, "jstackEnable": False})
        if not infos:
            raise NotFound(f"no live member of {name}" + (f" named {client_id}"
                                                           if client_id else ""))
        return infos
    infos = ctx.run(work)
    if ctx.output == "json":
        emit_object(infos, "json")
        return
    rows = []
    for cid, info in sorted(infos.items()):
        props, status = info.get("properties", {}), info.get("statusTable", {}).values()
        rows.append({"clientId": cid, "consumeType": props.get("PROP_CONSUME_TYPE", "-"),
                     "orderly": props.get("PROP_CONSUMEORDERLY", "-"),
                     "subscriptions": ",".join(sorted(s.get("topic", "") for s in
                                                      info.get("subscriptionSet", []))),
                     "queues": len(info.get("mqTable", {})),
                     "pullTPS": round(sum(s.get("pullTPS", 0.0) for s in status), 2),
                     "consumeOKTPS": round(sum(s.get("consumeOKTPS", 0.0) for s in status), 2),
                     "version": props.get("PROP_CLIENT_VERSION", "-")})
    emit_rows(rows, ctx.output, list(rows[0]))

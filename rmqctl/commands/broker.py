"""`rmqctl broker ...`: a broker's runtime figures and configuration."""

from __future__ import annotations

import click

from rmqnode.config import read_properties
from rmqnode.net.codes import RequestCode
from rmqctl.client.admin import Admin
from rmqctl.client.namesrv import check_addr
from rmqctl.context import Ctx, NotFound, pass_ctx
from rmqctl.output import emit_object, emit_rows


async def _addr(admin: Admin, broker: str) -> str:
    """A broker given by address, or by name (its master), or a slave as `name#brokerId`."""
    if ":" in broker:
        return check_addr(broker)
    known = await (admin.brokers() if "#" in broker else admin.masters())
    if broker not in known:
        raise NotFound(f"no broker named {broker!r} (see: rmqctl cluster list)")
    return known[broker]


@click.group()
def broker() -> None:
    """Brokers: status (runtime figures), config, consume stats, queue clean-up."""


@broker.command("status")
@click.argument("broker_ref", metavar="BROKER")
@pass_ctx
def broker_status(ctx: Ctx, broker_ref: str) -> None:
    """Runtime figures of BROKER (a name, name#brokerId for a slave, or host:port), as
    `mqadmin brokerStatus`, with the replication figures (ha*: HA address and slaves of a
    master, master address and connection state of a slave).

    \b
    Examples:
      rmqctl broker status broker-a
      rmqctl broker status broker-a#1
      rmqctl -o json broker status 127.0.0.1:10911
    """
    async def work(ns):
        admin = Admin(ns)
        data = await admin.call_json(await _addr(admin, broker_ref),
                                     RequestCode.GET_BROKER_RUNTIME_INFO)
        return dict(sorted(data.get("table", {}).items()))
    emit_object(ctx.run(work), ctx.output)


@broker.command("config")
@click.argument("broker_ref", metavar="BROKER")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Change a setting at runtime (repeatable).")
@pass_ctx
def broker_config(ctx: Ctx, broker_ref: str, settings: tuple[str, ...]) -> None:
    """Show BROKER's configuration, or change settings with --set. The broker takes every
    setting or none: an unknown key, one that only changes with a restart, or a bad value
    fails the command (exit code 1) with the broker's reason, and nothing changes.

    \b
    Examples:
      rmqctl broker config broker-a
      rmqctl broker config 127.0.0.1:10911 --set maxMessageSize=8388608
    """
    for item in settings:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip() or "\n" in item or "\r" in item:
            raise click.UsageError(f"--set expects KEY=VALUE on one line, got {item!r}")

    async def work(ns):
        admin = Admin(ns)
        addr = await _addr(admin, broker_ref)
        if settings:
            await admin.call(addr, RequestCode.UPDATE_BROKER_CONFIG,
                             body="".join(f"{s}\n" for s in settings).encode())
        resp = await admin.call(addr, RequestCode.GET_BROKER_CONFIG)
        return dict(sorted(read_properties(resp.body.decode()).items()))
    emit_object(ctx.run(work), ctx.output)


@broker.command("consume-stats")
@click.argument("broker_ref", metavar="BROKER")
@click.option("--order", is_flag=True, help="Only ordered topics (mqadmin's -o true).")
@pass_ctx
def broker_consume_stats(ctx: Ctx, broker_ref: str, order: bool) -> None:
    """Every group's lag on BROKER, queue by queue, as `mqadmin brokerConsumeStats`; the
    total lag goes to stderr.

    \b
    Examples:
      rmqctl broker consume-stats broker-a
      rmqctl -o json broker consume-stats 127.0.0.1:10911 --order
    """
    async def work(ns):
        admin = Admin(ns)
        data = await admin.call_json(await _addr(admin, broker_ref),
                                     RequestCode.GET_BROKER_CONSUME_STATS,
                                     {"isOrder": order, "timeoutMillis": int(ns.timeout * 1000)})
        rows = [{"topic": mq["topic"], "group": group, "brokerName": mq["brokerName"],
                 "queueId": mq["queueId"], "brokerOffset": o["brokerOffset"],
                 "consumerOffset": o["consumerOffset"],
                 "diff": o["brokerOffset"] - o["consumerOffset"]}
                for entry in data.get("consumeStatsList", []) for group, stats in entry.items()
                for one in stats for key, o in one.get("offsetTable", {}).items()
                for mq in [key.as_dict()]]
        click.echo(f"rmqctl: total diff {data.get('totalDiff', 0)}", err=True)
        return sorted(rows, key=lambda r: (r["topic"], r["group"], r["queueId"]))
    emit_rows(ctx.run(work), ctx.output, ["topic", "group", "brokerName", "queueId",
                                          "brokerOffset", "consumerOffset", "diff"])


@broker.command("clean")
@click.argument("broker_ref", metavar="BROKER")
@click.option("--expired-queues", is_flag=True,
              help="Drop consume queues whose messages have all expired (mqadmin cleanExpiredCQ).")
@click.option("--unused-topics", is_flag=True,
              help="Drop the queues of topics the broker no longer has (cleanUnusedTopic).")
@pass_ctx
def broker_clean(ctx: Ctx, broker_ref: str, expired_queues: bool, unused_topics: bool) -> None:
    """Remove consume queues that point at nothing on BROKER. The CommitLog is not touched.

    \b
    Examples:
      rmqctl broker clean broker-a --expired-queues
      rmqctl broker clean 127.0.0.1:10911 --unused-topics
    """
    wanted = {name: code for name, flag, code in (
        ("expired-queues", expired_queues, RequestCode.CLEAN_EXPIRED_CONSUMEQUEUE),
        ("unused-topics", unused_topics, RequestCode.CLEAN_UNUSED_TOPIC)) if flag}
    if not wanted:
        raise click.UsageError("give --expired-queues, --unused-topics or both")

    async def work(ns):
        admin = Admin(ns)
        addr = await _addr(admin, broker_ref)
        for code in wanted.values():
            await admin.call(addr, code)
        return {"broker": addr, "cleaned": list(wanted)}
    emit_object(ctx.run(work), ctx.output)

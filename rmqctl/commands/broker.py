"""`rmqctl broker ...`: a broker's runtime figures and configuration."""

from __future__ import annotations

import click

from rmqnode.config import read_properties
from rmqnode.net.codes import RequestCode
from rmqctl.client.admin import Admin
from rmqctl.context import Ctx, pass_ctx
from rmqctl.output import emit_object


async def _addr(admin: Admin, broker: str) -> str:
    """A broker given by address, or by name."""
    if ":" in broker:
        return broker
    masters = await admin.masters()
    if broker not in masters:
        raise ValueError(f"no broker named {broker!r} (see: rmqctl cluster list)")
    return masters[broker]


@click.group()
def broker() -> None:
    """Brokers: status (runtime figures) and config."""


@broker.command("status")
@click.argument("broker_ref", metavar="BROKER")
@pass_ctx
def broker_status(ctx: Ctx, broker_ref: str) -> None:
    """Runtime figures of BROKER (a name or host:port), as `mqadmin brokerStatus`."""
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
    """Show BROKER's configuration, or change settings with --set."""
    for item in settings:
        if "=" not in item:
            raise click.UsageError(f"--set expects KEY=VALUE, got {item!r}")

    async def work(ns):
        admin = Admin(ns)
        addr = await _addr(admin, broker_ref)
        if settings:
            await admin.call(addr, RequestCode.UPDATE_BROKER_CONFIG,
                             body="".join(f"{s}\n" for s in settings).encode())
        resp = await admin.call(addr, RequestCode.GET_BROKER_CONFIG)
        return dict(sorted(read_properties(resp.body.decode()).items()))
    emit_object(ctx.run(work), ctx.output)

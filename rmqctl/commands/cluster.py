"""`rmqctl cluster ...`: the brokers a name server knows."""

from __future__ import annotations

import click

from rmqctl.context import Ctx, pass_ctx
from rmqctl.output import emit_rows


@click.group()
def cluster() -> None:
    """Clusters and their brokers."""


@cluster.command("list")
@pass_ctx
def cluster_list(ctx: Ctx) -> None:
    """One row per broker address, as `mqadmin clusterList` lists them.

    \b
    Examples:
      rmqctl cluster list
      rmqctl -n 10.0.0.5:9876 --output json cluster list
    """
    info = ctx.run(lambda ns: ns.cluster_info())
    rows = []
    for cluster_name, broker_names in sorted(info.get("clusterAddrTable", {}).items()):
        for name in sorted(broker_names):
            broker = info.get("brokerAddrTable", {}).get(name, {})
            for broker_id, addr in sorted(broker.get("brokerAddrs", {}).items(),
                                          key=lambda kv: int(kv[0])):
                rows.append({"cluster": cluster_name, "brokerName": name,
                             "brokerId": int(broker_id), "addr": addr})
    emit_rows(rows, ctx.output, ["cluster", "brokerName", "brokerId", "addr"])

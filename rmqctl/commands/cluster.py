"""`rmqctl cluster ...`: the brokers a name server knows."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from rmqnode.config import read_properties
from rmqnode.errors import ConnectionLost, RemotingError, RemotingTimeout
from rmqnode.net.codes import RequestCode
from rmqctl.client.admin import Admin
from rmqctl.context import Ctx, pass_ctx
from rmqctl.output import emit_rows

COLUMNS = ["cluster", "brokerName", "brokerId", "role", "addr", "haState", "lagBytes"]


async def broker_state(admin: Admin, addr: str) -> dict[str, Any]:
    """What a broker says of its part in replication: brokerRole (its config), CommitLog end
    and HA state (its runtime info). A master's state is SERVING with a slave connected,
    NO_SLAVE without; a slave's is its HA client's (IDLE, CONNECTING, TRANSFER,
    AHEAD_OF_MASTER); UNREACHABLE when the broker does not answer. A Java broker shows no
    HA state (4.9.8 reports none)."""
    try:
        runtime, config = await asyncio.gather(
            admin.call_json(addr, RequestCode.GET_BROKER_RUNTIME_INFO),
            admin.call(addr, RequestCode.GET_BROKER_CONFIG))
    except (RemotingError, ConnectionLost, RemotingTimeout):
        return {"role": None, "end": None, "haState": "UNREACHABLE"}
    table = runtime.get("table", {}) if isinstance(runtime, dict) else {}
    state = table.get("haConnectionState")
    if state is None and "haSlaveConnections" in table:
        state = "SERVING" if table["haSlaveConnections"] not in ("", "0") else "NO_SLAVE"
    end = table.get("commitLogMaxOffset")
    return {"role": read_properties(config.body.decode("utf-8", "replace")).get("brokerRole"),
            "end": int(end) if str(end).isdigit() else None, "haState": state}


@click.group()
def cluster() -> None:
    """Clusters and their brokers."""


@cluster.command("list")
@pass_ctx
def cluster_list(ctx: Ctx) -> None:
    """One row per broker address, as `mqadmin clusterList` lists them, with its part in
    replication: role (brokerRole), haState, and lagBytes, how many bytes of its master's
    CommitLog a slave lacks.

    \b
    Examples:
      rmqctl cluster list
      rmqctl -n 10.0.0.5:9876 --output json cluster list
    """
    async def work(ns) -> list[dict[str, Any]]:
        info = await ns.cluster_info()
        rows = []
        for cluster_name, broker_names in sorted(info.get("clusterAddrTable", {}).items()):
            for name in sorted(broker_names):
                broker = info.get("brokerAddrTable", {}).get(name, {})
                for broker_id, addr in sorted(broker.get("brokerAddrs", {}).items(),
                                              key=lambda kv: int(kv[0])):
                    rows.append({"cluster": cluster_name, "brokerName": name,
                                 "brokerId": int(broker_id), "addr": addr})
        admin = Admin(ns)
        states = await asyncio.gather(*(broker_state(admin, row["addr"]) for row in rows))
        master_end = {row["brokerName"]: state["end"] for row, state in zip(rows, states)
                      if row["brokerId"] == 0}
        for row, state in zip(rows, states):
            lag = None
            if row["brokerId"] != 0 and state["end"] is not None \
                    and master_end.get(row["brokerName"]) is not None:
                lag = max(master_end[row["brokerName"]] - state["end"], 0)
            row.update(role=state["role"], haState=state["haState"], lagBytes=lag)
        return rows
    emit_rows(ctx.run(work), ctx.output, COLUMNS)

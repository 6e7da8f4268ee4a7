"""`rmqctl acl ...`: the brokers' plain ACL accounts and global white addresses, over the
admin codes mqadmin's updateAclConfig, deleteAclConfig, updateGlobalWhiteAddr and
clusterAclConfigVersion send.

Each broker keeps its own plain_acl.yml, so changes go to every broker of a cluster (masters
and slaves, as mqadmin does) or to the one given with -b; reads ask the masters.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from rmqnode.acl.rules import KEY_MIN_LENGTH
from rmqnode.errors import RemotingError
from rmqnode.net import fastjson
from rmqnode.net.codes import ResponseCode
from rmqctl.client.admin import Admin
from rmqctl.client.namesrv import check_addr
from rmqctl.context import MASK, Ctx, NotFound, hide, pass_ctx
from rmqctl.output import emit_object, emit_rows

# What plain_acl.yml and Java's Permission.parsePermFromString accept.
PERMS = ("DENY", "PUB", "SUB", "PUB|SUB", "SUB|PUB")
ACCOUNT_FIELDS = ("accessKey", "secretKey", "admin", "defaultTopicPerm", "defaultGroupPerm",
                  "topicPerms", "groupPerms", "whiteRemoteAddress")
COLUMNS = ["broker", "addr", *ACCOUNT_FIELDS]


@click.group()
def acl() -> None:
    """Plain ACL accounts (plain_acl.yml) of brokers started with aclEnable=true.

    \b
    The account rmqctl signs with comes from --access-key/--secret-key, RMQ_ACCESS_KEY and
    RMQ_SECRET_KEY, or a context; changing accounts needs an admin account.
    """


def _where(f):
    f = click.option("-b", "--broker", "broker_addr", metavar="HOST:PORT",
                     help="Only the broker at this address.")(f)
    return click.option("-c", "--cluster",
                        help="Only the brokers of this cluster (default: every cluster).")(f)


async def _targets(admin: Admin, cluster: str | None, broker_addr: str | None,
                   slaves: bool) -> dict[str, str]:
    """Broker label -> address: the one given, or the cluster's masters (with `slaves`,
    its slaves too)."""
    if broker_addr:
        return {broker_addr: check_addr(broker_addr)}
    targets = await (admin.brokers(cluster) if slaves else admin.masters(cluster))
    if not targets:
        raise ValueError("no broker found (see: rmqctl cluster list)")
    return targets


async def _accounts(admin: Admin, addr: str) -> list[dict[str, Any]] | None:
    """The broker's accounts; None when it cannot list them (Java 4.9.8 brokers dropped
    GET_BROKER_CLUSTER_ACL_CONFIG)."""
    try:
        return (await admin.acl_config(addr))["plainAccessConfigs"]
    except RemotingError as exc:
        if exc.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED:
            return None
        raise


def _find(accounts: list[dict[str, Any]] | None, access_key: str) -> dict[str, Any] | None:
    return next((a for a in accounts or [] if a.get("accessKey") == access_key), None)


def _row(broker: str, addr: str, account: dict[str, Any], show_secret: bool) -> dict[str, Any]:
    """An account as printed: its secret key masked, unless asked for and the broker sent
    it (rmqnode never does; Java brokers up to 4.9.7 did)."""
    row = {"broker": broker, "addr": addr, **{k: account.get(k) for k in ACCOUNT_FIELDS}}
    row["admin"] = bool(row["admin"])
    if not (show_secret and row["secretKey"]):
        row["secretKey"] = MASK
    return row


@acl.command("list")
@_where
@click.option("--show-secrets", is_flag=True,
              help="Print secret keys instead of ****, where the broker sends them (Java "
                   "brokers up to 4.9.7; never rmqnode).")
@pass_ctx
def acl_list(ctx: Ctx, cluster: str | None, broker_addr: str | None, show_secrets: bool) -> None:
    """Every account of every master, secret keys masked.

    \b
    Examples:
      rmqctl acl list
      rmqctl -o json acl list -b 127.0.0.1:10911 --show-secrets
    """
    async def work(ns):
        admin = Admin(ns)

        async def one(name: str, addr: str) -> list[dict[str, Any]]:
            accounts = (await admin.acl_config(addr))["plainAccessConfigs"]
            return [_row(name, addr, a, show_secrets)
                    for a in sorted(accounts, key=lambda a: str(a.get("accessKey")))]
        return await ctx.each_broker(await _targets(admin, cluster, broker_addr, False), one)
    emit_rows([row for rows in ctx.run(work) for row in rows], ctx.output, COLUMNS)
    ctx.finish()


@acl.command("get")
@click.argument("access_key")
@_where
@click.option("--show-secrets", is_flag=True,
              help="Print the secret key instead of ****, where the broker sends it.")
@pass_ctx
def acl_get(ctx: Ctx, access_key: str, cluster: str | None, broker_addr: str | None,
            show_secrets: bool) -> None:
    """ACCESS_KEY's account on each master that has it; exit code 3 when none has.

    \b
    Example:
      rmqctl acl get RocketMQ-user
    """
    async def work(ns):
        admin = Admin(ns)

        async def one(name: str, addr: str) -> dict[str, Any] | None:
            account = _find((await admin.acl_config(addr))["plainAccessConfigs"], access_key)
            return account and _row(name, addr, account, show_secrets)
        targets = await _targets(admin, cluster, broker_addr, False)
        return [r for r in await ctx.each_broker(targets, one) if r]
    rows = ctx.run(work)
    if not rows and not ctx.broker_failures:
        raise NotFound(f"no ACL account {access_key}")
    if ctx.output == "table":
        for i, row in enumerate(rows):
            if i:
                click.echo()
            emit_object(row, ctx.output)
    else:
        emit_rows(rows, ctx.output, COLUMNS)
    ctx.finish()


def _resource_perms(what: str):
    """A click callback checking NAME=PERM values, as Java's Permission.checkResourcePerms."""
    def check(click_ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
              ) -> list[str]:
        out = []
        for value in values:
            name, sep, perm = value.partition("=")
            if not sep or not name.strip() or "," in value or perm.strip() not in PERMS:
                raise click.BadParameter(f"{value!r}: expected {what}=PERM with PERM one of "
                                         f"{', '.join(PERMS)}")
            out.append(f"{name.strip()}={perm.strip()}")
        return out
    return check


def _merge(current: dict[str, Any] | None, given: dict[str, Any]) -> dict[str, Any]:
    """The account to send: the broker's as it is, with what was given replacing it; a
    topic or group permission replaces that topic's or group's, the others stay."""
    account = {k: v for k, v in (current or {}).items() if k in ACCOUNT_FIELDS and v is not None}
    for key, value in given.items():
        if key in ("topicPerms", "groupPerms"):
            if value:
                perms = {p.split("=", 1)[0].strip(): p for p in account.get(key) or []}
                perms.update((p.split("=", 1)[0], p) for p in value)
                account[key] = list(perms.values())
        elif value is not None:
            account[key] = value
    account.setdefault("admin", False)
    return account


def _secret(value: str | None) -> str | None:
    """--secret-key's value; `-` reads it from stdin, keeping it out of ps."""
    if value == "-":
        value = sys.stdin.readline().rstrip("\r\n")
    if value is None:
        return None
    if len(value) <= KEY_MIN_LENGTH or any(c.isspace() for c in value):
        raise click.BadParameter(f"a secret key is longer than {KEY_MIN_LENGTH} characters, "
                                 "without blanks", param_hint="--secret-key")
    return hide(value)


@acl.command("update")
@click.argument("access_key")
@click.option("--secret-key", "secret_key", metavar="SK|-",
              help="The account's secret key, new or as it is (brokers need it with every "
                   "change; only Java brokers up to 4.9.7 tell it); '-' reads it from stdin, "
                   "which keeps it out of ps and shell history.")
@click.option("--admin/--no-admin", default=None,
              help="May call admin codes (topics, groups, ACL) [default: as it is; no for a "
                   "new account].")
@click.option("--topic-perm", "topic_perms", multiple=True, metavar="TOPIC=PERM",
              callback=_resource_perms("TOPIC"),
              help="Permission on one topic (repeatable): DENY, PUB, SUB or PUB|SUB.")
@click.option("--group-perm", "group_perms", multiple=True, metavar="GROUP=PERM",
              callback=_resource_perms("GROUP"),
              help="Permission on one consumer group (repeatable): DENY, SUB, ...")
@click.option("--default-topic-perm", type=click.Choice(PERMS),
              help="Permission on topics not listed [the broker's default: DENY].")
@click.option("--default-group-perm", type=click.Choice(PERMS),
              help="Permission on groups not listed [the broker's default: DENY].")
@click.option("--white-address", metavar="PATTERN",
              help="Addresses that need no signature: 192.168.1.*, 10.0.0.{1,2}, 10.0.0.1-100.")
@_where
@pass_ctx
def acl_update(ctx: Ctx, access_key: str, secret_key: str | None, admin: bool | None,
               topic_perms: list[str], group_perms: list[str], default_topic_perm: str | None,
               default_group_perm: str | None, white_address: str | None, cluster: str | None,
               broker_addr: str | None) -> None:
    """Create ACCESS_KEY's account, or change it: what is not given stays as each broker has
    it. Goes to every broker (masters and slaves), each writing its plain_acl.yml.

    \b
    Examples:
      rmqctl acl update app-orders --secret-key - --topic-perm Orders=PUB < sk.txt
      rmqctl acl update app-orders --secret-key - --group-perm GID_orders=SUB < sk.txt
      rmqctl acl update ops-admin --secret-key - --admin -c DefaultCluster < sk.txt
    """
    if len(access_key) <= KEY_MIN_LENGTH or any(c.isspace() for c in access_key):
        raise click.BadParameter(f"an access key is longer than {KEY_MIN_LENGTH} characters, "
                                 "without blanks", param_hint="ACCESS_KEY")
    given = {"secretKey": _secret(secret_key), "admin": admin,
             "defaultTopicPerm": default_topic_perm, "defaultGroupPerm": default_group_perm,
             "whiteRemoteAddress": white_address, "topicPerms": topic_perms,
             "groupPerms": group_perms}

    async def work(ns):
        admin_client = Admin(ns)
        targets = await _targets(admin_client, cluster, broker_addr, True)

        async def plan(name: str, addr: str) -> tuple[str, str, dict[str, Any]]:
            current = _find(await _accounts(admin_client, addr), access_key)
            account = _merge(current, {"accessKey": access_key, **given})
            if not account.get("secretKey"):
                raise click.UsageError(
                    f"{access_key} is a new account on {name}: give it --secret-key"
                    if current is None else f"{name} does not send {access_key}'s secret key "
                    "back, and a change needs it: give --secret-key")
            return name, addr, account
        planned = {name: (addr, account)
                   for name, addr, account in await ctx.each_broker(targets, plan)}

        async def apply(name: str, addr: str) -> dict[str, Any]:
            account = planned[name][1]
            await admin_client.acl_update(addr, account)
            return _row(name, addr, account, False)
        return await ctx.each_broker({n: a for n, (a, _) in planned.items()}, apply)
    emit_rows(ctx.run(work), ctx.output, COLUMNS)
    ctx.finish()


@acl.command("delete")
@click.argument("access_key")
@_where
@click.option("-y", "--yes", is_flag=True, help="Delete without asking.")
@pass_ctx
def acl_delete(ctx: Ctx, access_key: str, cluster: str | None, broker_addr: str | None,
               yes: bool) -> None:
    """Delete ACCESS_KEY's account from every broker that has it (masters and slaves);
    needs --yes (or a yes on a terminal). Exit code 3 when no broker has it.

    \b
    Example:
      rmqctl acl delete app-orders --yes
    """
    ctx.confirm(f"deleting ACL account {access_key} from "
                f"{broker_addr or (f'cluster {cluster}' if cluster else 'every broker')}", yes)

    async def work(ns):
        admin = Admin(ns)

        async def one(name: str, addr: str) -> dict[str, str] | None:
            accounts = await _accounts(admin, addr)
            if accounts is not None and _find(accounts, access_key) is None:
                return None
            await admin.acl_delete(addr, access_key)
            return {"broker": name, "addr": addr, "accessKey": access_key}
        return [r for r in await ctx.each_broker(
            await _targets(admin, cluster, broker_addr, True), one) if r]
    rows = ctx.run(work)
    if not rows and not ctx.broker_failures:
        raise NotFound(f"no ACL account {access_key}")
    emit_rows(rows, ctx.output, ["broker", "addr", "accessKey"])
    ctx.finish()


@acl.group("whitelist")
def acl_whitelist() -> None:
    """Global white addresses: clients from them need no account at all."""


@acl_whitelist.command("show")
@_where
@pass_ctx
def acl_whitelist_show(ctx: Ctx, cluster: str | None, broker_addr: str | None) -> None:
    """Each master's global white addresses."""
    async def work(ns):
        admin = Admin(ns)

        async def one(name: str, addr: str) -> list[dict[str, str]]:
            return [{"broker": name, "addr": addr, "globalWhiteAddr": a}
                    for a in (await admin.acl_config(addr))["globalWhiteAddrs"]]
        return await ctx.each_broker(await _targets(admin, cluster, broker_addr, False), one)
    emit_rows([row for rows in ctx.run(work) for row in rows], ctx.output,
              ["broker", "addr", "globalWhiteAddr"])
    ctx.finish()


@acl_whitelist.command("set")
@click.argument("patterns", nargs=-1, required=True, metavar="ADDR...")
@click.option("--acl-file", metavar="PATH",
              help="The broker's ACL file to write (mqadmin's -p) [default: plain_acl.yml].")
@_where
@pass_ctx
def acl_whitelist_set(ctx: Ctx, patterns: tuple[str, ...], acl_file: str | None,
                      cluster: str | None, broker_addr: str | None) -> None:
    """Replace the global white addresses of every broker (masters and slaves) with ADDR...
    (patterns as in plain_acl.yml: *, 10.10.103.*, 10.0.0.1-100; not {1,2}, whose comma the
    brokers take for a separator).

    \b
    Example:
      rmqctl acl whitelist set 10.10.103.* 192.168.0.*
    """
    addrs = [a.strip() for p in patterns for a in p.split(",") if a.strip()]
    if not addrs or any("{" in a or "}" in a for a in addrs):
        raise click.BadParameter("give patterns without {...}: the brokers split the list on "
                                 "commas (write a.b.c.{1,2} into plain_acl.yml instead)",
                                 param_hint="ADDR")

    async def work(ns):
        admin = Admin(ns)

        async def one(name: str, addr: str) -> dict[str, str]:
            await admin.acl_white_addrs(addr, addrs, acl_file)
            return {"broker": name, "addr": addr, "globalWhiteAddrs": ",".join(addrs)}
        return await ctx.each_broker(await _targets(admin, cluster, broker_addr, True), one)
    emit_rows(ctx.run(work), ctx.output, ["broker", "addr", "globalWhiteAddrs"])
    ctx.finish()


@acl.command("version")
@_where
@pass_ctx
def acl_version(ctx: Ctx, cluster: str | None, broker_addr: str | None) -> None:
    """Each master's ACL file and its version (a counter raised by every change, and when
    it changed), as `mqadmin clusterAclConfigVersion`: brokers of one version hold the
    same accounts when the same changes went to all."""
    async def work(ns):
        admin = Admin(ns)

        async def one(name: str, addr: str) -> list[dict[str, Any]]:
            info = await admin.acl_version(addr)
            files = fastjson.loads(info.get("allAclFileVersion") or "{}") or \
                {"": fastjson.loads(info.get("version") or "{}")}
            return [{"clusterName": info.get("clusterName"),
                     "brokerName": info.get("brokerName") or name,
                     "brokerAddr": info.get("brokerAddr") or addr, "aclFilePath": path,
                     "version": version.get("counter"),
                     "lastUpdateTime": version.get("timestamp")}
                    for path, version in sorted(files.items())]
        return await ctx.each_broker(await _targets(admin, cluster, broker_addr, False), one)
    emit_rows([row for rows in ctx.run(work) for row in rows], ctx.output,
              ["clusterName", "brokerName", "brokerAddr", "aclFilePath", "version",
               "lastUpdateTime"])
    ctx.finish()

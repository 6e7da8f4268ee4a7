"""Completion of live names, one mechanism for bash, zsh and fish (click's completion
protocol, the scripts `rmqctl completion SHELL` prints) and for the interactive shell, which
asks click the same questions.

Which parameter completes what is decided here, by parameter name, for the whole command
tree (attach_completers), so command modules declare plain options and arguments:
topics after -t/--topic and for TOPIC arguments (and NAME under `topic`), groups after
-g/--group (and NAME under `group`), broker names for BROKER, addresses for -b/--broker,
cluster names for -c/--cluster, file names for STORE/PATH/FILE, and positions for --from and
--to. The names come from the name server (topics; clusters and brokers) and the brokers
(subscription groups), with a short timeout; an unreachable cluster completes nothing and
says nothing, since a completion must never break typing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from datetime import date

import click
from click.shell_completion import CompletionItem

from rmqnode.net import fastjson
from rmqnode.net.client import RemotingClient, RequestHook, SessionCredentials
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode, ResponseCode
from rmqctl.client.namesrv import NameServerClient

FETCH_TIMEOUT = 1.0  # per request; a whole fetch is cut at twice this
CACHE_SECONDS = 30.0
RETRY_PREFIX = "%RETRY%"

# Parameter name -> kind of name it takes. Arguments called NAME(S) take the kind of their
# command group (`topic status NAME`, `group progress NAME`).
_BY_PARAM = {
    "topic": "topic", "topics": "topic", "to_topic": "topic", "trace_topic": "topic",
    "group": "group", "groups": "group", "to_group": "group",
    "broker_ref": "broker", "broker": "broker", "broker_name": "broker",
    "broker_addr": "broker_addr",
    "cluster": "cluster",
    "store": "file", "path": "file", "file": "file", "to_file": "file", "from_file": "file",
}
_BY_GROUP = {"topic": "topic", "group": "group", "broker": "broker", "cluster": "cluster"}
_POSITION_OPTIONS = {"--from", "--to"}
NAME_KINDS = ("topic", "group", "broker", "broker_addr", "cluster")


class LiveName(click.types.StringParamType):
    """Text, completed with live names of one kind (or file names, or positions)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def shell_complete(self, ctx: click.Context, param: click.Parameter,
                       incomplete: str) -> list[CompletionItem]:
        if self.kind == "file":
            return [CompletionItem(incomplete, type="file")]
        if self.kind == "position":
            values = positions()
        else:
            names = ctx.find_object(ClusterNames)
            if names is None:  # a shell's completion request: one fetch, from the root's -n
                params = ctx.find_root().params
                access_key, secret_key = params.get("access_key"), params.get("secret_key")
                names = ClusterNames(str(params.get("namesrv_addr") or ""),
                                     SessionCredentials(access_key, secret_key)
                                     if access_key and secret_key else None)
            values = names.names(self.kind)
            if not incomplete.startswith("%"):  # %RETRY%/%DLQ% topics when asked for
                values = [v for v in values if not v.startswith("%")]
        return [CompletionItem(v) for v in values if v.startswith(incomplete)]


def positions() -> list[str]:
    """Examples of --from/--to values (rmqctl/positions.py reads the full language)."""
    return ["first", "last", "@-15m", "@-1h", "@-1d", f"@{date.today().isoformat()}", "-10"]


def _kind(param: click.Parameter, group: str | None) -> str | None:
    if type(param.type) is not click.types.StringParamType:  # choices, numbers, paths, done
        return None
    if isinstance(param, click.Argument) and param.name in ("name", "names") and group:
        return _BY_GROUP.get(group)
    kind = _BY_PARAM.get(param.name or "")
    if kind is None and isinstance(param, click.Option) \
            and _POSITION_OPTIONS & set(param.opts):
        kind = "position"
    return kind


def attach_completers(command: click.Command, group: str | None = None) -> None:
    """Give every text parameter under `command` the completion its name calls for.
    Idempotent: a parameter already completed is left as it is."""
    for param in command.params:
        kind = _kind(param, group)
        if kind is not None:
            param.type = LiveName(kind)
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            attach_completers(sub, name if isinstance(sub, click.Group) else group)


class ClusterNames:
    """Topic, group, broker and cluster names of one cluster, cached for CACHE_SECONDS;
    empty when it cannot be reached. The shell refreshes between prompts (completion runs
    inside prompt-toolkit's event loop and only reads the cache); elsewhere names() fetches
    what it needs when stale."""

    def __init__(self, namesrv_addr: str, signer: RequestHook | None = None) -> None:
        self.namesrv_addr = namesrv_addr
        self.signer = signer  # an ACL account's keys: brokers refuse unsigned admin codes
        self._names: dict[str, list[str]] = {}
        self._fetched: dict[str, float] = {}  # kind -> when

    def refresh(self, kinds: Iterable[str] = NAME_KINDS) -> None:
        now = time.monotonic()
        stale = {k for k in kinds if now - self._fetched.get(k, -CACHE_SECONDS) >= CACHE_SECONDS}
        if not stale:
            return
        try:
            fetched = asyncio.run(asyncio.wait_for(self._fetch(stale), 2 * FETCH_TIMEOUT))
        except Exception:  # noqa: BLE001 - no names is the answer to any failure
            fetched = dict.fromkeys(stale, [])
        self._names.update(fetched)
        self._fetched.update(dict.fromkeys(fetched, now))

    def names(self, kind: str) -> list[str]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.refresh({kind})
        return self._names.get(kind, [])

    async def _fetch(self, kinds: set[str]) -> dict[str, list[str]]:
        remoting = RemotingClient(connect_timeout=FETCH_TIMEOUT, hook=self.signer)
        try:
            ns = NameServerClient(remoting, self.namesrv_addr, FETCH_TIMEOUT)
            topics, info = await asyncio.gather(
                ns.topic_list() if kinds & {"topic", "group"} else _nothing(),
                ns.cluster_info() if kinds - {"topic"} else _nothing(),
                return_exceptions=True)
            topics = topics if isinstance(topics, list) else []
            info = info if isinstance(info, dict) else {}
            brokers = info.get("brokerAddrTable", {})
            addrs = sorted({addr for broker in brokers.values()
                            for addr in broker.get("brokerAddrs", {}).values()})
            groups = {t[len(RETRY_PREFIX):] for t in topics if t.startswith(RETRY_PREFIX)}
            if "group" in kinds:
                for table in await asyncio.gather(
                        *(_subscription_groups(remoting, a) for a in addrs),
                        return_exceptions=True):
                    if isinstance(table, list):
                        groups.update(table)
            found = {"topic": sorted(topics), "group": sorted(groups),
                     "broker": sorted(brokers), "broker_addr": addrs,
                     "cluster": sorted(info.get("clusterAddrTable", {}))}
            return {kind: found[kind] for kind in kinds}
        finally:
            await remoting.close()


async def _nothing() -> None:
    return None


async def _subscription_groups(remoting: RemotingClient, addr: str) -> list[str]:
    """The groups a broker knows (GET_ALL_SUBSCRIPTIONGROUP_CONFIG), created or seen."""
    resp = await remoting.invoke(
        addr, RemotingCommand.request(RequestCode.GET_ALL_SUBSCRIPTIONGROUP_CONFIG),
        FETCH_TIMEOUT)
    if resp.code != ResponseCode.SUCCESS or not resp.body:
        return []
    return [str(g) for g in fastjson.loads(resp.body).get("subscriptionGroupTable", {})]

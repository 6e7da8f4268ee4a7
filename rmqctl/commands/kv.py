"""`rmqctl kv ...`: the name servers' namespaced key/value config."""

from __future__ import annotations

import click

from rmqctl.context import Ctx, NotFound, pass_ctx
from rmqctl.output import emit_object, emit_rows


@click.group()
def kv() -> None:
    """Name server KV config (e.g. ORDER_TOPIC_CONFIG)."""


@kv.command("get")
@click.argument("namespace")
@click.argument("key", required=False)
@pass_ctx
def kv_get(ctx: Ctx, namespace: str, key: str | None) -> None:
    """Print KEY's value, or every key of NAMESPACE. Exit code 3 when the key does not exist.

    \b
    Examples:
      rmqctl kv get ORDER_TOPIC_CONFIG OrderTopic
      rmqctl kv get ORDER_TOPIC_CONFIG
    """
    if key is None:
        table = ctx.run(lambda ns: ns.kv_list(namespace))
        emit_rows([{"key": k, "value": v} for k, v in sorted(table.items())], ctx.output,
                  ["key", "value"])
        return
    value = ctx.run(lambda ns: ns.kv_get(namespace, key))
    if value is None:
        raise NotFound(f"no config item {namespace}/{key}")
    if ctx.output in ("json", "ndjson"):
        emit_object({"namespace": namespace, "key": key, "value": value}, ctx.output)
    else:
        click.echo(value)


@kv.command("put")
@click.argument("namespace")
@click.argument("key")
@click.argument("value")
@pass_ctx
def kv_put(ctx: Ctx, namespace: str, key: str, value: str) -> None:
    """Set KEY to VALUE on every name server.

    \b
    Example:
      rmqctl kv put ORDER_TOPIC_CONFIG OrderTopic 'broker-a:4;broker-b:4'
    """
    ctx.run(lambda ns: ns.kv_put(namespace, key, value))


@kv.command("delete")
@click.argument("namespace")
@click.argument("key")
@pass_ctx
def kv_delete(ctx: Ctx, namespace: str, key: str) -> None:
    """Remove KEY from every name server."""
    ctx.run(lambda ns: ns.kv_delete(namespace, key))

"""`rmqctl context`: keep a cluster's global option values under a name (rmqctl/contexts.py
says where and how they are stored, and how they rank against options and variables)."""

from __future__ import annotations

import sys
from typing import Any

import click

from rmqctl import contexts
from rmqctl.client.namesrv import parse_namesrv_addr
from rmqctl.context import Ctx, pass_ctx
from rmqctl.output import emit_object, emit_rows


@click.group("context")
def context() -> None:
    """Named sets of global options (-n, -o, --timeout, ACL keys, ...): `rmqctl --context
    NAME ...` or RMQ_CONTEXT=NAME uses one, `context use NAME` makes one current. An option
    on the command line wins over its environment variable (NAMESRV_ADDR, RMQ_ACCESS_KEY,
    RMQ_SECRET_KEY), which wins over the context. Kept in $XDG_CONFIG_HOME/rmqctl/
    contexts.json (~/.config/rmqctl), mode 0600; secret keys are never printed.

    \b
    Examples:
      rmqctl context add prod -n '10.0.0.5:9876;10.0.0.6:9876' --timeout 10
      rmqctl context use prod
      rmqctl --context staging topic list
      RMQ_CONTEXT=staging rmqctl group progress billing
    """


def settings_from(root: click.Command) -> None:
    """Give `context add` one option per value option of `root` (what main() declares, so
    an option added there can be kept in a context at once)."""
    for param in root.params:
        if isinstance(param, click.Option) and param.expose_value and not param.is_flag \
                and not param.is_eager and param.name not in {p.name for p in add.params}:
            add.params.append(click.Option(
                [*param.opts, param.name], type=param.type, metavar=param.metavar,
                help=param.help))


@context.command("add")
@click.argument("name")
@click.option("--replace", is_flag=True, help="Replace a context of that name.")
def add(name: str, replace: bool, **settings: Any) -> None:
    """Keep the options given under NAME. Needs -n; a secret key given as '-' is read from
    stdin (so it stays out of ps and shell history)."""
    contexts.check_name(name)
    settings = {k: v for k, v in settings.items() if v is not None}
    if not settings.get("namesrv_addr"):
        raise click.UsageError("a context needs -n/--namesrv")
    parse_namesrv_addr(settings["namesrv_addr"])
    for key, value in settings.items():
        if contexts.is_secret(key) and value == "-":
            settings[key] = sys.stdin.readline().rstrip("\r\n")
    if ("access_key" in settings) != ("secret_key" in settings):
        raise click.UsageError("an ACL account needs both --access-key and --secret-key")
    store = contexts.load()
    if name in store.contexts and not replace:
        raise click.UsageError(f"context {name!r} exists: --replace to overwrite it")
    store.contexts[name] = settings
    contexts.save(store)
    click.echo(f"context {name!r} saved; use it with: rmqctl context use {name}")


@context.command("list")
@pass_ctx
def list_(ctx: Ctx) -> None:
    """Every context; * marks the current one. Secrets show masked."""
    store = contexts.load()
    rows = [{"name": name, "current": "*" if name == store.current else "",
             **contexts.masked(settings)}
            for name, settings in sorted(store.contexts.items())]
    columns = ["name", "current"] + sorted({k for r in rows for k in r} - {"name", "current"})
    emit_rows(rows, ctx.output, columns)


@context.command("use")
@click.argument("name", required=False)
@click.option("--none", "clear", is_flag=True, help="No current context.")
def use(name: str | None, clear: bool) -> None:
    """Make NAME the current context: commands without --context use it."""
    if (name is None) == (not clear):
        raise click.UsageError("give a context NAME, or --none")
    store = contexts.load()
    if name is not None:
        store.get(name)
    store.current = name
    contexts.save(store)
    click.echo(f"current context: {name}" if name else "no current context")


@context.command("remove")
@click.argument("name")
def remove(name: str) -> None:
    """Forget context NAME (and stop using it if it is current)."""
    store = contexts.load()
    store.get(name)
    del store.contexts[name]
    if store.current == name:
        store.current = None
    contexts.save(store)
    click.echo(f"context {name!r} removed")


@context.command("show")
@click.argument("name", required=False)
@pass_ctx
def show(ctx: Ctx, name: str | None) -> None:
    """What this command line uses: each global option's value and where it comes from
    (command line, environment, context, default); with NAME, that context as stored."""
    if name is not None:
        emit_object({"name": name, **contexts.masked(contexts.load().get(name))}, ctx.output)
        return
    root = click.get_current_context().find_root()
    chosen, source = root.meta.get(contexts.META_KEY, (None, None))
    how = {None: "current", click.core.ParameterSource.COMMANDLINE: "--context",
           click.core.ParameterSource.ENVIRONMENT: contexts.CONTEXT_ENV}.get(source, "current")
    values: dict[str, Any] = {"context": f"{chosen} ({how})" if chosen else "none"}
    sources: dict[str, str] = {}
    for param in root.command.params:
        if not isinstance(param, click.Option) or param.is_eager or not param.name:
            continue
        value = root.params.get(param.name)
        origin = root.get_parameter_source(param.name)
        where = {click.core.ParameterSource.COMMANDLINE: "command line",
                 click.core.ParameterSource.ENVIRONMENT: f"${param.envvar}",
                 click.core.ParameterSource.DEFAULT_MAP: f"context {chosen}"}.get(
                     origin, "default")
        shown = contexts.masked({param.name: value})[param.name]
        values[param.name] = f"{shown} ({where})" if ctx.output == "table" else shown
        sources[param.name] = where
    if ctx.output != "table":
        values["context"], values["sources"] = chosen, sources
    emit_object(values, ctx.output)

"""`rmqctl`: RocketMQ's command line for operators, against rmqnode or Java RocketMQ."""

from __future__ import annotations

import sys

import click

from rmqctl.commands.acl import acl
from rmqctl.commands.bench import bench
from rmqctl.commands.broker import broker
from rmqctl.commands.cluster import cluster
from rmqctl.commands.completion import completion
from rmqctl.commands.context import context, settings_from
from rmqctl.commands.dlq import dlq
from rmqctl.commands.examples import examples
from rmqctl.commands.group import group
from rmqctl.commands.kv import kv
from rmqctl.commands.message import message
from rmqctl.commands.messages import consume, tail
from rmqctl.commands.send import send
from rmqctl.commands.offset import offset
from rmqctl.commands.request import request
from rmqctl.commands.store import dump_consumequeue, inspect_commitlog
from rmqctl.commands.forensics import store
from rmqctl.commands.topic import topic
from rmqctl.context import (DEFAULT_NAMESRV, Ctx, exit_status, fail, install_signal_handlers,
                            quiet_stdout)
from rmqctl.contexts import CONTEXT_ENV, apply_context
from rmqctl.global_options import hoist_global_options
from rmqctl.live_names import attach_completers
from rmqctl.output import COLORS, FORMATS
from rmqctl.shell import run_shell


class Rmqctl(click.Group):
    """The command tree, with one place where every failure becomes its exit code, global
    options are found wherever they are written, and parameters learn their completions."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(self, ctx, args))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:  # wherever it was added: every lookup passes here
            attach_completers(command, cmd_name if isinstance(command, click.Group) else None)
        return command

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.UsageError, SystemExit):
            raise
        except BrokenPipeError:
            quiet_stdout()
            sys.exit(0)
        except BaseException as exc:  # noqa: BLE001 - no traceback reaches the user
            code, line = exit_status(exc)
            if line is None:
                sys.exit(code)
            fail(line, code, exc, isinstance(ctx.obj, Ctx) and ctx.obj.debug)


@click.group(cls=Rmqctl, context_settings={"help_option_names": ["-h", "--help"]},
             invoke_without_command=True)
@click.option("-n", "--namesrv", "namesrv_addr", default=DEFAULT_NAMESRV, show_default=True,
              envvar="NAMESRV_ADDR", show_envvar=True,
              help="Name server address(es), 'host:port;host:port'.")
@click.option("-o", "--output", type=click.Choice(FORMATS), default="table", show_default=True,
              help="table for people; json, ndjson, csv or raw (bodies as stored, or first "
                   "column) for programs.")
@click.option("--timeout", type=float, default=5.0, show_default=True,
              help="Seconds to wait for each answer.")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.option("--color", type=click.Choice(COLORS), default="auto", show_default=True,
              help="Colour table headers and status columns: auto when stdout is a terminal "
                   "and NO_COLOR is unset. Never json, ndjson, csv or raw.")
@click.option("--access-key", envvar="RMQ_ACCESS_KEY", show_envvar=True, metavar="AK",
              help="ACL account that signs every request.")
@click.option("--secret-key", envvar="RMQ_SECRET_KEY", show_envvar=True, metavar="SK",
              help="The account's secret key. On the command line it shows in ps and shell "
                   "history: prefer the variable or a context.")
@click.option("--context", "context_name", envvar=CONTEXT_ENV, show_envvar=True,
              is_eager=True, expose_value=False, callback=apply_context, metavar="NAME",
              help="Take option values from context NAME (rmqctl context --help); an option "
                   "given, or its environment variable, still wins.")
@click.version_option(package_name="rmqnode", prog_name="rmqctl",
                      message="%(prog)s %(version)s (RocketMQ 4.9.8 remoting protocol and store)")
@click.pass_context
def main(click_ctx: click.Context, namesrv_addr: str, output: str, timeout: float,
         debug: bool, access_key: str | None, secret_key: str | None, color: str) -> None:
    """Operate RocketMQ clusters: topics, groups, messages, offsets, stores.

    \b
    Examples:
      rmqctl cluster list
      rmqctl topic route TopicTest
      rmqctl topic list -o json

    \b
    Global options go before or after the command (`rmqctl topic list -o json`); where a
    command has an option of the same name (`tail -n`, `bench produce -n`), the command's
    own wins after it.

    \b
    Exit codes:
      0    success
      1    error: a broker refused, a connection or a file failed
      2    misuse: bad options, addresses or ids; a change that needs --yes
      3    not found: no such topic, group, message, broker or config item
      4    timeout: no answer within --timeout
      130  interrupted (SIGINT); 143 terminated (SIGTERM)
    """
    install_signal_handlers()
    click_ctx.obj = Ctx(namesrv_addr, output, timeout, debug, access_key=access_key,
                        secret_key=secret_key, color=color)
    if click_ctx.invoked_subcommand is None:
        if sys.stdin.isatty() and sys.stdout.isatty():
            run_shell(main, click_ctx.obj)
            return
        click.echo(click_ctx.get_help())
        click_ctx.exit(2)


@main.command()
@click.pass_obj
def shell(obj: Ctx) -> None:
    """Interactive shell: the same commands, with history and completion of commands,
    options, topics, groups, brokers and paths (also what `rmqctl` alone starts on a
    terminal); `help` there says how it works."""
    run_shell(main, obj)


main.add_command(cluster)
main.add_command(topic)
main.add_command(kv)
main.add_command(dlq)
main.add_command(broker)
main.add_command(group)
main.add_command(message)
main.add_command(offset)
main.add_command(send)
main.add_command(consume)
main.add_command(tail)
main.add_command(request)
main.add_command(inspect_commitlog)
main.add_command(dump_consumequeue)
main.add_command(store)
main.add_command(bench)
main.add_command(completion)
main.add_command(acl)
main.add_command(context)
main.add_command(examples)
settings_from(main)


if __name__ == "__main__":
    main()

"""`rmqctl shell`: the same commands without the `rmqctl` prefix, with history, completion of
commands, options, live names and paths, and a toolbar saying where it is connected.

A command runs exactly as on the command line (the same click definitions); its failures and
Ctrl-C end the command, never the shell.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable
from pathlib import Path

import click
from click.shell_completion import ShellComplete
from prompt_toolkit import PromptSession
from prompt_toolkit.completion import Completer, Completion, PathCompleter
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, InMemoryHistory

from rmqctl.context import MASK, Ctx
from rmqctl.live_names import ClusterNames

HISTORY = Path(os.environ.get("RMQCTL_HISTORY", Path.home() / ".rmqctl_history"))
# A --secret-key value as typed: quoted, or up to the next blank.
SECRET_VALUE = re.compile(r"""(--secret-key(?:=|\s+))("[^"]*"|'[^']*'|\S+)""")


class MaskedFileHistory(FileHistory):
    """The history file, with the value of every --secret-key masked: a secret typed in the
    shell (the session's own, or one `acl update` sets) never reaches the disk."""

    def store_string(self, string: str) -> None:
        super().store_string(SECRET_VALUE.sub(lambda m: m.group(1) + MASK, string))


class CommandCompleter(Completer):
    """Asks click's completion what fits where the cursor is, as bash does through
    `rmqctl completion`: commands, options, choices, live names (from the shell's cache,
    rmqctl/live_names.py), and paths, which prompt-toolkit lists."""

    def __init__(self, root: click.Group, names: ClusterNames) -> None:
        self.root = root
        self.names = names

    def get_completions(self, document: Document, complete_event) -> Iterable[Completion]:
        text = document.text_before_cursor
        try:
            words = shlex.split(text)
        except ValueError:
            return
        incomplete = words.pop() if words and not text[-1:].isspace() else ""
        try:
            items = ShellComplete(self.root, {"obj": self.names}, "rmqctl", "") \
                .get_completions(words, incomplete)
        except Exception:  # noqa: BLE001 - completion must never break typing
            return
        for item in items:
            if item.type in ("file", "dir"):
                paths = PathCompleter(only_directories=item.type == "dir", expanduser=True)
                yield from paths.get_completions(Document(incomplete), complete_event)
            else:
                yield Completion(item.value, start_position=-len(incomplete),
                                 display_meta=item.help or None)


def global_args(root: click.Command, ctx: Ctx) -> list[str]:
    """The root options the shell started with, as arguments for each command it runs (in
    process: not in ps, nor in the history). Every root option Ctx keeps under its own name
    is passed, so an option added to main() reaches the shell's commands too."""
    args: list[str] = []
    for param in root.params:
        if not isinstance(param, click.Option) or param.is_eager \
                or not hasattr(ctx, param.name or ""):
            continue
        value = getattr(ctx, param.name or "")
        if param.is_flag:
            flags = param.opts if value else param.secondary_opts
            args += flags[-1:]
        elif value is not None:
            args += [max(param.opts, key=len), str(value)]
    return args


def shell_help(root: click.Group, ctx: Ctx) -> str:
    """The shell's own syntax, then the commands."""
    formatter = click.HelpFormatter()
    root.format_commands(click.Context(root, info_name="rmqctl"), formatter)
    return f"""\
Type commands as on the command line, without 'rmqctl':
  topic list -o json         run a command; global options go before or after it
  help                       this text
  help COMMAND               that command's help (also: COMMAND --help)
  exit, quit, Ctrl-D         leave the shell
  Ctrl-C                     stop the running command, or drop the line being typed
  Tab                        complete commands, options, topics, groups, brokers, paths
  Up, Down, Ctrl-R           history, kept in {HISTORY} ($RMQCTL_HISTORY)
Quote words with spaces as in sh: send Orders 'two words'. Commands use the name server
{ctx.namesrv_addr} (-n or --context when starting the shell; `context show` says more).

{formatter.getvalue()}"""


def run_shell(root: click.Group, ctx: Ctx, session: PromptSession | None = None) -> None:
    names = ClusterNames(ctx.namesrv_addr, ctx.credentials())
    if session is None:
        try:
            history = MaskedFileHistory(str(HISTORY))
        except OSError:
            history = InMemoryHistory()
        session = PromptSession(history=history)
    def toolbar() -> str:
        cluster = ",".join(names.names("cluster")) or "unreachable"
        return f" name server {ctx.namesrv_addr}   cluster {cluster}   output {ctx.output}" \
               "   Tab completes, Ctrl-D leaves"

    click.echo("rmqctl shell: commands as on the command line, without 'rmqctl'; "
               "'help' lists them.")
    while True:
        names.refresh()
        try:
            line = session.prompt("rmq> ", completer=CommandCompleter(root, names),
                                  bottom_toolbar=toolbar, complete_while_typing=False)
        except KeyboardInterrupt:
            continue
        except EOFError:
            return
        line = line.strip()
        if not line:
            continue
        if line in ("exit", "quit"):
            return
        try:
            args = shlex.split(line)
        except ValueError as exc:
            click.echo(f"rmqctl: {exc}", err=True)
            continue
        if args[0] == "help":
            if len(args) == 1:
                click.echo(shell_help(root, ctx), nl=False)
                continue
            args = [*args[1:], "--help"]
        if args and args[0] == "shell":
            click.echo("rmqctl: already in the shell", err=True)
            continue
        try:
            root.main(args=global_args(root, ctx) + args, prog_name="rmqctl",
                      standalone_mode=False)
        except click.exceptions.Abort:
            click.echo("")
        except click.ClickException as exc:
            exc.show()
        except SystemExit:
            pass  # the command failed and said why; the shell goes on
        except KeyboardInterrupt:
            click.echo("")

"""`rmqctl shell`: the same commands without the `rmqctl` prefix, with history, completion of
commands, options, topics and groups, and a toolbar saying where it is connected.

A command runs exactly as on the command line (the same click definitions); its failures and
Ctrl-C end the command, never the shell.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import time
from collections.abc import Iterable
from pathlib import Path

import click
from prompt_toolkit import PromptSession
from prompt_toolkit.completion import Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, InMemoryHistory

from rmqnode.net.client import RemotingClient
from rmqctl.client.namesrv import NameServerClient
from rmqctl.context import MASK, Ctx

HISTORY = Path(os.environ.get("RMQCTL_HISTORY", Path.home() / ".rmqctl_history"))
TOPIC_ARGS = {"topic", "name"}
TOPIC_OPTIONS = {"-t", "--topic"}
GROUP_OPTIONS = {"-g", "--group"}
CACHE_SECONDS = 30.0
# A --secret-key value as typed: quoted, or up to the next blank.
SECRET_VALUE = re.compile(r"""(--secret-key(?:=|\s+))("[^"]*"|'[^']*'|\S+)""")


class MaskedFileHistory(FileHistory):
    """The history file, with the value of every --secret-key masked: a secret typed in the
    shell (the session's own, or one `acl update` sets) never reaches the disk."""

    def store_string(self, string: str) -> None:
        super().store_string(SECRET_VALUE.sub(lambda m: m.group(1) + MASK, string))


class ClusterNames:
    """Topic and group names from the name server, cached; empty when it cannot be reached."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self._topics: list[str] = []
        self.clusters: list[str] = []
        self._fetched = 0.0

    def refresh(self) -> None:
        """Fetch again when stale. Called between prompts: completion itself runs inside
        prompt-toolkit's event loop and only reads the cache."""
        if time.monotonic() - self._fetched > CACHE_SECONDS:
            self._fetched = time.monotonic()
            try:
                self._topics, self.clusters = asyncio.run(self._fetch())
            except Exception:  # noqa: BLE001 - completion must never break typing
                self._topics, self.clusters = [], []

    def topics(self) -> list[str]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.refresh()  # called outside any loop (e.g. from a script): fetch if stale
        return self._topics

    def groups(self) -> list[str]:
        return [t[len("%RETRY%"):] for t in self.topics() if t.startswith("%RETRY%")]

    async def _fetch(self) -> tuple[list[str], list[str]]:
        remoting = RemotingClient(connect_timeout=1.0)
        try:
            ns = NameServerClient(remoting, self.ctx.namesrv_addr, 1.0)
            topics = sorted(await ns.topic_list())
            clusters = sorted((await ns.cluster_info()).get("clusterAddrTable", {}))
            return topics, clusters
        finally:
            await remoting.close()


class CommandCompleter(Completer):
    """Completes from the click tree: commands, subcommands, options, and topic or group
    names where a command takes one."""

    def __init__(self, root: click.Group, names: ClusterNames) -> None:
        self.root = root
        self.names = names

    def get_completions(self, document: Document, complete_event) -> Iterable[Completion]:
        text = document.text_before_cursor
        try:
            words = shlex.split(text)
        except ValueError:
            return
        if text.endswith(" ") or not words:
            words.append("")
        current, before = words[-1], words[:-1]
        command: click.Command = self.root
        ctx = click.Context(self.root)
        positional = 0
        for word in before:
            if isinstance(command, click.Group) and not word.startswith("-"):
                sub = command.get_command(ctx, word)
                if sub is not None:
                    command = sub
                    continue
            if not word.startswith("-"):
                positional += 1
        choices: list[str] = []
        previous = before[-1] if before else ""
        if previous in TOPIC_OPTIONS:
            choices = self.names.topics()
        elif previous in GROUP_OPTIONS:
            choices = self.names.groups()
        elif current.startswith("-"):
            choices = [opt for p in command.params if isinstance(p, click.Option)
                       for opt in p.opts + p.secondary_opts]
        elif isinstance(command, click.Group):
            choices = command.list_commands(ctx)
        else:
            args = [p for p in command.params if isinstance(p, click.Argument)]
            positional -= sum(1 for w in before if w in TOPIC_OPTIONS | GROUP_OPTIONS)
            if 0 <= positional < len(args) and args[positional].name in TOPIC_ARGS:
                choices = self.names.topics()
        for choice in choices:
            if choice.startswith(current):
                yield Completion(choice, start_position=-len(current))


def run_shell(root: click.Group, ctx: Ctx, session: PromptSession | None = None) -> None:
    names = ClusterNames(ctx)
    if session is None:
        try:
            history = MaskedFileHistory(str(HISTORY))
        except OSError:
            history = InMemoryHistory()
        session = PromptSession(history=history)
    def toolbar() -> str:
        cluster = ",".join(names.clusters) or "unreachable"
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
        if line == "help":
            line = "--help"
        try:
            args = shlex.split(line)
        except ValueError as exc:
            click.echo(f"rmqctl: {exc}", err=True)
            continue
        if args and args[0] == "shell":
            click.echo("rmqctl: already in the shell", err=True)
            continue
        global_args = ["-n", ctx.namesrv_addr, "-o", ctx.output,
                       "--timeout", str(ctx.timeout)] + (["--debug"] if ctx.debug else [])
        for option, value in (("--access-key", ctx.access_key), ("--secret-key", ctx.secret_key)):
            if value:  # in-process arguments: not in ps, nor in the history
                global_args += [option, value]
        try:
            root.main(args=global_args + args, prog_name="rmqctl", standalone_mode=False)
        except click.exceptions.Abort:
            click.echo("")
        except click.ClickException as exc:
            exc.show()
        except SystemExit:
            pass  # the command failed and said why; the shell goes on
        except KeyboardInterrupt:
            click.echo("")

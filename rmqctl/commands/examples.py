"""`rmqctl examples [COMMAND...]`: example sheets per command family (`nats cheat`).

The sheets hold no copy of their own: they are the "Examples:" blocks of the commands' --help,
collected by walking the command tree, so a sheet is always what --help says. Only the
recipes below, which join several commands and belong to no single --help, are written
here; tests/test_rmqctl_hw_examples.py parses every rmqctl invocation of every sheet
against the command tree, so neither can go stale.
"""

from __future__ import annotations

import re
import sys
import textwrap
from dataclasses import dataclass

import click

from rmqctl.context import Ctx, NotFound, pass_ctx
from rmqctl.output import color_wanted, emit_rows

RECIPES_SHEET = "recipes"
# Commands on the sheet of another family: the offline store readers beside `store`.
SHEET_OF = {"inspect-commitlog": "store", "dump-consumequeue": "store"}
_EXAMPLES_HEADING = re.compile(r"\s*Examples?:\s*")


@dataclass(frozen=True)
class Recipe:
    title: str
    sheets: tuple[str, ...]  # the families whose sheets show it too
    lines: tuple[str, ...]


RECIPES = (
    Recipe("copy the TagA messages of a topic into another, through jq", ("consume", "send"), (
        "rmqctl -o ndjson consume Orders -g copy -e | jq -c 'select(.tags == \"TagA\")' "
        "| rmqctl send OrdersTagA --json-input",
    )),
    Recipe("rewrite JSON bodies and send them on, one message per line", ("consume", "send"), (
        "rmqctl -o raw consume Events -g upgrade -e | jq -c '.version = 2' "
        "| rmqctl send EventsV2",
    )),
    Recipe("replay an hour for a group, then put its offsets back", ("offset", "consume"), (
        "rmqctl offset export -g billing -f billing-before.json",
        "rmqctl offset reset -g billing -t Orders --to-timestamp 1764410400000 --dry-run",
        "rmqctl offset reset -g billing -t Orders --to-timestamp 1764410400000 --yes",
        "rmqctl offset reset --to-file billing-before.json --yes   # once the replay is done",
    )),
    Recipe("move a group's offsets to a new group name", ("offset", "group"), (
        "rmqctl offset export -g billing -f billing.json",
        "rmqctl offset reset --to-file billing.json -g billing-v2 --yes",
    )),
    Recipe("check a stopped node's store before restarting it", ("store",), (
        "rmqctl store check ~/.rmqnode/store && rmqnode   # starts only on a clean store",
        "rmqctl -o json store check ~/.rmqnode/store | jq .recovery   # else: what it would cut",
        "cp -a ~/.rmqnode/store /backup/store-$(date +%F)   # keep a copy before it does",
    )),
    Recipe("a group's total lag, for a monitoring script", ("group",), (
        "rmqctl -o json group progress billing | jq '[.[].diff] | add'",
    )),
    Recipe("judge the broker against this machine", ("bench",), (
        "rmqctl -o json bench disk --dir ~/.rmqnode > disk.json   # fdatasync p99: .sync",
        "rmqctl -o json bench net > net.json                     # round trip p99: .rtt",
        "rmqctl bench produce --mode sync -c 1 -n 10000   # p99 vs rtt + fdatasync (SYNC_FLUSH)",
    )),
    Recipe("a report from another cluster's context, as CSV", ("context", "topic"), (
        "RMQ_CONTEXT=prod rmqctl -o csv topic stats --active > prod-topics.csv",
    )),
)


@dataclass
class Entry:
    """Lines of one sheet: a command's Examples block, or a recipe."""

    sheet: str
    command: str | None  # the command path whose --help holds the lines
    recipe: str | None   # or the recipe's title
    lines: list[str]

    @property
    def heading(self) -> str:
        return f"rmqctl {self.command}" if self.command else f"recipe: {self.recipe}"


def examples_of(help_text: str | None) -> list[str]:
    """The lines of the "Examples:" (or "Example:") block of a help text, dedented."""
    lines = (help_text or "").splitlines()
    for at, line in enumerate(lines):
        if _EXAMPLES_HEADING.fullmatch(line):
            block = []
            for text in lines[at + 1:]:
                if not text.strip():
                    break
                block.append(text)
            return textwrap.dedent("\n".join(block)).splitlines()
    return []


def _walk(command: click.Command, path: tuple[str, ...]):
    yield path, command
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            sub = command.commands[name]
            if not sub.hidden:
                yield from _walk(sub, (*path, name))


def sheets(root: click.Command) -> dict[str, list[Entry]]:
    """Every sheet, by name: each family's commands' examples (a line once per sheet), then
    the recipes that involve it; and the recipes sheet."""
    out: dict[str, list[Entry]] = {}
    seen: dict[str, set[str]] = {}
    for path, command in _walk(root, ()):
        if not path:
            continue  # the root's examples are its commands', on their sheets
        sheet = SHEET_OF.get(path[0], path[0])
        known = seen.setdefault(sheet, set())
        fresh = [line for line in examples_of(command.help) if line not in known]
        known.update(fresh)
        if fresh:
            out.setdefault(sheet, []).append(Entry(sheet, " ".join(path), None, fresh))
    for sheet, entries in out.items():  # the family's own commands before its neighbours
        entries.sort(key=lambda e: not (e.command + " ").startswith(sheet + " "))
    for recipe in RECIPES:
        for sheet in (*recipe.sheets, RECIPES_SHEET):
            out.setdefault(sheet, []).append(Entry(sheet, None, recipe.title, list(recipe.lines)))
    return dict(sorted(out.items()))


def select(all_sheets: dict[str, list[Entry]], words: tuple[str, ...]) -> list[Entry]:
    """The entries asked for: a whole sheet (by its name or one of its commands'), or the
    examples of one command path (`topic create`)."""
    sheet = SHEET_OF.get(words[0], words[0])
    entries = all_sheets.get(sheet)
    if entries is None:
        raise NotFound(f"no example sheet {words[0]!r}: one of "
                       f"{', '.join(all_sheets)} (rmqctl examples lists them)")
    asked = " ".join(words)
    if sheet == asked:
        return entries
    chosen = [e for e in entries if e.command and (e.command + " ").startswith(asked + " ")]
    if not chosen:
        raise NotFound(f"no examples for {asked!r} on the {sheet} sheet "
                       f"(rmqctl examples {sheet} shows it)")
    return chosen


def _sources(entries: list[Entry]) -> str:
    """Where a sheet's lines come from: its commands, and how many recipes."""
    recipes = sum(1 for e in entries if e.recipe)
    return ", ".join([e.command for e in entries if e.command]
                     + ([f"{recipes} recipe{'s' if recipes > 1 else ''}"] if recipes else []))


def print_sheet(entries: list[Entry]) -> None:
    """A sheet as shell text: each heading a comment, headings bold on a colour terminal."""
    bold = color_wanted(sys.stdout)
    blocks = []
    for entry in entries:
        heading = f"# {entry.heading}"
        blocks.append("\n".join([click.style(heading, bold=True) if bold else heading,
                                 *entry.lines]))
    click.echo("\n\n".join(blocks), color=bold)  # click strips styles off a terminal


def _complete_sheet(click_ctx: click.Context, param: click.Parameter, incomplete: str
                    ) -> list[str]:
    """Sheet names for the first word (Tab in bash, zsh, fish and the shell)."""
    if click_ctx.params.get("command"):
        return []
    return [name for name in sheets(click_ctx.find_root().command) if name.startswith(incomplete)]


@click.command("examples")
@click.argument("command", nargs=-1, shell_complete=_complete_sheet)
@click.pass_context
@pass_ctx
def examples(ctx: Ctx, click_ctx: click.Context, command: tuple[str, ...]) -> None:
    """Example sheets: what each command family's --help shows under "Examples:", gathered
    on one page, with recipes that combine commands (pipelines through jq, saving offsets
    before a replay, checking a store before a restart). Without COMMAND, the list of sheets.
    A sheet is shell text; `-o json`, `ndjson` or `csv` give a row per example line.

    \b
    Examples:
      rmqctl examples
      rmqctl examples offset
      rmqctl examples topic create
      rmqctl -o json examples recipes | jq -r '.[].example'
    """
    all_sheets = sheets(click_ctx.find_root().command)
    if not command:
        emit_rows([{"sheet": name, "lines": sum(len(e.lines) for e in entries),
                    "from": _sources(entries)} for name, entries in all_sheets.items()],
                  ctx.output)
        return
    entries = select(all_sheets, command)
    if ctx.output in ("table", "raw"):
        print_sheet(entries)
    else:
        emit_rows([{"sheet": e.sheet, "command": e.command, "recipe": e.recipe,
                    "example": line} for e in entries for line in e.lines], ctx.output)

"""Generate shell completions (completions/) and man pages (man/) from the click definitions
of rmqctl and rmqnode, so they cannot drift from the commands.

    python completions/generate.py           # write them
    python completions/generate.py --check   # exit 1 if any is stale (the tests run this)
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rmqctl.cli import main as rmqctl_main
from rmqctl.commands.completion import completion_script
from rmqnode.cli import main as rmqnode_main

REPO = Path(__file__).resolve().parent.parent
PROGRAMS = {"rmqctl": rmqctl_main, "rmqnode": rmqnode_main}
SHELLS = {"bash": "bash", "zsh": "zsh", "fish": "fish"}


def completion(prog: str, shell: str) -> str:
    return completion_script(PROGRAMS[prog], prog, shell)


def _roff(text: str) -> str:
    lines = []
    for line in text.replace("\\", "\\\\").splitlines():
        line = line.replace("\b", "").rstrip()
        lines.append(("\\&" + line) if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def _options(cmd: click.Command, ctx: click.Context) -> list[str]:
    out = []
    for param in cmd.get_params(ctx):
        record = param.get_help_record(ctx)
        if record:
            out += [".TP", f"\\fB{_roff(record[0])}\\fR", _roff(record[1])]
    return out


def _commands(group: click.Group, ctx: click.Context, prefix: str) -> list[str]:
    out = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        sub = click.Context(cmd, info_name=name, parent=ctx)
        out += [".SS", f"{prefix} {name} {' '.join(cmd.collect_usage_pieces(sub))}".strip(),
                _roff(cmd.help or "")]
        options = _options(cmd, sub)
        if options:
            out += [".PP", "Options:"] + options
        if isinstance(cmd, click.Group):
            out += _commands(cmd, sub, f"{prefix} {name}")
    return out


def man_page(prog: str) -> str:
    cmd = PROGRAMS[prog]
    ctx = click.Context(cmd, info_name=prog)
    summary = (cmd.help or "").strip().splitlines()[0]
    lines = [f'.TH {prog.upper()} 1 "" "rmqnode" "User Commands"', ".SH NAME",
             f"{prog} \\- {_roff(summary)}", ".SH SYNOPSIS",
             f"\\fB{prog}\\fR {' '.join(cmd.collect_usage_pieces(ctx))}", ".SH DESCRIPTION",
             _roff(cmd.help or ""), ".SH OPTIONS"] + _options(cmd, ctx)
    if isinstance(cmd, click.Group):
        lines += [".SH COMMANDS"] + _commands(cmd, ctx, prog)
    lines += [".SH ENVIRONMENT", ".TP", "\\fBNAMESRV_ADDR\\fR",
              "Name server address(es) when none is given on the command line.",
              ".SH SEE ALSO", "rmqnode(1), rmqctl(1)"]
    return "\n".join(lines) + "\n"


def outputs() -> dict[Path, str]:
    files = {}
    for prog in PROGRAMS:
        for shell in SHELLS:
            files[REPO / "completions" / f"{prog}.{shell}"] = completion(prog, shell)
        files[REPO / "man" / f"{prog}.1"] = man_page(prog)
    return files


def main() -> None:
    check = "--check" in sys.argv[1:]
    stale = []
    for path, text in outputs().items():
        current = path.read_text() if path.exists() else None
        if current != text:
            stale.append(path)
            if not check:
                path.write_text(text)
    if check and stale:
        names = ", ".join(str(p.relative_to(REPO)) for p in stale)
        print(f"stale: {names}; run: python completions/generate.py", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

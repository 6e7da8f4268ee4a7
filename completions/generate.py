"""Generate shell completions (completions/) and man pages (man/) from the click definitions
of rmqctl and rmqnode, so they cannot drift from the commands.

Each completion file has the name its shell loads it by, so `pip install .` puts them where
the shells look (pyproject.toml's data-files): bash-completion loads `rmqctl.bash` for
rmqctl, zsh autoloads `_rmqctl` from its fpath, fish reads `rmqctl.fish`.

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
# Shell -> the completion file's name for a program.
SCRIPT_NAMES = {"bash": "{prog}.bash", "zsh": "_{prog}", "fish": "{prog}.fish"}
# Variables the programs read besides their options' own (those come from the options).
ENVIRONMENT = {
    "rmqnode": {"NAMESRV_ADDR": "Name server address(es) the broker registers with when none "
                                "is configured.",
                "RMQNODE_HOME": "Where the store and config files go (~/.rmqnode).",
                "RMQNODE_LOOP": "asyncio to run on the standard event loop, not uvloop."},
    "rmqctl": {"RMQCTL_HISTORY": "The interactive shell's history file (~/.rmqctl_history).",
               "XDG_CONFIG_HOME": "Contexts are kept in $XDG_CONFIG_HOME/rmqctl/contexts.json "
                                  "(~/.config/rmqctl/contexts.json)."},
}


def script_path(prog: str, shell: str) -> Path:
    return REPO / "completions" / SCRIPT_NAMES[shell].format(prog=prog)


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
    lines += [".SH ENVIRONMENT"]
    for name, text in sorted(_environment(cmd, prog).items()):
        lines += [".TP", f"\\fB{name}\\fR", _roff(text)]
    lines += [".SH SEE ALSO", "rmqnode(1), rmqctl(1)"]
    return "\n".join(lines) + "\n"


def _environment(cmd: click.Command, prog: str) -> dict[str, str]:
    """Each variable an option reads (its help says what for), and the program's others."""
    out = dict(ENVIRONMENT.get(prog, {}))
    for param in cmd.params:
        envvars = [param.envvar] if isinstance(param.envvar, str) else param.envvar or []
        for name in envvars:
            out[name] = f"As {max(param.opts, key=len)}: {param.help or ''}".strip()
    return out


def outputs() -> dict[Path, str]:
    files = {}
    for prog in PROGRAMS:
        for shell in SCRIPT_NAMES:
            files[script_path(prog, shell)] = completion(prog, shell)
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

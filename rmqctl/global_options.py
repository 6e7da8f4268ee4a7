"""Global options anywhere on the line: `rmqctl topic list -o json` is `rmqctl -o json topic
list`. People add `-o json` or `-n` at the end of a command they just ran; kcat and rpk take
them there too.

The root group's options (whatever main() declares, so an option added there works at once)
found after the command path are moved in front of it before click parses the line. A
command's own option of the same spelling wins: `tail -n 5` is tail's line count and `bench
produce -n` its message count, so there the name server goes before the command. Values of a
command's own options are never taken for global options (`--format -o` stays the format),
and nothing after `--` moves.
"""

from __future__ import annotations

import click


def _takes_value(param: click.Parameter) -> int:
    """How many words follow the option (0 for flags)."""
    if not isinstance(param, click.Option) or param.is_flag or param.count:
        return 0
    return param.nargs


def _spellings(command: click.Command, ctx: click.Context) -> dict[str, int]:
    """Each option spelling of `command` (help too) -> the number of words it takes."""
    out = {}
    for param in command.get_params(ctx):
        if isinstance(param, click.Option):
            for opt in param.opts + param.secondary_opts:
                out[opt] = _takes_value(param)
    return out


def _split(word: str, spellings: dict[str, int]) -> tuple[str, bool] | None:
    """The option spelling `word` starts with, and whether its value is attached
    (`--output=json`, `-ojson`); None when `word` is not one of `spellings`."""
    if word in spellings:
        return word, False
    if word.startswith("--") and "=" in word:
        name = word.split("=", 1)[0]
        return (name, True) if spellings.get(name) else None
    short = word[:2]
    if len(word) > 2 and not word.startswith("--") and spellings.get(short):
        return short, True
    return None


def hoist_global_options(root: click.Group, ctx: click.Context, args: list[str]) -> list[str]:
    """`args` with the root's options that follow the command path moved in front of it."""
    roots = _spellings(root, ctx)
    roots = {k: v for k, v in roots.items() if k not in ctx.help_option_names}
    command: click.Command = root
    own = roots
    front: list[str] = []
    rest: list[str] = []
    path_at = None  # where the command path starts in `rest`: the moved options go there
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            rest += args[i:]
            break
        found = _split(word, own)
        if command is not root and found is None:
            found = _split(word, roots)
            if found is not None and found[0] not in own:
                width = 1 if found[1] else 1 + roots[found[0]]
                if i + width > len(args):
                    if not ctx.resilient_parsing:
                        raise click.BadOptionUsage(
                            found[0], f"Option '{found[0]}' requires an argument.", ctx)
                    # Its value is being completed: the root's options alone, this one
                    # last, so click's completion finds a root option waiting for a value.
                    return rest[:path_at] + front + args[i:]
                front += args[i:i + width]
                i += width
                continue
            found = None
        if found is not None:
            width = 1 if found[1] else 1 + own[found[0]]
            rest += args[i:i + width]
            i += width
            continue
        if path_at is None and not word.startswith("-"):
            path_at = len(rest)
        rest.append(word)
        i += 1
        if isinstance(command, click.Group) and not word.startswith("-"):
            sub = command.get_command(ctx, word)
            if sub is None:  # an unknown command: click says so with the line as given
                rest += args[i:]
                break
            command = sub
            own = _spellings(sub, ctx)
    if path_at is None:
        return rest
    # After the root's own options, so the one written last still wins, as click does.
    return rest[:path_at] + front + rest[path_at:]

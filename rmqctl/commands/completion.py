"""`rmqctl completion SHELL`: the completion script for a shell, from the command tree itself,
so an installed rmqctl can set up completion without the repository's completions/ folder."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")


def completion_script(cli: click.Command, prog: str, shell: str) -> str:
    """Click's completion script for `prog` in `shell` (the completions/ files are these)."""
    return get_completion_class(shell)(cli, {}, prog, f"_{prog.upper()}_COMPLETE").source()


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(click_ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL; source it, or install it where the shell looks.
    It completes commands and options, and live topic and group names from the name server.

    \b
    Examples:
      eval "$(rmqctl completion bash)"
      rmqctl completion zsh > "${fpath[1]}/_rmqctl"
      rmqctl completion fish > ~/.config/fish/completions/rmqctl.fish
    """
    click.echo(completion_script(click_ctx.find_root().command, "rmqctl", shell), nl=False)

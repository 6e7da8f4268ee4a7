"""Contexts: named sets of global option values (a name server, an output format, a timeout,
ACL keys), so `rmqctl --context prod ...` (or RMQ_CONTEXT=prod, or a current context chosen
with `rmqctl context use`) replaces retyping them.

They live in one JSON file in the user's config dir ($XDG_CONFIG_HOME/rmqctl/contexts.json,
~/.config/rmqctl by default), keyed by the option names of main():

    {"current": "prod",
     "contexts": {"prod": {"namesrv_addr": "10.0.0.5:9876", "output": "json",
                           "secret_key": "..."}}}

The file may hold a secret key: it is written whole to a new file of mode 0600 beside it and
renamed over it (a crash leaves the old file or the new one, never half of one), in a
directory of mode 0700.

A context's values are click's default_map for the root command: an option on the command line
wins, then its environment variable (NAMESRV_ADDR, RMQ_ACCESS_KEY, ...), then the context,
then the built-in default. Any option main() declares can be kept in a context.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from rmqnode.atomicfile import write_atomic
from rmqctl.context import EXIT_ERROR, MASK, NotFound

FILE_NAME = "contexts.json"
CONTEXT_ENV = "RMQ_CONTEXT"
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Values under these names are never printed.
_SECRET_WORDS = ("secret", "password", "token")
# Where `context show` learns which context is in force (click_ctx.meta).
META_KEY = "rmqctl.context"


class ContextFileError(click.ClickException):
    """The contexts file cannot be read or written (exit code 1)."""

    exit_code = EXIT_ERROR


@dataclass
class Contexts:
    current: str | None = None
    contexts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def get(self, name: str) -> dict[str, Any]:
        if name not in self.contexts:
            raise NotFound(f"no context named {name!r} (see: rmqctl context list)")
        return self.contexts[name]


def config_path() -> Path:
    return Path(click.get_app_dir("rmqctl")) / FILE_NAME


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise click.BadParameter(f"{name!r}: a context name is 1 to 64 of A-Z a-z 0-9 _ . -")
    return name


def is_secret(key: str) -> bool:
    return any(word in key.lower() for word in _SECRET_WORDS)


def masked(settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` fit to print: secret values replaced by a mask."""
    return {k: (MASK if is_secret(k) and v else v) for k, v in settings.items()}


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None


def load(path: Path | None = None) -> Contexts:
    """The contexts file (none yet: no contexts). A file that is not ours is an error
    naming it, never a traceback and never silently ignored (it may say which cluster)."""
    path = path or config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Contexts()
    except (OSError, UnicodeError) as exc:
        raise ContextFileError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ContextFileError(f"{path}: not valid JSON ({exc}); fix or remove it") from None
    if not isinstance(data, dict):
        raise ContextFileError(f"{path}: not a contexts file (an object expected)")
    current, contexts = data.get("current"), data.get("contexts", {})
    if not (current is None or isinstance(current, str)) or not isinstance(contexts, dict) \
            or not all(isinstance(v, dict) and all(_scalar(x) for x in v.values())
                       for v in contexts.values()):
        raise ContextFileError(f"{path}: not a contexts file (see: rmqctl context --help)")
    return Contexts(current, contexts)


def save(store: Contexts, path: Path | None = None) -> None:
    """Write the whole file atomically with mode 0600 (it may hold a secret key)."""
    path = path or config_path()
    text = json.dumps({"current": store.current, "contexts": store.contexts}, indent=2,
                      sort_keys=True) + "\n"
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(path, text.encode("utf-8"), keep_bak=False, mode=0o600)
    except OSError as exc:
        raise ContextFileError(f"{exc.filename or path}: {exc.strerror or exc}") from None


def apply_context(click_ctx: click.Context, param: click.Parameter, name: str | None) -> None:
    """Callback of the eager --context option: the chosen context's values become the root
    command's defaults before its other options are read (so they rank below the command
    line and environment variables). Without --context or RMQ_CONTEXT, the current one."""
    source = click_ctx.get_parameter_source(param.name) if param.name else None
    store = load()
    if name is None:
        name = store.current
        source = None
    settings = store.get(name) if name is not None else {}
    click_ctx.meta[META_KEY] = (name, source)
    if settings:
        click_ctx.default_map = {**(click_ctx.default_map or {}), **settings}

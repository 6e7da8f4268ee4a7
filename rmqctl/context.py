"""What every command shares: options, the client connections, and how failures end the process.

Exit codes: 0 success, 1 failure (broker, message or file error), 2 usage error. Failures are
one line on stderr; `--debug` adds the traceback.
"""

from __future__ import annotations

import asyncio
import os
import sys
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import click

from rmqnode.errors import ConnectionLost, RemotingError, RemotingTimeout
from rmqnode.net.client import RemotingClient
from rmqctl.client.namesrv import NameServerClient

T = TypeVar("T")

DEFAULT_NAMESRV = "127.0.0.1:9876"


@dataclass
class Ctx:
    namesrv_addr: str
    output: str
    timeout: float
    debug: bool

    def run(self, work: Callable[[NameServerClient], Awaitable[T]]) -> T:
        """Run one command's async work with fresh connections; turn failures into exit codes."""
        async def main() -> T:
            remoting = RemotingClient()
            try:
                return await work(NameServerClient(remoting, self.namesrv_addr, self.timeout))
            finally:
                await remoting.close()

        try:
            return asyncio.run(main())
        except ValueError as exc:
            self.fail(str(exc), 2, exc)
        except RemotingError as exc:
            self.fail(f"{exc}", 1, exc)
        except (ConnectionLost, RemotingTimeout) as exc:
            self.fail(str(exc), 1, exc)
        except KeyboardInterrupt:
            sys.exit(130)
        except click.ClickException as exc:  # a command's own failure, with its exit code
            self.fail(exc.format_message(), exc.exit_code, exc)

    def fail(self, message: str, code: int = 1, exc: BaseException | None = None):
        if self.debug and exc is not None:
            traceback.print_exception(exc)
        # Java remarks append a FAQ link on a second line; the first line is the message.
        click.echo(f"rmqctl: {message.splitlines()[0] if message else 'failed'}", err=True)
        sys.exit(code)


def default_namesrv() -> str:
    return os.environ.get("NAMESRV_ADDR") or DEFAULT_NAMESRV


pass_ctx = click.make_pass_decorator(Ctx)

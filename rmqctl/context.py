"""What every command shares: options, the client connections, and how failures end the process.

Exit codes, the same for every command:

\b
  0    success
  1    error: a broker or name server refused, a connection failed, a file could not be read
  2    misuse: a bad option, argument, address or id; a change that needs --yes
  3    not found: no such topic, group, message, broker or config item
  4    timeout: no answer within --timeout
  130  interrupted (SIGINT, Ctrl-C); 143 terminated (SIGTERM)

A failure is one line on stderr (`--debug` adds the traceback); a command that asks several
brokers prints what the reachable ones answered and one line per broker that failed. Writing
into a closed pipe (`rmqctl ... | head`) ends the command quietly with 0, as Unix filters do.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NoReturn, TypeVar

import click

from rmqnode.errors import ConnectionLost, RemotingError, RemotingTimeout
from rmqnode.net.client import RemotingClient, SessionCredentials
from rmqnode.net.codes import ResponseCode, request_name
from rmqctl.client.namesrv import NameServerClient

T = TypeVar("T")

DEFAULT_NAMESRV = "127.0.0.1:9876"

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_TIMEOUT = 4
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

# Answers meaning "there is no such thing" rather than "something went wrong".
NOT_FOUND_CODES = {ResponseCode.TOPIC_NOT_EXIST, ResponseCode.QUERY_NOT_FOUND,
                   ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST,
                   ResponseCode.SUBSCRIPTION_NOT_EXIST}


# Secrets this process holds (its own secret key, one it sets with `acl update`): no line it
# prints shows them, whatever a peer echoes back (Java's ACL remarks quote a refused secret).
_SECRETS: set[str] = set()
MASK = "****"

# A broker's ACL refusal, as Java's remoting layer words it: the exception, its message and
# where it was thrown (RemotingHelper.exceptionSimpleDesc).
_ACL_REFUSAL = re.compile(r"(?:[\w.$]+\.)?AclException: (.*?)(?:, [\w.$<>]+\([^()]*\))?$")


def acl_refusal(remark: str | None) -> str | None:
    """A broker's ACL refusal as one line for people: the AclException's message (with the
    name of a request code it gives), without Java's class and source line; None when the
    remark is no refusal."""
    line = _first_line(remark)
    found = _ACL_REFUSAL.search(line)
    if found is None:
        return None
    message = re.sub(r"request code=(\d+)",
                     lambda m: f"request code={m[1]} ({request_name(int(m[1]))})", found[1])
    return f"{line[:found.start()]}access denied by ACL: {message}"


def hide(secret: str) -> str:
    """Remember `secret`, so that every line rmqctl prints has it masked; returns it."""
    if secret:
        _SECRETS.add(secret)
    return secret


def redact(text: str) -> str:
    """`text` with every secret this process holds masked."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


class NotFound(click.ClickException):
    """The topic, group, message or item asked for does not exist (exit code 3)."""

    exit_code = EXIT_NOT_FOUND


class Terminated(BaseException):
    """SIGTERM arrived (exit code 143)."""


def _terminate(signum, frame) -> NoReturn:
    raise Terminated()


def install_signal_handlers() -> None:
    """Ctrl-C and SIGTERM stop rmqctl even when its parent started it with them ignored
    (Python keeps an inherited SIG_IGN for SIGINT; nohup, some CI runners and `&` in
    non-interactive shells ignore it)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)


def exit_status(exc: BaseException) -> tuple[int, str | None]:
    """The exit code for a failure and its one line (None: nothing to say)."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_SIGINT, None
    if isinstance(exc, Terminated):
        return EXIT_SIGTERM, None
    if isinstance(exc, click.ClickException):
        return exc.exit_code, exc.format_message()
    if isinstance(exc, UnicodeError):
        return EXIT_USAGE, f"not valid UTF-8: {exc.reason} (give text, or pipe bytes into stdin)"
    if isinstance(exc, ValueError):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, RemotingError):
        refusal = acl_refusal(exc.remark)
        if refusal is not None:
            return EXIT_ERROR, f"{exc.name} ({exc.code}): {refusal}"
        return (EXIT_NOT_FOUND if exc.code in NOT_FOUND_CODES else EXIT_ERROR), str(exc)
    if isinstance(exc, (RemotingTimeout, asyncio.TimeoutError)):
        return EXIT_TIMEOUT, str(exc) or "timed out"
    if isinstance(exc, ConnectionLost):
        return EXIT_ERROR, str(exc)
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return EXIT_ERROR, f"{where}{exc.strerror or exc}"
    return EXIT_ERROR, f"internal error: {type(exc).__name__}: {exc} (--debug shows where)"


def quiet_stdout() -> None:
    """The reader of stdout went away: send what is still buffered nowhere, so the exit does
    not complain about the broken pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


@dataclass
class Ctx:
    namesrv_addr: str
    output: str
    timeout: float
    debug: bool
    broker_failures: list[BaseException] = field(default_factory=list)
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    color: str = "auto"  # --color: auto, always, never (rmqctl.output.color_wanted)

    def credentials(self) -> SessionCredentials | None:
        """The ACL account every request is signed with, if one is given."""
        if self.access_key is None and self.secret_key is None:
            return None
        if not self.access_key or not self.secret_key:
            raise click.UsageError("an ACL account needs both --access-key and --secret-key "
                                   "(or RMQ_ACCESS_KEY and RMQ_SECRET_KEY)")
        return SessionCredentials(self.access_key, hide(self.secret_key))

    def run(self, work: Callable[[NameServerClient], Awaitable[T]]) -> T:
        """Run one command's async work with fresh connections. Failures propagate to the
        command group, which turns them into one line and an exit code (exit_status)."""
        terminated = False
        signer = self.credentials()

        async def main() -> T:
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(self._background_failure)
            task = asyncio.current_task()

            def on_sigterm() -> None:
                nonlocal terminated
                terminated = True
                task.cancel()
            loop.add_signal_handler(signal.SIGTERM, on_sigterm)
            remoting = RemotingClient(hook=signer)
            try:
                return await work(NameServerClient(remoting, self.namesrv_addr, self.timeout))
            finally:
                await remoting.close()

        try:
            return asyncio.run(main())
        except asyncio.CancelledError:
            if terminated:
                raise Terminated() from None
            raise
        finally:
            install_signal_handlers()  # the loop put SIGTERM back to the default on closing

    def _background_failure(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        """A task that failed after its command stopped waiting for it (a read cut short by
        Ctrl-C, a connection that closed under it): the command has already said what
        happened, so only --debug shows it."""
        if self.debug:
            loop.default_exception_handler(context)

    async def each_broker(self, brokers: dict[str, str],
                          call: Callable[[str, str], Awaitable[T]]) -> list[T]:
        """`call(name, addr)` on every broker, in name order; what the reachable ones answer.
        A broker that fails is said on stderr at once (one line) and remembered, so the
        command prints the others' results and then exits non-zero (finish)."""
        results = []
        for name, addr in sorted(brokers.items()):
            try:
                results.append(await call(name, addr))
            except (RemotingError, ConnectionLost, RemotingTimeout,
                    click.ClickException) as exc:
                if len(brokers) == 1:
                    raise
                self.broker_failures.append(exc)
                _, line = exit_status(exc)
                click.echo(redact(f"rmqctl: {name} ({addr}): {_first_line(line)}"), err=True)
        return results

    def confirm(self, question: str, yes: bool, hint: str = "to do it",
                preview: Callable[[], None] | None = None) -> None:
        """Go on with a destructive change only with --yes, or a yes typed on a terminal;
        otherwise exit with the misuse code, nothing changed. With a `preview` (printed on
        stdout just before the question), the question goes to stdout too, beside it;
        else to stderr. `question` ends without punctuation; `hint` ends the refusal."""
        if yes:
            return
        asked_on = sys.stdout if preview is not None else sys.stderr
        if not (sys.stdin.isatty() and asked_on.isatty()):
            self.fail(f"{question}: give --yes {hint}", EXIT_USAGE)
        if preview is not None:
            preview()
        # Read from stdin by hand: click.confirm's input() writes its prompt to stderr when
        # Python has no readline module, away from a preview on stdout.
        click.echo(f"{question}? [y/N] ", nl=False, err=preview is None)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            self.fail("nothing changed", EXIT_USAGE)

    def finish(self) -> None:
        """Exit with the first failed broker's code, once the other brokers' results are out."""
        if self.broker_failures:
            sys.exit(exit_status(self.broker_failures[0])[0])

    def fail(self, message: str, code: int = EXIT_ERROR, exc: BaseException | None = None
             ) -> NoReturn:
        fail(message, code, exc, self.debug)


def fail(message: str, code: int = EXIT_ERROR, exc: BaseException | None = None,
         debug: bool = False) -> NoReturn:
    """One line on stderr (the traceback first with --debug), then exit with `code`."""
    if debug and exc is not None:
        click.echo(redact("".join(traceback.format_exception(exc))), err=True, nl=False)
    click.echo(redact(f"rmqctl: {_first_line(message) or 'failed'}"), err=True)
    sys.exit(code)


def _first_line(message: str | None) -> str:
    """Java remarks append a FAQ link on a second line; the first line is the message."""
    return message.splitlines()[0] if message else ""


pass_ctx = click.make_pass_decorator(Ctx)

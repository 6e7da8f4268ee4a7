"""A connection's read in C (csrc/serve.c) against its pure-Python original (net/connection.py's
serve_read): two connections, each with its own peer and handlers, are fed the same bytes in
the same pieces, one through each implementation; what they write, what their handlers and
around_read see, how each read ends and what is left held must come out the same. The
streams mix every way a request can be answered with responses, oneways, frames split
anywhere, bad frames, handlers that raise, and an around_read that swallows an error."""

from __future__ import annotations

import asyncio
import logging
import random

from rmqnode import speedups
from rmqnode.errors import RemotingError
from rmqnode.net.codec import FLAG_RESPONSE, RemotingCommand, encode
from rmqnode.net.connection import Connection, Dispatcher, serve_read  # noqa: F401
from twins import counted_fallbacks, outcome

FRAME, COMMAND, NOTHING, RAISES, AWAITED, REFUSED, INTERRUPTS, STRAY = range(1, 9)


class Interrupt(BaseException):
    """What a handler may raise that is not an Exception (as KeyboardInterrupt is not)."""


class Swallowed(BaseException):
    """Not an Exception either, and around_read swallows it."""


def served(fn, *args):
    """outcome(), which catches Exceptions, and Interrupt too."""
    try:
        return outcome(fn, *args)
    except Interrupt as exc:
        return "interrupted", type(exc), str(exc)


class Peer:
    """The socket's place: the writes, and whether it was closed."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name: str, default=None):
        return ("10.0.0.9", 4242) if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class Around:
    """A dispatcher's around_read that notes its uses; it swallows Swallowed."""

    def __init__(self, log: list) -> None:
        self.log = log

    def __enter__(self) -> None:
        self.log.append("enter")

    def __exit__(self, kind, exc, tb) -> bool:
        self.log.append(("exit", kind and kind.__name__, tb is not None))
        return kind is Swallowed


def handlers(log: list) -> dict:
    def handler(cmd: RemotingCommand, conn: Connection):
        log.append(("handled", cmd.code, cmd.opaque, conn._receiving))
        kind = cmd.code
        if kind == FRAME:
            return encode(cmd.response(fields={"n": cmd.opaque}))
        if kind == COMMAND:
            return cmd.response(remark="as a command")
        if kind == NOTHING:
            return None
        if kind == RAISES:
            raise ValueError(f"boom {cmd.opaque}")
        if kind == AWAITED:
            async def later():
                await asyncio.sleep(0)
                return cmd.response(remark="later")
            return later()
        if kind == REFUSED:
            raise RemotingError(17, "refused")
        if kind == INTERRUPTS:  # not an Exception: it leaves the read
            raise Interrupt("stop")
        raise Swallowed("by around_read")
    return {code: handler for code in range(FRAME, STRAY + 1)}


def connected(log: list, around=None) -> tuple[Connection, Peer]:
    """A connection to a Peer, its dispatcher's handlers noting into `log`; `around` its
    around_read (the default's when None). Inside a running loop."""
    dispatcher = Dispatcher()
    dispatcher.update(handlers(log))
    if around is not None:
        dispatcher.around_read = around
    conn, peer = Connection(dispatcher), Peer()
    conn.connection_made(peer)  # type: ignore[arg-type]
    return conn, peer


def stream(rng: random.Random, n: int) -> bytes:
    out = bytearray()
    for i in range(n):
        kind = rng.choice([FRAME] * 8 + [COMMAND, NOTHING, RAISES, AWAITED, REFUSED, 99,
                                         "response", "oneway"])
        if kind == "response":
            out += encode(RemotingCommand(0, opaque=rng.randrange(1, 6), flag=FLAG_RESPONSE))
        elif kind == "oneway":
            out += encode(RemotingCommand.request(FRAME, {"i": i}, b"x", oneway=True))
        else:
            cmd = RemotingCommand.request(kind, {"i": i}, bytes(rng.randrange(40)))
            cmd.opaque = i
            out += encode(cmd, rng.choice([0, 1]))
    return bytes(out)


def pieces(rng: random.Random, data: bytes) -> list:
    out, pos = [], 0
    while pos < len(data):
        step = rng.choice([1, 3, 17, 64, 200, 1000, len(data)])
        out.append(data[pos:pos + step])
        pos += step
    return out


def reads(seed: int) -> list:
    """What the socket gives, read by read: requests and responses in pieces of every size,
    sometimes an interrupting handler, a read that is not bytes, or a bad frame last."""
    rng = random.Random(seed)
    out = pieces(rng, stream(rng, rng.randrange(1, 40)))
    if seed % 5 == 1:
        cmd = RemotingCommand.request(INTERRUPTS, {}, b"")
        out.insert(rng.randrange(len(out) + 1), encode(cmd))
    if seed % 3 == 0:
        cmd = RemotingCommand.request(STRAY, {}, b"")
        out.insert(rng.randrange(len(out) + 1), encode(cmd))
    if seed % 7 == 2:
        out.insert(rng.randrange(len(out) + 1), bytearray(stream(rng, 2)))
    if seed % 4 == 3:
        out.append(rng.choice([b"\x00\x00\x00\x02xy", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x09" +
                               b"\x00\x00\x00\x05{bad}"]))
    return out


def serve(impl: str, seed: int, debug: bool = False) -> dict:
    fn = speedups.PURE["serve_read"] if impl == "pure" else speedups.NATIVE["serve_read"]

    async def go() -> dict:
        log: list = []
        conn, peer = connected(log, Around(log))
        waiting = {opaque: conn._loop.create_future() for opaque in range(1, 4)}
        conn.pending.update(waiting)
        ends = []
        for data in reads(seed):
            got = served(fn, conn, data)
            ends.append(got[:2] + (got[2][:60],) if got[0] != "returned" else got)
            ends.append((conn.buffered_input, conn.frame_started is not None,
                         conn.frame_started == conn.last_active, conn._out, conn._receiving,
                         peer.closed))
        for _ in range(5):
            await asyncio.sleep(0)
        answered = {k: (f.result().code if f.done() else None) for k, f in waiting.items()}
        return {"written": peer.written, "log": log, "ends": ends, "answered": answered,
                "pending": sorted(conn.pending)}

    logger = logging.getLogger("rmqnode.net")
    level = logger.level
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)
    try:
        return asyncio.run(go())
    finally:
        logger.setLevel(level)


def test_reads_are_served_the_same_in_c_and_python():
    with counted_fallbacks("serve_read") as fell:
        for seed in range(120):
            pure, native = serve("pure", seed), serve("native", seed)
            assert native == pure, seed
    kinds = [type(args[1]) for args in fell]
    assert kinds and all(kind is bytearray for kind in kinds)  # the rest was the C's


def test_the_read_a_debug_log_follows_is_the_originals():
    with counted_fallbacks("serve_read") as fell:
        assert serve("native", 3, debug=True) == serve("pure", 3, debug=True)
    assert len(fell) == len(reads(3))


def test_a_read_of_whole_requests_is_answered_in_one_write():
    def burst(impl: str) -> list:
        data = b"".join(encode(RemotingCommand.request(FRAME, {"i": i}, b"b")) for i in range(9))
        fn = speedups.PURE["serve_read"] if impl == "pure" else speedups.NATIVE["serve_read"]

        async def go() -> list:
            conn, peer = connected([])
            fn(conn, data)
            assert conn.decoder.pending == 0 and conn._out is None
            return peer.written
        return asyncio.run(go())

    written = burst("native")
    assert written == burst("pure") and len(written) == 1


def test_an_error_of_around_reads_exit_is_chained_to_the_reads():
    """An __exit__ that raises while a handler's Interrupt leaves the read: its error is the
    read's, with the Interrupt as its context, as a `with` statement chains them."""
    class Failing:
        def __enter__(self) -> None: ...

        def __exit__(self, kind, exc, tb) -> bool:
            raise ValueError(f"exit after {kind.__name__}")

    def read(impl: str):
        fn = speedups.PURE["serve_read"] if impl == "pure" else speedups.NATIVE["serve_read"]

        async def go():
            conn, peer = connected([], Failing())
            try:
                fn(conn, encode(RemotingCommand.request(FRAME, {}, b"")) +
                   encode(RemotingCommand.request(INTERRUPTS, {}, b"")))
            except ValueError as exc:
                return (str(exc), type(exc.__context__), exc.__traceback__ is not None,
                        conn._receiving, peer.written)
        return asyncio.run(go())

    got = read("native")
    assert got == read("pure") and got[:2] == ("exit after Interrupt", Interrupt)

"""One TCP connection speaking remoting, used alike by the server and the client.

Either side may send requests on a connection (the broker asks clients to rebalance or to
check a transaction), so every connection both answers requests through a `Dispatcher` and
matches responses to its own outstanding requests by opaque.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable
from pathlib import PurePath
from typing import Union

from rmqnode import log
from rmqnode.errors import ConnectionLost, FrameError, RemotingError, RemotingTimeout
from rmqnode.net.codec import (DEFAULT_MAX_FRAME, FLAG_ONEWAY, FLAG_RESPONSE, FrameDecoder,
                               RemotingCommand, encode)
from rmqnode.net.codes import ResponseCode, request_name
from rmqnode.speedups import accelerate, method
from rmqnode.validation import quote

_log = log.get("rmqnode.net")

# What answers a request: a response, or its whole frame already encoded, or nothing.
Answer = Union[RemotingCommand, bytes, None]
HandlerResult = Union[Answer, Awaitable[Answer]]
Handler = Callable[[RemotingCommand, "Connection"], HandlerResult]

# Opaques are process-wide and kept non-negative, as the C++ client does.
_opaques = itertools.count(1)

# How much of a crashed handler's exception message goes into the log line and the remark.
CRASH_MESSAGE_LIMIT = 200


# The connections holding answers until answers_together ends (None outside it).
_held: list[Connection] | None = None


class _AnswersTogether:
    """Late answers given inside (the waiters a flush round releases at once) go out in one
    write per connection when the outermost use ends, not one write each. One reusable
    object, nesting counted: a generator-based context manager cost a flush round 0.86 us
    where this costs 0.27."""

    __slots__ = ("depth",)

    def __init__(self) -> None:
        self.depth = 0

    def __enter__(self) -> None:
        global _held
        if not self.depth:
            _held = []
        self.depth += 1

    def __exit__(self, *exc: object) -> None:
        global _held
        self.depth -= 1
        if not self.depth:
            held, _held = _held, None
            for conn in held:  # type: ignore[union-attr]
                conn._flush_out()


answers_together = _AnswersTogether()


def next_opaque() -> int:
    return next(_opaques) & 0x7FFFFFFF


def _expire(fut: asyncio.Future, cmd: RemotingCommand, peer: str, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(RemotingTimeout(f"{request_name(cmd.code)} to {peer} got no answer "
                                          f"in {timeout:g} s"))


class Dispatcher:
    """A table of request code -> handler. Handlers may be plain functions or coroutines;
    one that returns None sends no answer now, and may answer later with Connection.reply
    (a send waiting for its flush: no task or future per request). An answer is a
    RemotingCommand or, where it is made on every request (a send's), its frame."""

    def __init__(self) -> None:
        self.handlers: dict[int, Handler] = {}
        # What each read's requests are handled inside, its answers written before it ends
        # (the broker's: storage.reput.ReputAfterRead); nothing by default.
        self.around_read: contextlib.AbstractContextManager = contextlib.nullcontext()

    def register(self, code: int, handler: Handler) -> None:
        self.handlers[code] = handler

    def update(self, table: dict[int, Handler]) -> None:
        self.handlers.update(table)


def raised_at(exc: BaseException) -> str:
    """`package/file.py:line` of the frame that raised `exc`: where to look, in one word."""
    tb = exc.__traceback__
    if tb is None:
        return "?"
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{'/'.join(PurePath(tb.tb_frame.f_code.co_filename).parts[-2:])}:{tb.tb_lineno}"


def serve_read(conn: Connection, data: bytes) -> None:
    """A read of a connection (its data_received): the frames it completes decoded, each
    request handled inside the dispatcher's around_read and each response matched, and the
    answers this read produced written in one write before anything else queued on the loop
    (the store's dispatch into consume queues and the index): a sender waits for its ack, no
    one waits for the dispatch. In C when built (csrc/serve.c), where a read costs no Python
    but the handlers'; this is its definition."""
    conn.last_active = time.monotonic()
    try:
        commands = conn.decoder.feed(data)
    except FrameError as exc:
        conn._bad_frame(exc)
        return
    with conn.dispatcher.around_read:
        conn._receiving = True
        try:
            debug = _log.debug_enabled
            for cmd in commands:
                if cmd.flag & FLAG_RESPONSE:
                    conn._on_response(cmd)
                else:
                    if debug:
                        _log.debug("request", peer=conn.peer, code=request_name(cmd.code),
                                   language=cmd.language, oneway=cmd.is_oneway)
                    conn._dispatch(cmd)
        finally:
            conn._receiving = False
            if conn._out is not None:
                conn._flush_out()
    pending = conn.decoder.pending
    if pending or conn.buffered_input:  # reads of whole frames skip the bookkeeping
        conn._track_input(pending, bool(commands))


serve_read = accelerate(serve_read, FrameError=FrameError, debug_on=_log.debug_check)


class Connection(asyncio.Protocol):
    """Frames in, frames out; requests dispatched, responses matched, oneways never answered.

    `on_input(conn, delta)` hears every change of the bytes held in an incomplete frame
    (`buffered_input`), and `frame_started` says since when that frame has been arriving:
    the server bounds both across its connections."""

    def __init__(self, dispatcher: Dispatcher, max_frame: int = DEFAULT_MAX_FRAME,
                 on_close: Callable[[Connection], None] | None = None,
                 on_input: Callable[[Connection, int], None] | None = None) -> None:
        self.dispatcher = dispatcher
        self.decoder = FrameDecoder(max_frame)
        self.on_close = on_close
        self.on_input = on_input
        self.buffered_input = 0
        self.frame_started: float | None = None
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.pending: dict[int, asyncio.Future[RemotingCommand]] = {}
        self._loop = asyncio.get_running_loop()
        self._out: list[bytes] | None = None  # frames written in this loop iteration
        self._receiving = False  # inside data_received: it flushes the answers itself
        self.closed = self._loop.create_future()
        self.last_active = time.monotonic()
        self.tasks: set[asyncio.Task] = set()
        self.attrs: dict[str, object] = {}  # what roles remember about the peer (client id, ...)

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = f"{peer[0]}:{peer[1]}"

    # asyncio calls data_received(data) with every read: serve_read, without a Python frame of
    # its own when compiled (speedups.method makes the compiled function bind as a method).
    data_received = method(serve_read)

    def _bad_frame(self, exc: FrameError) -> None:
        _log.warning("connection.bad_frame", peer=self.peer, error=exc)
        self.close()

    def _on_response(self, cmd: RemotingCommand) -> None:
        fut = self.pending.pop(cmd.opaque, None)
        if fut is not None and not fut.done():
            fut.set_result(cmd)

    def _track_input(self, pending: int, completed: bool) -> None:
        """Note the incomplete frame's size and since when it has been arriving (from the
        read that completed the frame before it), and tell `on_input` of the change."""
        if not pending:
            self.frame_started = None
        elif completed or self.frame_started is None:
            self.frame_started = self.last_active
        delta, self.buffered_input = pending - self.buffered_input, pending
        if delta and self.on_input is not None:
            self.on_input(self, delta)

    def _drop_input(self) -> None:
        self.decoder.reset()
        self._track_input(0, False)

    def connection_lost(self, exc: Exception | None) -> None:
        """Everything the connection started ends with it: requests waiting for the peer's
        answer fail, and handlers still running for the peer (held pulls and pops above all)
        are cancelled, so that nothing it sent outlives it."""
        self._drop_input()
        for task in list(self.tasks):
            task.cancel()
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionLost(f"connection to {self.peer} closed"))
        self.pending.clear()
        if not self.closed.done():
            self.closed.set_result(None)
        if self.on_close is not None:
            self.on_close(self)

    def pause_writing(self) -> None:
        # The peer is not reading our answers: stop reading its requests until it catches up.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # -- requests from the peer ----------------------------------------------------------------

    def _dispatch(self, cmd: RemotingCommand) -> None:
        """A request's handler called and its answer given; runs only inside serve_read
        (self._receiving), where the read's answers are gathered for one write."""
        handler = self.dispatcher.handlers.get(cmd.code)
        if handler is None:
            self.reply(cmd, cmd.response(ResponseCode.REQUEST_CODE_NOT_SUPPORTED,
                                         f" request type {cmd.code} not supported"))
            return
        try:
            result = handler(cmd, self)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a response
            self._failed(cmd, exc)
            return
        if type(result) is bytes:  # a send's answer, made as a frame: reply_frame's path
            if not cmd.flag & FLAG_ONEWAY:
                if self._out is None:
                    self._out = [result]
                else:
                    self._out.append(result)
        else:
            self._answer(cmd, result)

    def _failed(self, cmd: RemotingCommand, exc: Exception) -> None:
        self.reply(cmd, self._error_response(cmd, exc))

    def _answer(self, cmd: RemotingCommand, result: HandlerResult) -> None:
        """A handler's answer that is not a frame: a response, nothing, or one to await."""
        if not hasattr(result, "__await__"):
            self.reply(cmd, result)  # type: ignore[arg-type]
        else:
            task = asyncio.ensure_future(self._finish(cmd, result))  # type: ignore[arg-type]
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _finish(self, cmd: RemotingCommand, pending: Awaitable) -> None:
        try:
            response = await pending
        except asyncio.CancelledError:
            return
        except Exception as exc:  # noqa: BLE001
            response = self._error_response(cmd, exc)
        self.reply(cmd, response)

    def _error_response(self, cmd: RemotingCommand, exc: Exception) -> RemotingCommand:
        if isinstance(exc, RemotingError):
            _log.debug("request.failed", peer=self.peer, code=request_name(cmd.code),
                       response=exc.code, remark=exc.remark)
            return cmd.response(exc.code, exc.remark)
        # One line, no traceback: a peer that can crash a handler at will must not be able
        # to fill the log; the file and line say where to look.
        message = quote(str(exc), CRASH_MESSAGE_LIMIT)
        _log.error("request.crashed", peer=self.peer, code=request_name(cmd.code),
                   error=type(exc).__name__, message=message, at=raised_at(exc))
        return cmd.response(ResponseCode.SYSTEM_ERROR, f"{type(exc).__name__}: {message}")

    def reply(self, request: RemotingCommand, response: Answer) -> None:
        """Answer `request` (a handler that returned None answers this way, later). A
        response already a frame (bytes, the request's opaque in it) is sent as it is."""
        if response is None or request.flag & FLAG_ONEWAY:
            return
        if type(response) is not bytes:
            response.opaque = request.opaque
            response.flag |= FLAG_RESPONSE
            response = encode(response, request.serialize_type)
        self.reply_frame(response)

    def reply_frame(self, frame: bytes | None) -> None:
        """Send an answer's whole frame (nothing for None): one made ahead of its wait."""
        if frame is None:
            return
        if self._receiving or _held is not None:
            # data_received, or answers_together, writes them all when it is done
            if self._out is None:
                self._out = [frame]
                if not self._receiving:
                    _held.append(self)  # type: ignore[union-attr]
            else:
                self._out.append(frame)
        elif not self.is_open:
            return
        else:
            # A late answer (after its flush) goes out now: queued for the next loop
            # iteration it would wait behind the reads of every other connection.
            if self._out is not None:
                self._flush_out()
            self.transport.write(frame)  # type: ignore[union-attr]

    # -- sending -------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def write(self, cmd: RemotingCommand, serialize_type: int | None = None) -> None:
        """Queue a frame; the frames of one loop iteration go out in one socket write (the
        answers to a burst of pipelined requests cost one syscall, not one each)."""
        if not self.is_open:
            return
        frame = encode(cmd, serialize_type)
        if self._out is None:
            self._out = [frame]
            if not self._receiving:
                self._loop.call_soon(self._flush_out)
        else:
            self._out.append(frame)

    def _flush_out(self) -> None:
        out, self._out = self._out, None
        transport = self.transport
        if out and transport is not None and not transport.is_closing():  # is_open, inlined
            transport.write(out[0] if len(out) == 1 else b"".join(out))

    async def request(self, cmd: RemotingCommand, timeout: float = 3.0) -> RemotingCommand:
        """Send a request and wait for its response; raises RemotingTimeout / ConnectionLost."""
        if not self.is_open:
            raise ConnectionLost(f"connection to {self.peer} is closed")
        cmd.opaque = next_opaque()
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.pending[cmd.opaque] = fut
        self.write(cmd)
        # A timer instead of asyncio.wait_for: no extra task per request, and no 3.11
        # wait_for cancellation quirks.
        timer = loop.call_later(timeout, _expire, fut, cmd, self.peer, timeout)
        try:
            return await fut
        finally:
            timer.cancel()
            self.pending.pop(cmd.opaque, None)

    def oneway(self, cmd: RemotingCommand) -> None:
        if not self.is_open:
            raise ConnectionLost(f"connection to {self.peer} is closed")
        cmd.opaque = next_opaque()
        cmd.flag |= 2
        self.write(cmd)

    def close(self) -> None:
        """Flush what is queued and close; nothing more is read, so the bytes of an
        incomplete frame are dropped now."""
        if self.transport is not None and not self.transport.is_closing():
            self._flush_out()
            self.transport.close()
        self._drop_input()

"""`rmqctl bench disk|net`: this machine's physical limits, the figures the broker is judged
against (rpk's `cluster self-test`). No node is needed.

disk writes where the store lives, the way the store writes: sequential page-cache writes,
appends through a preallocated mapping (a CommitLog file, rmqnode's own MappedFile), and
small appends each followed by fdatasync (SYNC_FLUSH with one message per group commit); then
reads the written file back from the device and from the page cache. net moves bytes over
loopback TCP between two processes (the kernel's copy cost) and times small round trips
with Nagle off (the floor under every request's latency).
"""

from __future__ import annotations

import os
import re
import multiprocessing
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from rmqnode.broker.runtime import human_bytes
from rmqnode.config import DEFAULT_HOME
from rmqnode.storage.mapped_file import MappedFile, file_name
from rmqctl.client.bench import Histogram
from rmqctl.commands.bench import BenchCommand, Misuse
from rmqctl.context import Ctx, pass_ctx
from rmqctl.output import emit_object, emit_rows

COLUMNS = ["test", "block", "ops", "seconds", "ops/s", "MB/s", "p50 ms", "p90 ms", "p99 ms",
           "p99.9 ms", "max ms"]
DISK_TESTS = ("write", "writeSync", "mmap", "sync", "read", "readCached")
NET_TESTS = ("throughput", "rtt")
_UNITS = {"": 1, "b": 1, "k": 1024, "kib": 1024, "kb": 1000, "m": 1024 ** 2, "mib": 1024 ** 2,
          "mb": 1000 ** 2, "g": 1024 ** 3, "gib": 1024 ** 3, "gb": 1000 ** 3,
          "t": 1024 ** 4, "tib": 1024 ** 4, "tb": 1000 ** 4}


class ByteSize(click.ParamType):
    """A byte count with dd's units: K, KiB = 1024; KB = 1000 (M, G, T alike)."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> int:
        if isinstance(value, int):
            return value
        found = re.fullmatch(r"\s*(\d+)\s*([a-z]*)\s*", str(value), re.IGNORECASE)
        unit = found and _UNITS.get(found[2].lower())
        if not unit:
            self.fail(f"not a size: {value!r} (a whole number of bytes, or with a unit: "
                      f"4KiB, 64MiB, 1GiB, 1GB)", param, ctx)
        if int(found[1]) * unit < 1:
            self.fail(f"{value!r} is no bytes at all", param, ctx)
        return int(found[1]) * unit


class Measured:
    """One test's operations: how many, the bytes they moved, each one's time."""

    def __init__(self, block: int) -> None:
        self.block = block
        self.ops = self.bytes = 0
        self.latency = Histogram()
        self.started = time.perf_counter()
        self.seconds = 0.0

    def run(self, op: Callable[[], int], limit: int, seconds: float) -> Measured:
        """Call op (it returns the bytes it moved, 0 at the end) until `limit` bytes are
        moved or `seconds` have passed."""
        deadline = self.started + seconds
        while self.bytes < limit:
            began = time.perf_counter()
            moved = op()
            ended = time.perf_counter()
            if not moved:
                break
            self.latency.record(ended - began)
            self.ops += 1
            self.bytes += moved
            if ended >= deadline:
                break
        self.seconds = time.perf_counter() - self.started
        return self

    def figures(self, seconds: float | None = None, timed: bool = True) -> dict[str, Any]:
        """As -o json prints them; `seconds` overrides the time taken (a flush added to it),
        and timed=False leaves out per-operation latency where it means nothing."""
        return figures(self.block, self.ops, self.bytes,
                       self.seconds if seconds is None else seconds,
                       self.latency if timed else None)


def figures(block: int, ops: int, moved: int, seconds: float, latency: Histogram | None
            ) -> dict[str, Any]:
    seconds = max(seconds, 1e-9)
    return {"blockSize": block, "ops": ops, "bytes": moved, "seconds": round(seconds, 3),
            "opsPerSec": round(ops / seconds, 1), "mbPerSec": round(moved / seconds / 1e6, 1),
            "latencyMs": latency.summary_ms() if latency is not None and latency.count
            else None}


def table_row(test: str, f: dict[str, Any]) -> dict[str, str]:
    ms = f["latencyMs"] or {}
    row = {"test": test, "block": human_bytes(f["blockSize"]), "ops": f"{f['ops']:,}",
           "seconds": f"{f['seconds']:.2f}", "ops/s": f"{f['opsPerSec']:,.0f}",
           "MB/s": f"{f['mbPerSec']:,.1f}"}
    for name in ("p50", "p90", "p99", "p99.9", "max"):
        row[f"{name} ms"] = f"{ms[name]:.3f}" if ms else "-"
    return row


def emit(ctx: Ctx, result: dict[str, Any], tests: tuple[str, ...]) -> None:
    """One JSON object (json, ndjson), or a row per test (table, csv, raw)."""
    if ctx.output in ("json", "ndjson"):
        emit_object(result, ctx.output)
    else:
        emit_rows([table_row(t, result[t]) for t in tests if t in result], ctx.output, COLUMNS)


def say(text: str) -> None:
    """Which test runs now, on stderr when a person watches it."""
    if sys.stderr.isatty():
        click.echo(f"bench {text}", err=True)


def disk_tests(folder: Path, size: int, block: int, record: int, seconds: float
               ) -> dict[str, dict[str, Any]]:
    data = memoryview(os.urandom(max(block, record)))  # random: compressing filesystems
    out: dict[str, dict[str, Any]] = {}
    path = folder / "write"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        def write() -> int:
            at = written.bytes
            return os.pwrite(fd, data[:min(block, size - at)], at)

        say("disk: write (page cache)")
        written = Measured(block)
        written.run(write, size, seconds)
        out["write"] = written.figures()
        began = time.perf_counter()
        os.fdatasync(fd)
        out["writeSync"] = written.figures(written.seconds + time.perf_counter() - began,
                                           timed=False)
        # Clean pages leave the cache, so the first read comes from the device.
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        buffer = bytearray(block)
        for test in ("read", "readCached"):
            say(f"disk: {test}")
            done = Measured(block)
            out[test] = done.run(lambda: os.preadv(fd, [buffer], done.bytes), written.bytes,
                                 seconds).figures()
    finally:
        os.close(fd)
        path.unlink()

    say("disk: mmap append (CommitLog, ASYNC_FLUSH)")
    mapped = MappedFile(folder / file_name(0), size, preallocate=True)
    try:
        out["mmap"] = Measured(block).run(
            lambda: _append(mapped, data[:min(block, mapped.remaining)]), size, seconds).figures()
    finally:
        mapped.destroy()

    say(f"disk: {human_bytes(record)} append + fdatasync (CommitLog, SYNC_FLUSH)")
    mapped = MappedFile(folder / file_name(0), size, preallocate=True)
    try:
        def commit() -> int:
            moved = _append(mapped, data[:min(record, mapped.remaining)])
            mapped.flush()
            return moved

        out["sync"] = Measured(record).run(commit, size, seconds).figures()
    finally:
        mapped.destroy()
    return out


def _append(mapped: MappedFile, chunk: memoryview) -> int:
    if chunk:
        mapped.append(chunk)
    return len(chunk)


@click.command(cls=BenchCommand)
@click.option("--dir", "folder", type=click.Path(exists=True, file_okay=False, writable=True,
                                                  path_type=Path),
              help="Where to write: the store's disk. Default $RMQNODE_HOME (~/.rmqnode) if "
                   "it exists, else the current directory. Files go in a temporary directory "
                   "there, removed at the end.")
@click.option("--size", type=ByteSize(), default="1GiB", show_default=True,
              help="Bytes each test writes or reads at most (K/KiB = 1024, KB = 1000).")
@click.option("--block", type=ByteSize(), default="1MiB", show_default=True,
              help="Bytes per write and read of the throughput tests.")
@click.option("--record", type=ByteSize(), default="4KiB", show_default=True,
              help="Bytes per append of the fdatasync test (a message or a group commit).")
@click.option("--seconds", type=click.FloatRange(0, min_open=True), default=10.0,
              show_default=True, help="Each test stops after this long even if --size is "
                                      "not done.")
@pass_ctx
def disk(ctx: Ctx, folder: Path | None, size: int, block: int, record: int,
         seconds: float) -> None:
    """Disk limits where the store lives: sequential write MB/s into the page cache and with
    fdatasync, mmap appends as the CommitLog does them, RECORD-byte appends each followed by
    fdatasync (SYNC_FLUSH: flushes/s and their latency p50..max), and reads of the written
    file from the device and from the page cache. Needs --size bytes free.

    \b
    Tests (rows; keys of -o json):
      write       pwrite() of BLOCK-byte chunks, page cache only
      writeSync   the same bytes, timed until a fdatasync() has them on the device
      read        the file read back after dropping it from the page cache
      readCached  the file read again, from the page cache
      mmap        BLOCK-byte appends into a preallocated mapped file (ASYNC_FLUSH)
      sync        RECORD-byte appends into a mapped file, fdatasync after each (SYNC_FLUSH)

    \b
    Examples:
      rmqctl bench disk --dir /data/rmqnode
      rmqctl bench disk --size 256MiB --seconds 5 --record 16KiB
      rmqctl -o json bench disk --dir . --size 64MiB
    """
    if folder is None:
        folder = DEFAULT_HOME if DEFAULT_HOME.is_dir() else Path.cwd()
    if block > size or record > size:
        raise Misuse("--block and --record must not be larger than --size")
    free = shutil.disk_usage(folder).free
    if free < size + block:
        ctx.fail(f"{folder}: {human_bytes(free)} free, --size {human_bytes(size)} needs more")
    with tempfile.TemporaryDirectory(prefix=".rmqctl-bench-", dir=folder) as scratch:
        tests = disk_tests(Path(scratch), size, block, record, seconds)
    emit(ctx, {"command": "disk", "dir": str(folder.resolve()), "size": size, "block": block,
               "record": record, "secondsLimit": seconds, **tests}, DISK_TESTS)


def _recv_exactly(conn: socket.socket, buffer: bytearray) -> bool:
    """Fill buffer from conn; False if the peer closed first."""
    view, got = memoryview(buffer), 0
    while got < len(buffer):
        n = conn.recv_into(view[got:])
        if not n:
            return False
        got += n
    return True


def _serve_one(server: socket.socket, handle: Callable[[socket.socket], None]
               ) -> multiprocessing.Process:
    """A process of its own (as a broker is to its clients: no lock shared with this one)
    that accepts one connection on server and hands it to handle; it ends when that
    connection closes."""
    def run() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for this process to handle
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # how this one ends it, if need be
        conn, _ = server.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                handle(conn)
            except ConnectionError:
                pass  # this process stopped the test (Ctrl-C, a failure): it says why

    peer = multiprocessing.get_context("fork").Process(target=run, name="bench-net-peer",
                                                       daemon=True)
    peer.start()
    return peer


def throughput(size: int, block: int, seconds: float) -> dict[str, Any]:
    """Bytes a second one socket sends another over loopback: timed until the receiver has
    them all (it answers the count it got once the sender shuts down its side)."""
    def sink(conn: socket.socket) -> None:
        buffer, total = bytearray(block), 0
        while n := conn.recv_into(buffer):
            total += n
        conn.sendall(total.to_bytes(8, "big"))

    data = memoryview(os.urandom(block))
    with socket.create_server(("127.0.0.1", 0)) as server:
        peer = _serve_one(server, sink)
        with socket.create_connection(server.getsockname()) as conn:
            def send() -> int:
                chunk = data[:min(block, size - sent.bytes)]
                conn.sendall(chunk)
                return len(chunk)

            sent = Measured(block)
            sent.run(send, size, seconds)
            conn.shutdown(socket.SHUT_WR)
            answer = bytearray(8)
            if not _recv_exactly(conn, answer):
                raise ConnectionError("the receiving socket closed without its count")
            elapsed = time.perf_counter() - sent.started
        peer.join()
    return figures(block, sent.ops, int.from_bytes(answer, "big"), elapsed, None)


def round_trips(payload: int, count: int, seconds: float) -> dict[str, Any]:
    """PAYLOAD bytes there and back, one at a time, Nagle off on both sides."""
    def echo(conn: socket.socket) -> None:
        buffer = bytearray(payload)
        while _recv_exactly(conn, buffer):
            conn.sendall(buffer)

    message, answer = os.urandom(payload), bytearray(payload)
    with socket.create_server(("127.0.0.1", 0)) as server:
        peer = _serve_one(server, echo)
        with socket.create_connection(server.getsockname()) as conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def round_trip() -> int:
                conn.sendall(message)
                if not _recv_exactly(conn, answer):
                    raise ConnectionError("the echoing socket closed")
                return payload

            done = Measured(payload).run(round_trip, count * payload, seconds)
        peer.join()
    return done.figures()


@click.command(cls=BenchCommand)
@click.option("--size", type=ByteSize(), default="1GiB", show_default=True,
              help="Bytes the throughput test sends (K/KiB = 1024, KB = 1000).")
@click.option("--block", type=ByteSize(), default="1MiB", show_default=True,
              help="Bytes per send of the throughput test.")
@click.option("--payload", type=ByteSize(), default="128", show_default=True,
              help="Bytes each way per round trip.")
@click.option("-n", "--count", type=click.IntRange(1), default=20000, show_default=True,
              help="Round trips to time.")
@click.option("--seconds", type=click.FloatRange(0, min_open=True), default=10.0,
              show_default=True, help="Each test stops after this long even if not done.")
@pass_ctx
def net(ctx: Ctx, size: int, block: int, payload: int, count: int, seconds: float) -> None:
    """Loopback TCP limits: MB/s from one socket to another on 127.0.0.1, and the round-trip
    latency (p50..max) of PAYLOAD-byte messages echoed one at a time. The other socket is
    in a process of its own, as a broker is; no node is involved.

    \b
    Tests (rows; keys of -o json):
      throughput  BLOCK-byte sends until SIZE bytes arrived; ops are sends
      rtt         COUNT round trips of PAYLOAD bytes; latency per round trip

    \b
    Examples:
      rmqctl bench net
      rmqctl bench net --size 4GiB --block 256KiB
      rmqctl -o json bench net -n 100000 --payload 1KiB
    """
    if block > size:
        raise Misuse("--block must not be larger than --size")
    say("net: loopback throughput")
    result: dict[str, Any] = {"command": "net", "size": size, "block": block,
                              "payload": payload, "count": count, "secondsLimit": seconds,
                              "throughput": throughput(size, block, seconds)}
    say("net: round trips")
    result["rtt"] = round_trips(payload, count, seconds)
    emit(ctx, result, NET_TESTS)

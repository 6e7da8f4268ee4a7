"""What one durable record costs on this disk, written each way the store could write it.

    python benchmarks/bench_fsync.py [--count 2000] [--rounds 4] [--size 294] [--gap-us 200]
                                     [--dir DIR]

Each variant writes `count` records of `size` bytes one at a time, each made durable before
the next; the variants take turns, `count / rounds` records per turn, the order reversed every
other round (the disk's speed drifts on a shared machine). Printed per variant: p50 over all
records, the lowest and highest p50 of its turns, and p99.

  append            write() to a new file, then fdatasync: benchmarks/matrix.py's baseline
                    for the SYNC_FLUSH p50 row
  mmap              a store into a CommitLog-like mapping (1 GiB, blocks reserved with
                    posix_fallocate, MADV_RANDOM), then fdatasync: what a lone SYNC_FLUSH
                    sender costs the node (storage/flush.py)
  mmap sparse       the same in a sparse file (ftruncate, first page written), as consume
                    queue and index files are made
  mmap +logics      mmap, plus a consume-queue entry and index slot stored into their own
                    sparse mappings after each record, as the reput does
  pwrite            pwrite() at the record's place in the reserved file, then fdatasync
  RWF_DSYNC         pwritev(RWF_DSYNC) there: durable on return, no separate flush
  mmap fsync        mmap with fsync instead of fdatasync
  mmap, gap         mmap with `gap-us` of sleep before each record: the node flushes once per
                    round trip, and between them the CPU idles
  append, gap       append with the same gap
  range write only  sync_file_range(WAIT_BEFORE|WRITE|WAIT_AFTER) after the store: the data
                    write without the disk cache flush, NOT durable; it shows how the cost
                    divides between the write and the flush

What it showed (ext4 on virtio /dev/vda: write-back cache, no FUA; Linux 6.18; a Firecracker
guest whose idle vCPUs halt, haltpoll with guest_halt_poll_ns=0; 294 B records, p50 us of
three runs on a shared 2-core machine): append 229 / 187 / 164; mmap 158 / 115 / 119; mmap
sparse 162 / 135 / 117; mmap +logics 170 / 139 / 126; pwrite 182 / 110 / 134; RWF_DSYNC
183 / 108 / 139; mmap fsync 175 / 116 / 129; range write only 97 / 56 / 66; mmap, gap
171 / 121 / 139; append, gap 293 / 161 / 234. So:
- the way the node writes (a store into a reserved mapping, then fdatasync) costs no more
  than pwrite, RWF_DSYNC or fsync, sparse file or not, with the consume-queue and index
  stores beside it or not: none of them is a cheaper durable write on this disk;
- matrix.py's append baseline is the dearest of all: each append's fdatasync also commits
  the file's new size to the journal, which an overwrite of reserved blocks does not;
- about half of a durable overwrite is the disk's cache flush (range write only);
- an idle gap before each flush, as a node has between round trips, adds 5-20 us, and so
  does running on the other vCPU than the one that takes the disk's interrupts: with a
  200 us gap, 208 us p50 on CPU 0 against 167 on CPU 1 (virtio1-req.0's), eight alternating
  turns. A SYNC_FLUSH node's own fdatasync took 140-160 us p50 on CPU 1 and 196 on CPU 0
  (timed inside the node under `rmqctl bench produce --mode sync -c 1 --inflight 1`), so
  most of its flushes cost what this loop's do; pinning the node to CPU 1 did not lower
  that send's p50 (0.42 ms against 0.39 unpinned, six turns).
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable

GIB = 1 << 30
CQ_SIZE = 300_000 * 20  # a consume queue file
INDEX_SLOTS, INDEX_HEADER = 5_000_000, 40
INDEX_SIZE = INDEX_HEADER + INDEX_SLOTS * 4 + 20_000_000 * 20  # an index file
SYNC_FILE_RANGE = 1 | 2 | 4  # WAIT_BEFORE | WRITE | WAIT_AFTER


def mapped(path: str, size: int, reserve: bool) -> tuple[int, mmap.mmap]:
    """A file made as storage/mapped_file.py makes them, mapped for writing."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    if reserve:
        os.posix_fallocate(fd, 0, size)
    else:
        os.ftruncate(fd, size)
        os.pwrite(fd, bytes(mmap.PAGESIZE), 0)
    os.fsync(fd)
    mm = mmap.mmap(fd, size)
    mm.madvise(mmap.MADV_RANDOM)
    return fd, mm


def durable_overwrites(folder: str | os.PathLike, size: int, count: int) -> dict:
    """p50/p99 (ms) of `count` records stored one by one into a reserved mapping, each
    followed by fdatasync: the node's own durable write for a lone SYNC_FLUSH sender, in a
    tight loop (matrix.py notes it beside its append baseline)."""
    path = os.path.join(folder, "overwrite-baseline.data")
    fd, mm = mapped(path, max(GIB // 4, size * count), True)
    record = b"x" * size
    took = []
    try:
        for pos in range(0, size * count, size):
            began = time.perf_counter()
            mm[pos:pos + size] = record
            os.fdatasync(fd)
            took.append(time.perf_counter() - began)
    finally:
        mm.close()
        os.close(fd)
        os.unlink(path)
    took.sort()
    return {"p50Ms": took[len(took) // 2] * 1e3, "p99Ms": took[len(took) * 99 // 100] * 1e3}


class Variant:
    """One way of writing a durable record, with its own file and write position."""

    def __init__(self, name: str, write: Callable[[int], None], gap: float = 0.0) -> None:
        self.name, self.write, self.gap = name, write, gap
        self.turns: list[list[float]] = []

    def turn(self, count: int, start: int, size: int) -> None:
        took = []
        for i in range(count):
            if self.gap:
                time.sleep(self.gap)
            began = time.perf_counter()
            self.write((start + i) * size)
            took.append(time.perf_counter() - began)
        self.turns.append(took)


def variants(folder: str, size: int, gap: float) -> list[Variant]:
    record = b"x" * size
    libc = ctypes.CDLL(None, use_errno=True)
    libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
                                     ctypes.c_uint]

    def appender() -> Callable[[int], None]:
        fd = os.open(os.path.join(folder, f"append{len(out)}"),
                     os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        return lambda pos: (os.write(fd, record), os.fdatasync(fd))

    def store(reserve: bool = True, sync: Callable[[int, int], object] =
              lambda fd, pos: os.fdatasync(fd)) -> Callable[[int], None]:
        fd, mm = mapped(os.path.join(folder, f"log{len(out)}"), GIB, reserve)

        def write(pos: int) -> None:
            mm[pos:pos + size] = record
            sync(fd, pos)
        return write

    def reserved_fd() -> int:
        fd, mm = mapped(os.path.join(folder, f"log{len(out)}"), GIB, True)
        return fd

    def with_logics() -> Callable[[int], None]:
        write = store()
        _, cq = mapped(os.path.join(folder, f"cq{len(out)}"), CQ_SIZE, False)
        _, index = mapped(os.path.join(folder, f"index{len(out)}"), INDEX_SIZE, False)

        def both(pos: int) -> None:
            write(pos)
            n = pos // size
            at = n * 20 % CQ_SIZE
            cq[at:at + 20] = b"c" * 20
            slot = INDEX_HEADER + (n * 2654435761 % INDEX_SLOTS) * 4
            index[slot:slot + 4] = b"iiii"
            entry = INDEX_HEADER + INDEX_SLOTS * 4 + n * 20
            index[entry:entry + 20] = b"e" * 20
        return both

    def pwrite() -> Callable[[int], None]:
        fd = reserved_fd()
        return lambda pos: (os.pwrite(fd, record, pos), os.fdatasync(fd))

    def dsync() -> Callable[[int], None]:
        fd = reserved_fd()
        return lambda pos: os.pwritev(fd, [record], pos, os.RWF_DSYNC)

    def range_only(fd: int, pos: int) -> None:
        first = pos & ~(mmap.PAGESIZE - 1)
        if libc.sync_file_range(fd, first, pos + size - first, SYNC_FILE_RANGE):
            raise OSError(ctypes.get_errno(), "sync_file_range")

    out: list[Variant] = []
    plan: list[tuple[str, Callable[[], Callable[[int], None]], float]] = [
        ("append", appender, 0.0), ("mmap", store, 0.0),
        ("mmap sparse", lambda: store(reserve=False), 0.0), ("mmap +logics", with_logics, 0.0),
        ("pwrite", pwrite, 0.0), ("RWF_DSYNC", dsync, 0.0),
        ("mmap fsync", lambda: store(sync=lambda fd, pos: os.fsync(fd)), 0.0),
        ("range write only", lambda: store(sync=range_only), 0.0)]
    if gap:
        plan += [("mmap, gap", store, gap), ("append, gap", appender, gap)]
    for name, make, wait in plan:
        out.append(Variant(name, make(), wait))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--size", type=int, default=294, help="record bytes (the matrix "
                        "row's 128 B body makes a 294 B record)")
    parser.add_argument("--gap-us", type=float, default=200.0,
                        help="sleep before each record of the gap variants (0: none)")
    parser.add_argument("--dir", default=None, help="where the files go (default: a "
                        "temporary directory, which should be on the store's disk)")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bench-fsync-", dir=args.dir)
    try:
        runs = variants(folder, args.size, args.gap_us / 1e6)
        per = max(1, args.count // args.rounds)
        for r in range(args.rounds):
            for variant in runs if r % 2 == 0 else runs[::-1]:
                variant.turn(per, r * per, args.size)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{args.size} B records, {per * args.rounds:,} each, {args.rounds} turns")
    print(f"{'variant':18s} {'p50 us':>8s} {'turn p50s':>13s} {'p99 us':>8s}")
    for variant in runs:
        every = sorted(t for turn in variant.turns for t in turn)
        turns = [statistics.median(turn) * 1e6 for turn in variant.turns]
        print(f"{variant.name:18s} {statistics.median(every) * 1e6:8.1f} "
              f"{min(turns):6.1f}-{max(turns):<6.1f} {every[len(every) * 99 // 100] * 1e6:8.1f}")


if __name__ == "__main__":
    main()

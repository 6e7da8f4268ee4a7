"""Read-only access to a store's files for offline tools (rmqctl's inspect-commitlog,
dump-consumequeue, store check, store index), on rmqnode's stores and Java RocketMQ's alike.

The store's own walk (CommitLog._walk) stops at the first bad record, because recovery must
cut there. A forensic reader must not: it reports the damage (file, offset, reason) and finds
its feet again at the next record that checks out, so that one bad byte does not hide the rest
of a store. Files are opened O_RDONLY and mapped read-only; nothing here creates, locks or
changes a file. Decoding is records.py's; this module only walks.
"""

from __future__ import annotations

import bisect
import mmap
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rmqnode.config import BrokerConfig
from rmqnode.message import MessageExt
from rmqnode.storage.dispatch import SCHEDULE_TOPIC, queue_tags_code
from rmqnode.storage.mapped_file import offset_named
from rmqnode.storage.records import (BLANK_MAGIC, CHECKPOINT, CQ_ENTRY, CQ_UNIT_SIZE,
                                     MESSAGE_MAGIC_V1, MESSAGE_MAGIC_V2, Checkpoint,
                                     CorruptRecord, body_crc, check_record, decode_record)

_MAGICS = tuple(struct.pack(">i", m) for m in (MESSAGE_MAGIC_V1, MESSAGE_MAGIC_V2, BLANK_MAGIC))
# Where unreadable bytes are taken to end when no record follows them: the first run of zeros
# this long (records are dense, the unwritten rest of a file is zeros).
_ZERO_RUN = bytes(64)


class NotAStore(ValueError):
    """A path that holds none of the files asked for."""


@dataclass(slots=True)
class Damage:
    """Something wrong in a store file. `offset` is the global CommitLog offset (or a consume
    queue's byte offset, queue offset * 20); `length` is how many bytes the walk passed over
    before it found a record again; `kind` is one of: crc (the record is readable, its body
    is not what was stored; the record follows), corrupt (unreadable bytes), gap (zeros
    between records), layout (file sizes or names)."""
    file: str
    offset: int
    reason: str
    kind: str = "corrupt"
    length: int = 0

    def __str__(self) -> str:
        lost = f" ({self.length} bytes unreadable)" if self.kind == "corrupt" and self.length \
            else ""
        return f"{self.file} offset {self.offset}: {self.reason}{lost}"

    def row(self) -> dict:
        return {"file": self.file, "offset": self.offset, "kind": self.kind,
                "bytes": self.length, "reason": self.reason}


def read_only_map(path: Path) -> bytes | mmap.mmap:
    """The file's bytes without reading 1 GiB into memory; never writable."""
    with open(path, "rb") as f:  # not os.open: a directory must fail here, by its name
        if os.fstat(f.fileno()).st_size == 0:
            return b""
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def commitlog_files(path: Path) -> list[Path]:
    """A store root, its commitlog/ folder, or one CommitLog file."""
    if path.is_file():
        return [path]
    files = offset_named(path / "commitlog" if (path / "commitlog").is_dir() else path)
    if not files:
        raise NotAStore(f"{path} holds no CommitLog files (a store root, its commitlog/ "
                        "folder, or a file named by its 20-digit offset)")
    return files


def store_config(root: Path) -> BrokerConfig:
    """A read-only node's view of a store: the file sizes it was written with, which its node
    may have set to anything, are those of the first CommitLog and consume queue files."""
    sizes = {}
    for key, pattern in (("mappedFileSizeCommitLog", "commitlog/*"),
                         ("mappedFileSizeConsumeQueue", "consumequeue/*/*/*")):
        found = next((p for p in sorted(root.glob(pattern))
                      if p.name.isdigit() and p.is_file() and p.stat().st_size), None)
        if found is not None:
            sizes[key] = found.stat().st_size
    return BrokerConfig(storePathRootDir=str(root), **sizes)


# -- the CommitLog ----------------------------------------------------------------------------

class CommitLogReader:
    """Every CommitLog file of a store (or one file), walked in order or read at an offset."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files
        self.starts = [int(p.name) if p.name.isdigit() else 0 for p in files]
        # Per file, where its last record or damaged region ends (local): the written data.
        self.data_end: dict[Path, int] = {}
        self._maps: dict[int, bytes | mmap.mmap] = {}

    @property
    def min_offset(self) -> int:
        return self.starts[0] if self.starts else 0

    def records(self, check_crc: bool = False, progress: Callable[[int], None] | None = None
                ) -> Iterator[MessageExt | Damage]:
        """Every record and every damage, in offset order, across all files. With
        `check_crc` a record whose body does not match its CRC comes as Damage(kind=crc)
        followed by the record itself."""
        size = self.files[0].stat().st_size if self.files else 0
        for i, path in enumerate(self.files):
            actual = path.stat().st_size
            if actual != size:
                yield Damage(str(path), self.starts[i], f"file size {actual} differs from the "
                             f"first file's {size}", "layout")
            elif i and self.starts[i] != self.starts[i - 1] + size:
                yield Damage(str(path), self.starts[i - 1] + size, "no CommitLog file from "
                             f"offset {self.starts[i - 1] + size} to {self.starts[i]}", "layout")
            yield from self._file_records(i, check_crc, last=i == len(self.files) - 1)
            if progress is not None:
                progress(actual)

    def _file_records(self, i: int, check_crc: bool, last: bool
                      ) -> Iterator[MessageExt | Damage]:
        path, base = self.files[i], self.starts[i]
        data = read_only_map(path)
        name = str(path)
        pos = end = 0
        try:
            while pos < len(data):
                try:
                    rec = decode_record(data, pos, base)
                except CorruptRecord as exc:
                    resume = _next_record(data, pos + 1, base)
                    stop = resume if resume is not None else _data_stop(data, pos)
                    yield Damage(name, exc.offset, exc.reason, "corrupt", stop - pos)
                    end = stop
                    if resume is None:
                        break
                    pos = resume
                    continue
                if rec is None:  # zeros: the end of what was written, unless records follow
                    resume = _next_record(data, pos, base)
                    if resume is None:
                        if not last and self._holds_data(i + 1):
                            yield Damage(name, base + pos, "the file ends without its "
                                         "end-of-file record, and later files exist", "gap")
                        break
                    yield Damage(name, base + pos, f"{resume - pos} zero bytes before more "
                                 "records", "gap", resume - pos)
                    pos = resume
                    continue
                if isinstance(rec, MessageExt):
                    if check_crc and body_crc(rec.body) != rec.body_crc:
                        yield Damage(name, base + pos, f"body CRC {body_crc(rec.body)} does "
                                     f"not match stored {rec.body_crc}", "crc")
                    yield rec
                    pos = end = pos + rec.store_size
                    continue
                if pos + rec.size != len(data):  # the blank end-of-file record
                    yield Damage(name, base + pos, f"end-of-file record of {rec.size} bytes "
                                 f"does not reach the end of the file ({len(data) - pos})")
                end = pos
                break
        finally:
            self.data_end[path] = end
            if isinstance(data, mmap.mmap):
                data.close()

    def _holds_data(self, i: int) -> bool:
        """Whether file i starts with anything: Java creates the next file ahead of need, so
        an all-zero file after the last record is no gap."""
        with open(self.files[i], "rb") as f:
            return f.read(8).strip(b"\0") != b""

    def message_at(self, offset: int, read_body: bool = True) -> MessageExt | None:
        """The record at a global offset: None when no file holds it or nothing was written
        there, CorruptRecord when what is there is not a record."""
        i = self.file_index(offset)
        if i < 0:
            return None
        data = self._map(i)
        local = offset - self.starts[i]
        if local >= len(data):
            return None
        rec = decode_record(data, local, self.starts[i], read_body=read_body)
        if rec is not None and not isinstance(rec, MessageExt):
            raise CorruptRecord(offset, "the end-of-file record, not a message",
                                str(self.files[i]))
        return rec

    def file_index(self, offset: int) -> int:
        """Which of `files` holds a global offset (-1: below the first)."""
        return bisect.bisect_right(self.starts, offset) - 1

    def _map(self, i: int) -> bytes | mmap.mmap:
        data = self._maps.get(i)
        if data is None:
            if len(self._maps) >= 4:  # queues point all over the log: keep a few mapped
                self._close_maps()
            data = self._maps[i] = read_only_map(self.files[i])
        return data

    def _close_maps(self) -> None:
        for data in self._maps.values():
            if isinstance(data, mmap.mmap):
                data.close()
        self._maps.clear()

    def close(self) -> None:
        self._close_maps()


def _next_record(data: bytes | mmap.mmap, start: int, base: int) -> int | None:
    """The first position from `start` where a whole record begins (a message that checks
    out, or the end-of-file record reaching the file's end): where a walk goes on after
    damage. Magic codes are searched in C (find), not byte by byte in Python."""
    hits = [data.find(m, start + 4) for m in _MAGICS]
    while True:
        live = [h for h in hits if h >= 0]
        if not live:
            return None
        at = min(live)
        cand = at - 4
        try:
            size, stamp = check_record(data, cand, base)
        except CorruptRecord:
            size, stamp = 0, 0
        if size > 0 and (stamp != -1 or cand + size == len(data)):
            return cand
        hits = [data.find(m, at + 1) if h == at else h for m, h in zip(_MAGICS, hits)]


def _data_stop(data: bytes | mmap.mmap, pos: int) -> int:
    """Where unreadable bytes from `pos` end when no record follows: at the next run of
    zeros, or the end of the file."""
    stop = data.find(_ZERO_RUN, pos)
    return len(data) if stop < 0 else stop


# -- consume queues ---------------------------------------------------------------------------

def consume_queues(root: Path, topic: str | None = None) -> list[tuple[str, int, Path]]:
    """(topic, queue id, folder) of every consume queue of a store, or of one topic."""
    top = root / "consumequeue"
    if not top.is_dir():
        return []
    topics = [top / topic] if topic is not None else sorted(top.iterdir())
    out = []
    for tdir in topics:
        if not tdir.is_dir():
            continue
        for qdir in sorted((q for q in tdir.iterdir() if q.name.isdigit() and q.is_dir()),
                           key=lambda q: int(q.name)):
            out.append((tdir.name, int(qdir.name), qdir))
    return out


def queue_entries(folder: Path) -> Iterator[tuple[int, int, int, int] | Damage]:
    """(queue offset, commit log offset, size, tags code) of every entry written, in order;
    a slot that is neither an entry nor zeros, and files after a queue's end, are Damage."""
    ended: int | None = None
    for path in offset_named(folder):
        data = read_only_map(path)
        try:
            first = int(path.name)
            if ended is not None:
                if data[:].count(0) == len(data):
                    continue  # created ahead and never written: nothing lost
                yield Damage(str(path), first, f"a file after the queue's end at queue "
                             f"offset {ended // CQ_UNIT_SIZE}", "layout")
                continue
            whole = len(data) - len(data) % CQ_UNIT_SIZE
            for pos in range(0, whole, CQ_UNIT_SIZE):
                phy, size, tags = CQ_ENTRY.unpack_from(data, pos)
                if phy < 0 or size <= 0:
                    if data[pos:pos + CQ_UNIT_SIZE] != bytes(CQ_UNIT_SIZE):
                        yield Damage(str(path), first + pos, f"queue offset "
                                     f"{(first + pos) // CQ_UNIT_SIZE}: garbage entry (offset "
                                     f"{phy}, size {size}) ends the queue")
                    ended = first + pos
                    break
                yield (first + pos) // CQ_UNIT_SIZE, phy, size, tags
        finally:
            if isinstance(data, mmap.mmap):
                data.close()


def check_entry(topic: str, queue_id: int, entry: tuple[int, int, int, int],
                log: CommitLogReader, bad_crc: frozenset[int] | set[int] = frozenset()
                ) -> str | None:
    """What is wrong with one consume queue entry, None if it matches its record: topic,
    queue, queue offset, size, tags code (not on SCHEDULE_TOPIC_XXXX, whose slot holds a
    due time that depends on the node's delay levels) and, through `bad_crc` (offsets a CRC
    walk found bad), the record's body CRC. Entries below the CommitLog's first file point
    at expired records: nothing to compare, not a problem."""
    q_offset, phy, size, tags = entry
    if phy < log.min_offset:
        return None
    try:
        msg = log.message_at(phy, read_body=False)
    except CorruptRecord as exc:
        return f"points at a corrupt record ({exc.reason})"
    if msg is None:
        return "points nowhere (past the CommitLog's end)"
    if (msg.topic, msg.queue_id, msg.queue_offset) != (topic, queue_id, q_offset):
        return (f"points at another message ({msg.topic}/{msg.queue_id} queue offset "
                f"{msg.queue_offset})")
    if msg.store_size != size:
        return f"size {size} differs from its record's {msg.store_size}"
    if topic != SCHEDULE_TOPIC:
        want = queue_tags_code(topic, msg.properties, msg.store_timestamp, [])
        if want != tags:
            return f"tags code {tags} differs from its record's {want}"
    if phy in bad_crc:
        return "its record's body CRC does not match"
    return None


# -- checkpoint, abort and lock -------------------------------------------------------------

@dataclass(slots=True)
class StoreState:
    """What a store's small files say: the checkpoint (None if missing, with a problem if
    short), whether the last run ended cleanly (no abort file) and who holds the lock."""
    checkpoint: Checkpoint | None
    checkpoint_problem: str | None
    clean_shutdown: bool
    lock_holder: int | None  # pid holding the lock file, from /proc/locks


def store_state(root: Path) -> StoreState:
    checkpoint, problem = None, None
    path = root / "checkpoint"
    if not path.is_file():
        problem = "no checkpoint file: an abnormal recovery would check every CommitLog file"
    else:
        data = path.read_bytes()
        checkpoint = Checkpoint.unpack(data)
        if len(data) < CHECKPOINT.size:
            problem = f"checkpoint file of {len(data)} bytes is too short to hold its " \
                      f"{CHECKPOINT.size} bytes"
    return StoreState(checkpoint, problem, not (root / "abort").exists(),
                      lock_holder(root / "lock"))


def lock_holder(path: Path) -> int | None:
    """The pid that holds a lock on `path`, read from /proc/locks: asking by taking the lock
    would be a change (and could get in a starting node's way)."""
    try:
        st = path.stat()
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    # "1: POSIX  ADVISORY  WRITE 4242 08:01:1234 0 EOF"; waiters ("1: -> ...") hold nothing.
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] in ("FLOCK", "POSIX") and fields[5] == where \
                and fields[4].isdigit():
            return int(fields[4])
    return None

"""The CommitLog: every message of every topic, appended in order to fixed-size files.

Appending is synchronous and short (encode, pwrite into the mapped file), so in the event
loop it is atomic with respect to other senders: queue offsets and physical offsets are
assigned in the same step, without locks.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from rmqnode.message import TRANSACTION_MASK, MessageExt
from rmqnode.speedups import accelerate
from rmqnode.storage.dispatch import goes_to_queue
from rmqnode.storage.mapped_file import MappedFile, MappedFileQueue
from rmqnode.storage.records import (END_FILE_MIN_BLANK_LENGTH, POS_SYS_FLAG, Blank,
                                     CorruptRecord, check_record, decode_record, encode_blank,
                                     stamp_records)

T = TypeVar("T")


def place_records(fd: int, pos: int, limit: int, records: bytearray, sizes: list[int],
                  queue_offset: int, physical_offset: int, store_timestamp: int) -> int:
    """stamp_records, then the records written at `pos` of the file `fd` (a MappedFile's
    descriptor, whose size is `limit`): the end position. One call per put, so that the
    accelerator does both in C.

    pwrite, not a copy into the mapping: the copy page-faults every new page of the file,
    pwrite fills the page cache the mapping shares (MAP_SHARED), so readers of the mapping
    see the bytes as soon as this returns. A write that stops short is continued; one that
    cannot be raises OSError, and the caller then moves no write position."""
    end = pos + len(records)
    if not 0 <= pos <= end <= limit:
        raise ValueError(f"{len(records)} bytes do not fit at {pos} of a {limit}-byte file")
    stamp_records(records, sizes, queue_offset, physical_offset, store_timestamp)
    done = os.pwrite(fd, records, pos)
    while done < len(records):
        wrote = os.pwrite(fd, memoryview(records)[done:], pos + done)
        if not wrote:
            raise OSError(errno.EIO, "the CommitLog file took no more bytes")
        done += wrote
    return end


place_records = accelerate(place_records)


@dataclass(slots=True)
class Appended:
    """Where one record went."""
    wrote_offset: int
    wrote_bytes: int
    queue_offset: int
    store_timestamp: int


class CommitLog:
    def __init__(self, directory: str, file_size: int, store_host: bytes,
                 readonly: bool = False) -> None:
        self.files = MappedFileQueue(directory, file_size, readonly=readonly, preallocate=True)
        self.file_size = file_size
        self.store_host = store_host
        self.topic_queue_table: dict[tuple[str, int], int] = {}  # next queue offset per queue

    def load(self) -> None:
        self.files.load()

    @property
    def min_offset(self) -> int:
        return self.files.min_offset

    @property
    def max_offset(self) -> int:
        return self.files.max_offset

    # -- appending -------------------------------------------------------------------------

    def room_in_last(self, size: int) -> MappedFile | None:
        """The last file, when it has room for `size` bytes and the end-of-file marker: once
        per put, so read without the properties' calls."""
        files = self.files.files
        if files:
            mf = files[-1]
            if mf.file_size - mf.wrote_position >= size + END_FILE_MIN_BLANK_LENGTH:
                return mf
        return None

    def _file_for(self, size: int) -> MappedFile:
        """The file with room for `size` bytes plus the end-of-file marker; a file without it
        is closed with a blank record, as Java does, and the next one started."""
        mf = self.room_in_last(size)
        if mf is not None:
            return mf
        mf = self.files.last_for_append()
        if mf.remaining < size + END_FILE_MIN_BLANK_LENGTH:
            if size + END_FILE_MIN_BLANK_LENGTH > self.file_size:
                raise ValueError(f"a record of {size} bytes cannot fit a {self.file_size}-byte "
                                 "commit log file")
            if mf.remaining:
                blank = mf.remaining
                mf.append(encode_blank(blank))
                mf.wrote_position = mf.file_size
            mf = self.files.last_for_append()
        return mf

    def append(self, records: bytearray, topic: str, queue_id: int, sizes: list[int],
               mf: MappedFile | None = None) -> Appended:
        """Place encoded records of one queue laid end to end (one, or a batch), whose sizes
        are `sizes`: patch in physical offsets, queue offsets and the store time, write.

        A prepared or rolled-back transaction record, which no consume queue will hold, is
        written with queue offset 0 and takes none, as Java's DefaultAppendMessageCallback
        does: an offset taken without an entry would leave an all-zero slot in the queue,
        and offsets and lag that differ from Java's. (Batches cannot be transactional: the
        send refuses them, as Java.)

        `mf`: the last file, when the caller has just seen it has room (room_in_last)."""
        if mf is None:
            mf = self._file_for(len(records))
        pos = mf.wrote_position
        wrote = mf.file_from_offset + pos
        now = int(time.time() * 1000)
        key = (topic, queue_id)
        queue_offset = self.topic_queue_table.get(key, 0)
        taken = len(sizes)
        # The transaction type is in the sysFlag's low byte: read without slicing a copy, and
        # asked about only when there is one.
        flag = records[POS_SYS_FLAG + 3]
        if taken == 1 and flag & TRANSACTION_MASK and not goes_to_queue(flag):
            queue_offset = taken = 0
        if pos + len(records) > mf.zero_mark:
            mf.zero_ahead(pos + len(records))
        mf.wrote_position = place_records(mf.fd, pos, mf.file_size, records, sizes,
                                          queue_offset, wrote, now)
        if taken:
            self.topic_queue_table[key] = queue_offset + taken
        return Appended(wrote, len(records), queue_offset, now)

    def append_data(self, offset: int, data: bytes | memoryview) -> None:
        """A slave's append (Java's appendData): bytes of the master's CommitLog that start at
        `offset`, copied as they are, so that every record keeps the offsets written into it
        and files roll where the master's did. `offset` must be where this log ends (an empty
        log starts at the file holding it). Raises ValueError when it is not."""
        end = self.max_offset
        if self.files.last() is None:
            if offset % self.file_size:
                raise ValueError(f"an empty CommitLog cannot start at {offset}, which is not "
                                 "the start of a file")
            self.files.create(offset)
        elif offset != end:
            raise ValueError(f"data for offset {offset} does not continue the CommitLog, "
                             f"which ends at {end}")
        view = memoryview(data)
        while view:
            mf = self.files.last_for_append()
            step = min(len(view), mf.remaining)
            if mf.wrote_position + step > mf.zero_mark:
                mf.zero_ahead(mf.wrote_position + step)
            mf.append(view[:step])
            view = view[step:]

    # -- reading ---------------------------------------------------------------------------

    def view(self, offset: int, size: int) -> memoryview | None:
        """The bytes of one record without copying, or None if they are not (any longer) there
        (nor ever were: an empty slot of a queue points at 0 bytes)."""
        mf = self.files.find(offset)
        if mf is None or size <= 0:
            return None
        local = offset - mf.file_from_offset
        if local + size > mf.wrote_position:
            return None
        return mf.view(local, size)

    def message_at(self, offset: int, read_body: bool = True) -> MessageExt | None:
        mf = self.files.find(offset)
        if mf is None:
            return None
        local = offset - mf.file_from_offset
        if local >= mf.wrote_position:
            return None
        try:
            rec = decode_record(mf.view(0, mf.wrote_position), local, mf.file_from_offset,
                                read_body=read_body)
        except CorruptRecord:
            return None
        return rec if isinstance(rec, MessageExt) else None

    def _walk(self, start: int, read: Callable[[memoryview, int, int], tuple[int, bool, T]]
              ) -> Iterator[tuple[int, T]]:
        """Records from `start` on, across files, stopping at the first gap or bad record
        (CorruptRecord, with its file); `read` gives (size, is_blank, item) of one record,
        size 0 where nothing was written."""
        mf = self.files.find(start)
        if mf is None:
            return
        index = self.files.files.index(mf)
        local = start - mf.file_from_offset
        for mf in self.files.files[index:]:
            view = mf.view(0, mf.wrote_position)
            try:
                while local < mf.wrote_position:
                    try:
                        size, blank, item = read(view, local, mf.file_from_offset)
                    except CorruptRecord as exc:
                        raise CorruptRecord(exc.offset, exc.reason, str(mf.path)) from None
                    if size == 0:
                        return
                    yield mf.file_from_offset + local, item
                    if blank:
                        break
                    local += size
            finally:
                del view
            local = 0

    def scan(self, start: int, check_crc: bool = False
             ) -> Iterator[tuple[int, MessageExt | Blank]]:
        """Every record from `start` on, decoded."""
        def read(view: memoryview, local: int, base: int) -> tuple[int, bool, MessageExt | Blank]:
            rec = decode_record(view, local, base, check_crc=check_crc)
            if rec is None:
                return 0, False, Blank(0)
            if isinstance(rec, Blank):
                return rec.size, True, rec
            return rec.store_size, False, rec
        return self._walk(start, read)

    def extents(self, start: int, check_crc: bool = False) -> Iterator[tuple[int, int, int]]:
        """(offset, size, store timestamp) of every record from `start` on, checked but not
        decoded (the blank end-of-file record has timestamp -1): recovery's fast path."""
        def read(view: memoryview, local: int, base: int) -> tuple[int, bool, tuple[int, int]]:
            size, stamp = check_record(view, local, base, check_crc)
            return size, stamp == -1, (size, stamp)
        for offset, (size, stamp) in self._walk(start, read):
            yield offset, size, stamp

    def close(self) -> None:
        self.files.close()

"""One queue's index into the CommitLog (RocketMQ's ConsumeQueue): 20-byte entries at
position queueOffset * 20, in files of mappedFileSizeConsumeQueue bytes under
consumequeue/<topic>/<queueId>/."""

from __future__ import annotations

import os
from collections.abc import Iterator

from rmqnode.storage.mapped_file import MappedFileQueue
from rmqnode.storage.records import CQ_ENTRY, CQ_UNIT_SIZE


class ConsumeQueue:
    def __init__(self, root: str, topic: str, queue_id: int, file_size: int,
                 readonly: bool = False) -> None:
        self.topic = topic
        self.queue_id = queue_id
        # Whole entries per file: Java rounds mappedFileSizeConsumeQueue up to a multiple of 20.
        self.file_size = -(-file_size // CQ_UNIT_SIZE) * CQ_UNIT_SIZE
        self.files = MappedFileQueue(os.path.join(root, topic, str(queue_id)), self.file_size,
                                     readonly=readonly)
        self.min_logic_offset = 0  # first readable queue offset, raised by expiry
        self.max_phy_end = 0       # commit log offset just past the last entry's message

    # -- recovery --------------------------------------------------------------------------

    def load(self) -> None:
        self.files.load()

    def recover(self) -> None:
        """Find the last entry written: the first all-zero (or invalid) slot ends the queue.
        Java looks only at the last three files; the earlier ones are full by construction."""
        files = self.files.files
        for mf in files[:-3]:
            mf.wrote_position = mf.file_size
        self.max_phy_end = 0
        for mf in files[-3:]:
            view = mf.view(0, mf.file_size)
            pos = 0
            while pos < mf.file_size:
                phy, size, _ = CQ_ENTRY.unpack_from(view, pos)
                if phy < 0 or size <= 0:
                    break
                self.max_phy_end = phy + size
                pos += CQ_UNIT_SIZE
            del view
            mf.wrote_position = mf.flushed_position = pos
            if pos < mf.file_size:
                # Nothing after the first gap counts; later files are stale.
                for stale in files[files.index(mf) + 1:]:
                    stale.destroy()
                self.files.files = files[:files.index(mf) + 1]
                break
        first = self.files.files[0] if self.files.files else None
        if first is not None:
            self.min_logic_offset = max(self.min_logic_offset,
                                        first.file_from_offset // CQ_UNIT_SIZE)

    def truncate_dirty(self, phy_end: int) -> None:
        """Drop entries that point at or past `phy_end` (the CommitLog was cut there)."""
        files = self.files.files
        while files:
            mf = files[-1]
            view = mf.view(0, mf.wrote_position)
            keep = mf.wrote_position
            while keep >= CQ_UNIT_SIZE:
                phy, _, _ = CQ_ENTRY.unpack_from(view, keep - CQ_UNIT_SIZE)
                if phy < phy_end:
                    break
                keep -= CQ_UNIT_SIZE
            del view
            if keep == mf.wrote_position:
                break
            if keep == 0 and len(files) > 1:
                files.pop().destroy()
                continue
            mf.truncate_to(keep)
            if keep:
                break
        self.max_phy_end = 0
        last = self.files.last()
        if last is not None and last.wrote_position:
            phy, size, _ = CQ_ENTRY.unpack_from(last.view(last.wrote_position - CQ_UNIT_SIZE,
                                                          CQ_UNIT_SIZE), 0)
            self.max_phy_end = phy + size

    # -- writing ---------------------------------------------------------------------------

    def put(self, queue_offset: int, phy_offset: int, size: int, tags_code: int) -> None:
        """Write the entry for `queue_offset`. Writing the same entry twice is harmless, which
        is what lets recovery re-dispatch a range without checking what is already there."""
        pos = queue_offset * CQ_UNIT_SIZE
        mf = self.files.find(pos)
        while mf is None:
            last = self.files.last()
            if last is not None and pos < last.file_from_offset:
                raise ValueError(f"{self.topic}/{self.queue_id}: queue offset {queue_offset} "
                                 f"is before the queue's first file")
            start = pos - pos % self.file_size if last is None else \
                last.file_from_offset + self.file_size
            self.files.create(start)
            mf = self.files.find(pos)
        local = pos - mf.file_from_offset
        CQ_ENTRY.pack_into(mf.mm, local, phy_offset, size, tags_code)  # type: ignore[arg-type]
        if local + CQ_UNIT_SIZE > mf.wrote_position:
            mf.wrote_position = local + CQ_UNIT_SIZE
        if phy_offset + size > self.max_phy_end:
            self.max_phy_end = phy_offset + size

    def flush(self) -> int:
        return self.files.flush()

    # -- reading ---------------------------------------------------------------------------

    @property
    def max_offset(self) -> int:
        """The next queue offset to be written (RocketMQ's maxOffsetInQueue)."""
        return self.files.max_offset // CQ_UNIT_SIZE

    @property
    def min_offset(self) -> int:
        return max(self.min_logic_offset, self.files.min_offset // CQ_UNIT_SIZE)

    def entry(self, queue_offset: int) -> tuple[int, int, int] | None:
        pos = queue_offset * CQ_UNIT_SIZE
        mf = self.files.find(pos)
        if mf is None or pos - mf.file_from_offset >= mf.wrote_position:
            return None
        return CQ_ENTRY.unpack(mf.read(pos - mf.file_from_offset, CQ_UNIT_SIZE))

    def entries(self, queue_offset: int, limit: int) -> Iterator[tuple[int, int, int, int]]:
        """(queue offset, commit log offset, size, tags code) from `queue_offset`, at most
        `limit`, within the file that holds it (a caller continues from the next offset)."""
        pos = queue_offset * CQ_UNIT_SIZE
        mf = self.files.find(pos)
        if mf is None:
            return
        local = pos - mf.file_from_offset
        end = min(mf.wrote_position, local + limit * CQ_UNIT_SIZE)
        data = mf.read(local, end - local) if end > local else b""
        for i, (phy, size, tags) in enumerate(CQ_ENTRY.iter_unpack(data)):
            yield queue_offset + i, phy, size, tags

    def close(self) -> None:
        self.files.close()

    def destroy(self) -> None:
        for mf in list(self.files):
            mf.destroy()
        self.files.files = []

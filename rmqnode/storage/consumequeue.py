"""One queue's index into the CommitLog (RocketMQ's ConsumeQueue): 20-byte entries at
position queueOffset * 20, in files of mappedFileSizeConsumeQueue bytes under
consumequeue/<topic>/<queueId>/."""

from __future__ import annotations

from collections.abc import Iterator

from rmqnode.storage.mapped_file import MappedFile, MappedFileQueue
from rmqnode.speedups import accelerate
from rmqnode.storage.records import CQ_ENTRY, CQ_UNIT_SIZE
from rmqnode.validation import store_path

_PRE_BLANK = CQ_ENTRY.pack(0, 0x7FFFFFFF, 0)  # ConsumeQueue.fillPreBlank's entry


def queue_entries(phy_offset: int, sizes: list[int], tags_codes: list[int]) -> bytearray:
    """The consume-queue entries of consecutive records from `phy_offset` (a batch's run), in
    one buffer for one write (packed in C when built)."""
    data = bytearray(len(sizes) * CQ_UNIT_SIZE)
    pack_into = CQ_ENTRY.pack_into
    at = 0
    for size, tags in zip(sizes, tags_codes):
        pack_into(data, at, phy_offset, size, tags)
        phy_offset += size
        at += CQ_UNIT_SIZE
    return data


queue_entries = accelerate(queue_entries)


class ConsumeQueue:
    def __init__(self, root: str, topic: str, queue_id: int, file_size: int,
                 readonly: bool = False) -> None:
        """Raises RemotingError when `topic` cannot name a directory inside `root` (a topic
        read from a CommitLog record or a request is not trusted to be a safe path)."""
        directory = store_path(root, topic, str(queue_id))
        self.topic = topic
        self.queue_id = queue_id
        # Whole entries per file: Java rounds mappedFileSizeConsumeQueue up to a multiple of 20.
        self.file_size = -(-file_size // CQ_UNIT_SIZE) * CQ_UNIT_SIZE
        self.files = MappedFileQueue(directory, self.file_size, readonly=readonly)
        self.min_logic_offset = 0  # first readable queue offset, raised by expiry
        self.max_phy_end = 0       # commit log offset just past the last entry's message
        # recover() found the end at a slot that is not zero: no entry was cut short there,
        # something overwrote the queue, and entries after it may be missing.
        self.ended_on_garbage = False

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
                    self.ended_on_garbage = view[pos:pos + CQ_UNIT_SIZE] != bytes(CQ_UNIT_SIZE)
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

    def truncate(self, queue_offset: int) -> None:
        """Forget (and zero) every entry from `queue_offset` on; files wholly past it go."""
        self.files.truncate(max(queue_offset * CQ_UNIT_SIZE, self.files.min_offset))
        last = self.entry(self.max_offset - 1) if self.max_offset else None
        self.max_phy_end = last[0] + last[1] if last is not None else 0

    # -- writing ---------------------------------------------------------------------------

    def put(self, queue_offset: int, phy_offset: int, size: int, tags_code: int) -> None:
        """Write the entry for `queue_offset`. Writing the same entry twice is harmless, which
        is what lets recovery re-dispatch a range without checking what is already there.
        An entry before the queue's first file was expired with it: there is nothing to write
        (a queue rebuilt from an early CommitLog offset passes those on its way).

        Raises ValueError for an entry that no file holds and the next file would not hold
        either: a record whose queue offset leaps ahead (a crafted or damaged CommitLog, a
        master's bytes on a slave) must not create a file for every slot in between."""
        pos = queue_offset * CQ_UNIT_SIZE
        mf = self.files.find(pos)
        while mf is None:
            last = self.files.last()
            if last is not None and pos < self.files.min_offset:
                return
            if last is not None and not 0 <= pos - last.file_from_offset < 2 * self.file_size:
                raise ValueError(f"no file holds queue offset {queue_offset}, the queue ends "
                                 f"at {self.max_offset}")
            start = pos - pos % self.file_size if last is None else \
                last.file_from_offset + self.file_size
            created = self.files.create(start)
            if last is None and pos > start:
                self._fill_pre_blank(created, pos - start, queue_offset)
            mf = self.files.find(pos)
        self._write(mf, pos - mf.file_from_offset, phy_offset, size, tags_code)

    def put_in_last(self, queue_offset: int, phy_offset: int, size: int, tags_code: int
                    ) -> bool:
        """put() when the entry's slot is in the queue's last file and that file can be
        written (the reput's common case: reput.dispatch_plain, and csrc/reput.c, which does
        the same from the same attributes); False, with nothing written, otherwise."""
        files = self.files.files
        if not files:
            return False
        mf = files[-1]
        local = queue_offset * CQ_UNIT_SIZE - mf.file_from_offset
        if mf.mm is None or mf.readonly or local < 0 or local + CQ_UNIT_SIZE > mf.file_size:
            return False
        self._write(mf, local, phy_offset, size, tags_code)
        return True

    def _write(self, mf: MappedFile, local: int, phy_offset: int, size: int,
               tags_code: int) -> None:
        CQ_ENTRY.pack_into(mf.mm, local, phy_offset, size, tags_code)  # type: ignore[arg-type]
        if local + CQ_UNIT_SIZE > mf.wrote_position:
            mf.wrote_position = local + CQ_UNIT_SIZE
        if phy_offset + size > self.max_phy_end:
            self.max_phy_end = phy_offset + size

    def put_run(self, queue_offset: int, phy_offset: int, sizes: list[int],
                tags_codes: list[int]) -> None:
        """The entries of consecutive records from `phy_offset` at consecutive queue offsets
        (a batch): one write when they share a file, else entry by entry."""
        pos = queue_offset * CQ_UNIT_SIZE
        end = pos + len(sizes) * CQ_UNIT_SIZE
        mf = self.files.find(pos)
        if mf is None or end > mf.file_from_offset + self.file_size:
            for i, size in enumerate(sizes):
                self.put(queue_offset + i, phy_offset, size, tags_codes[i])
                phy_offset += size
            return
        data = queue_entries(phy_offset, sizes, tags_codes)
        local = pos - mf.file_from_offset
        mf.write_at(local, data)
        if local + len(data) > mf.wrote_position:
            mf.wrote_position = local + len(data)
        phy_end = phy_offset + sum(sizes)
        if phy_end > self.max_phy_end:
            self.max_phy_end = phy_end

    def _fill_pre_blank(self, mf: MappedFile, until: int, queue_offset: int) -> None:
        """A queue whose first entry is not its file's first (a slave that replicates from
        the master's last CommitLog file, a queue whose files all expired): the slots before
        it get Java's blank entries (offset 0, size Integer.MAX_VALUE), so that recovery,
        which ends a queue at its first empty slot, finds the entries after them."""
        mf.write_at(0, _PRE_BLANK * (until // CQ_UNIT_SIZE))
        mf.wrote_position = until
        self.min_logic_offset = max(self.min_logic_offset, queue_offset)

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

    def first_pointing_at(self, phy_offset: int) -> int:
        """The first queue offset whose entry points at or past `phy_offset` (max_offset if
        none): physical offsets grow along a queue, so it is a binary search away."""
        lo, hi = self.min_offset, self.max_offset
        while lo < hi:
            mid = (lo + hi) // 2
            entry = self.entry(mid)
            if entry is not None and entry[0] < phy_offset:
                lo = mid + 1
            else:
                hi = mid
        return lo

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

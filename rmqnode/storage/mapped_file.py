"""Fixed-size store files named by their start offset, mapped into memory (RocketMQ's MappedFile).

Appends are memory copies into the mapping, or (the CommitLog's puts, commitlog.place_records)
pwrites into the file it maps shared, so a write is in the page cache when it returns (what
ASYNC_FLUSH acknowledges) and readers of the mapping see it; `flush` fdatasyncs the file
(what SYNC_FLUSH waits for). Files are created at their full size (Java RocketMQ expects
every file of a queue to have the configured size). CommitLog files have their blocks
reserved up front, so that a full disk is an error at file creation, never a crash on write;
consume queue and index files stay sparse as in Java (thousands of queues would otherwise
reserve gigabytes), and the disk-usage limit before each new CommitLog file keeps room for
them. While a CommitLog file's flushes are small, zeros are kept written ahead of its
appends (MappedFile.zero_ahead), so that group commits do not pay the reserved blocks'
conversion each time.
"""

from __future__ import annotations

import errno
import mmap
import os
from collections.abc import Iterator
from pathlib import Path

from rmqnode import log

_log = log.get("rmqnode.storage")

PAGE = mmap.PAGESIZE
HUGE_PAGE = 2 * 1024 * 1024  # a PMD's reach on x86-64 and arm64 (4 KiB base pages)
_ZERO_CHUNK = 1 << 20
# How far ahead of its appends a CommitLog file has zeros written (MappedFile.zero_ahead).
ZERO_AHEAD = 256 << 10
SMALL_FLUSH = ZERO_AHEAD // 4  # flushes up to this size (group commits of single sends) gain
_ZEROS = bytes(ZERO_AHEAD)


def file_name(offset: int) -> str:
    """RocketMQ names store files by their first offset, 20 digits, zero padded."""
    return f"{offset:020d}"


class MappedFile:
    __slots__ = ("path", "file_from_offset", "file_size", "wrote_position", "flushed_position",
                 "_fd", "mm", "readonly", "zeroed_to", "zero_mark", "flush_size")

    def __init__(self, path: str | os.PathLike, file_size: int, readonly: bool = False,
                 preallocate: bool = False) -> None:
        self.path = Path(path)
        self.file_from_offset = int(self.path.name)
        self.readonly = readonly
        if readonly:
            self._fd = os.open(self.path, os.O_RDONLY)
            self.file_size = os.fstat(self._fd).st_size
        else:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            size = os.fstat(self._fd).st_size
            if size < file_size:
                try:
                    if preallocate:
                        # Reserve the blocks now: a full disk fails here, cleanly, rather than
                        # as SIGBUS on a later write into a sparse mapping.
                        os.posix_fallocate(self._fd, 0, file_size)
                    else:
                        os.ftruncate(self._fd, file_size)  # sparse, as Java creates them
                        if size == 0:
                            # The first store through a mapping into a hole of a new file
                            # costs milliseconds on ext4 (page_mkwrite allocation); the same
                            # page written with pwrite costs a tenth of that.
                            os.pwrite(self._fd, bytes(min(PAGE, file_size)), 0)
                except OSError:
                    os.close(self._fd)
                    if size == 0:
                        self.path.unlink(missing_ok=True)
                    raise
                size = file_size
            self.file_size = size
        access = mmap.ACCESS_READ if readonly else mmap.ACCESS_WRITE
        self.mm = mmap.mmap(self._fd, self.file_size, access=access) if self.file_size else None
        if self.mm is not None and not readonly:
            # No readahead while the file is written. With it the kernel caches a mapped
            # file in large folios (up to megabytes), a store through the mapping dirties a
            # whole folio, and the next fdatasync writes all of it: after 30 MiB appended,
            # each 9 KiB group commit wrote 793 KiB and took 2.9 ms instead of 0.5 (ext4,
            # Linux 6.18). pwrite() does not have the problem; stores through the mapping
            # do, unless the mapping is MADV_RANDOM.
            self.mm.madvise(mmap.MADV_RANDOM)
        self.wrote_position = 0
        self.flushed_position = 0
        self.zeroed_to = 0  # zero_ahead has written zeros up to here
        self.zero_mark = 0  # an append that ends past here calls zero_ahead first
        self.flush_size = 0  # bytes the last flush wrote

    def __repr__(self) -> str:
        return f"MappedFile({self.path.name}, wrote={self.wrote_position})"

    @property
    def end_offset(self) -> int:
        """The global offset just after the last written byte."""
        return self.file_from_offset + self.wrote_position

    @property
    def fd(self) -> int:
        """The file's descriptor, for writes that skip the mapping (commitlog.place_records)."""
        return self._fd

    @property
    def remaining(self) -> int:
        return self.file_size - self.wrote_position

    @property
    def is_full(self) -> bool:
        return self.wrote_position >= self.file_size

    def append(self, data: bytes | bytearray | memoryview) -> int:
        """Copy `data` at the write position; returns the position it was written at."""
        pos = self.wrote_position
        end = pos + len(data)
        if end > self.file_size:
            raise ValueError(f"{self.path.name}: {len(data)} bytes do not fit at {pos}")
        self.mm[pos:end] = data  # type: ignore[index]
        self.wrote_position = end
        return pos

    def zero_ahead(self, end: int) -> None:
        """While this file's flushes are small (SMALL_FLUSH), write zeros from the write
        position (or the last zeros) to ZERO_AHEAD past `end`, where the coming append ends;
        the appender calls it when `end` passes `zero_mark`, half of ZERO_AHEAD before the
        zeros end (or, while flushes are large, every half of ZERO_AHEAD appended).

        Why write zeros the file already reads as: blocks reserved by posix_fallocate are
        "unwritten" extents, and the first fdatasync after a write into one must also commit
        the extent's conversion to the journal, a second disk write and cache flush. Zeros
        written ahead are converted in one commit per ZERO_AHEAD bytes; the group commits
        that follow only write data. Measured on ext4 here (fdatasync after each 32 KiB
        write, a SYNC_FLUSH round of 32 x 1 KiB): 290-370 us a round into reserved blocks,
        110-240 us with 256 KiB of zeros kept ahead, as into a file zeroed whole; 1 KiB
        rounds 173-194 -> 122-141 us mean. The zeros cost a copy into the page cache and,
        flushed before the data overwrites them, a second disk write of the same blocks: a
        loss where flushes are large (batches of 32, 260 KB rounds: -4%), hence SMALL_FLUSH."""
        if self.flush_size < SMALL_FLUSH:
            start = max(self.zeroed_to, self.wrote_position)
            stop = min(self.file_size, max(end, start) + ZERO_AHEAD)
            while start < stop:
                wrote = os.pwrite(self._fd, memoryview(_ZEROS)[:stop - start], start)
                if not wrote:
                    raise OSError(errno.EIO, f"{self.path.name} took no more zeros at {start}")
                start += wrote
            self.zeroed_to = stop
        self.zero_mark = max(self.zeroed_to, end + ZERO_AHEAD) - ZERO_AHEAD // 2

    def write_at(self, pos: int, data: bytes | bytearray | memoryview) -> None:
        """Overwrite in place (rebuilding consume queues, patching recovered tails)."""
        self.mm[pos:pos + len(data)] = data  # type: ignore[index]

    def huge_pages(self, size: int) -> None:
        """The file's first `size` bytes mapped in huge pages where the kernel can
        (MADV_HUGEPAGE): an index file's hash slots (20 MB), where every key lands on a
        random page. On 4 KiB pages nearly every key cost a TLB miss whose page walk, in a
        virtual machine, took 3-8 us (C++ client, 16 threads: an eighth of the node's CPU);
        on 2 MiB pages the 20 MB are ten TLB entries. A slot written dirties its huge page,
        so writeback writes whole 2 MiB pages of the slot table (at most its 20 MB), and a
        lightly used index keeps up to 20 MB of it cached where small pages kept a few; the
        entries after it stay on small pages."""
        if self.mm is None or not hasattr(mmap, "MADV_HUGEPAGE"):
            return
        length = min(-(-size // HUGE_PAGE) * HUGE_PAGE, self.file_size)
        try:
            self.mm.madvise(mmap.MADV_HUGEPAGE, 0, length)
        except OSError:  # a kernel without transparent huge pages: small pages, as before
            pass

    def written(self) -> None:
        """The file is complete: readers of it (consumers catching up from disk) get the
        kernel's readahead back."""
        if self.mm is not None:
            self.mm.madvise(mmap.MADV_NORMAL)

    def view(self, pos: int = 0, size: int | None = None) -> memoryview:
        """Bytes of the file without copying; valid until the file is closed."""
        end = self.wrote_position if size is None else pos + size
        return memoryview(self.mm)[pos:end]  # type: ignore[arg-type]

    def read(self, pos: int, size: int) -> bytes:
        return self.mm[pos:pos + size]  # type: ignore[index]

    def flush(self) -> int:
        """Get what was written since the last flush to disk; returns the flushed position.

        fdatasync, not mmap.flush: on Linux both write back the mapping's dirty pages (msync
        is a ranged fsync), but CPython's mmap.flush keeps the GIL during msync, which would
        stall the event loop for the whole flush; os.fdatasync releases it."""
        end = self.wrote_position
        if end > self.flushed_position and self.mm is not None:
            self.flush_size = end - self.flushed_position
            os.fdatasync(self._fd)
            self.flushed_position = end
        return self.flushed_position

    def truncate_to(self, pos: int, zero: bool = True) -> None:
        """Forget everything from `pos` on and, with `zero`, zero what is stored there, so that
        no later scan mistakes stale bytes for records (recovery of a torn or dirty tail).
        Only the file's data extents are looked at, a chunk at a time, and only chunks that are
        not zero already are written: the unwritten remainder of a 1 GiB file stays so.
        A read-only file only forgets: offline readers never change a store."""
        if zero and self.mm is not None and not self.readonly:
            for start, end in self._data_extents(pos):
                for chunk in range(start, end, _ZERO_CHUNK):
                    stop = min(chunk + _ZERO_CHUNK, end)
                    if self.mm[chunk:stop].count(0) != stop - chunk:
                        self.mm[chunk:stop] = bytes(stop - chunk)
        self.wrote_position = pos
        self.flushed_position = min(self.flushed_position, pos)
        self.zeroed_to = min(self.zeroed_to, pos)
        self.zero_mark = 0

    def _data_extents(self, pos: int) -> Iterator[tuple[int, int]]:
        size = self.file_size
        while pos < size:
            try:
                start = os.lseek(self._fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after pos
                return
            end = min(os.lseek(self._fd, start, os.SEEK_HOLE), size)
            if start >= size:
                return
            yield start, end
            pos = end

    def close(self) -> None:
        if self.mm is not None and not self.mm.closed:
            try:
                self.mm.close()
            except BufferError:
                pass  # a reader still holds a view; the mapping goes when the last view does
            self.mm = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def destroy(self) -> None:
        self.close()
        if not self.readonly:
            self.path.unlink(missing_ok=True)


def offset_named(folder: Path) -> list[Path]:
    """The files of a folder named by their first offset (20 digits), in order. Anything
    else of such a name (a directory) is listed too: reading it fails loudly, by its name,
    rather than being skipped."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.isdigit() and len(p.name) == 20)


def check_sizes(paths: list[Path], file_size: int) -> None:
    """What a node refuses to start on: a file of another size than the configured one.
    An empty last file is not one: a crash between creating a file and sizing it leaves
    it (Java's stores too), and it never held anything."""
    for i, path in enumerate(paths):
        size = path.stat().st_size
        if size != file_size and not (size == 0 and i == len(paths) - 1):
            raise OSError(f"{path}: size {size} differs from the configured "
                          f"{file_size}; check mappedFileSize settings")


class MappedFileQueue:
    """The ordered files of one log (the CommitLog, or one ConsumeQueue)."""

    def __init__(self, directory: str | os.PathLike, file_size: int, readonly: bool = False,
                 preallocate: bool = False) -> None:
        self.directory = Path(directory)
        self.file_size = file_size
        self.readonly = readonly
        self.preallocate = preallocate
        self.files: list[MappedFile] = []

    def load(self) -> None:
        """Map existing files; a file of the wrong size means a broken store, said plainly
        (check_sizes). An empty last file is dropped, not refused."""
        paths = offset_named(self.directory)
        if not self.readonly:
            check_sizes(paths, self.file_size)
        for i, path in enumerate(paths):
            if i == len(paths) - 1 and path.stat().st_size == 0:
                if not self.readonly:
                    _log.warning("store.empty_file_removed", path=path)
                    path.unlink()
                break
            mf = MappedFile(path, self.file_size, readonly=self.readonly)
            mf.wrote_position = mf.flushed_position = mf.file_size
            if self.files and not self.readonly:
                self.files[-1].written()
            self.files.append(mf)

    def last(self) -> MappedFile | None:
        return self.files[-1] if self.files else None

    def last_for_append(self) -> MappedFile:
        """The file to append to, creating the next one when the last is full."""
        last = self.last()
        if last is not None and not last.is_full:
            return last
        start = last.file_from_offset + self.file_size if last is not None else 0
        return self.create(start)

    def create(self, start: int) -> MappedFile:
        self.directory.mkdir(parents=True, exist_ok=True)
        mf = MappedFile(self.directory / file_name(start), self.file_size,
                        preallocate=self.preallocate)
        if self.files:
            self.files[-1].written()
        self.files.append(mf)
        return mf

    def find(self, offset: int) -> MappedFile | None:
        """The file holding the global `offset`, or None when it is outside every file. The
        last file is asked first: appends, and most reads, are there."""
        files = self.files
        if not files:
            return None
        last = files[-1]
        if 0 <= offset - last.file_from_offset < self.file_size:
            return last
        if offset < files[0].file_from_offset:
            return None
        index = (offset - files[0].file_from_offset) // self.file_size
        if index < len(files) and files[index].file_from_offset <= offset < \
                files[index].file_from_offset + self.file_size:
            return files[index]
        return None

    @property
    def min_offset(self) -> int:
        return self.files[0].file_from_offset if self.files else 0

    @property
    def max_offset(self) -> int:
        last = self.last()
        return last.end_offset if last is not None else 0

    @property
    def flushed_offset(self) -> int:
        for mf in reversed(self.files):
            if mf.flushed_position:
                return mf.file_from_offset + mf.flushed_position
        return self.min_offset

    def flush(self) -> int:
        """fdatasync every file with unflushed bytes; returns the flushed global offset."""
        for mf in self.files:
            if mf.flushed_position < mf.wrote_position:
                mf.flush()
        return self.flushed_offset

    def truncate(self, offset: int, zero: bool = True) -> None:
        """Drop everything at and after `offset`: later files are deleted, the one holding it
        is cut there (zeroed from there, with `zero`)."""
        keep: list[MappedFile] = []
        for mf in self.files:
            if mf.file_from_offset + self.file_size <= offset:
                keep.append(mf)
            elif mf.file_from_offset <= offset:
                mf.truncate_to(offset - mf.file_from_offset, zero)
                keep.append(mf)
            else:
                mf.destroy()
        self.files = keep

    def delete_first(self, count: int) -> list[MappedFile]:
        gone, self.files = self.files[:count], self.files[count:]
        for mf in gone:
            mf.destroy()
        return gone

    def __iter__(self) -> Iterator[MappedFile]:
        return iter(self.files)

    def close(self) -> None:
        for mf in self.files:
            mf.close()

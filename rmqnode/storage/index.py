"""Message lookup by key (RocketMQ's IndexService): index files of a hash-slot table and
linked entries, keys `topic#key` for every KEYS word and the UNIQ_KEY."""

from __future__ import annotations

import bisect
import os
from pathlib import Path

from rmqnode.speedups import accelerate
from rmqnode.storage.mapped_file import MappedFile
from rmqnode.storage.records import (INDEX_ENTRY, INDEX_HEADER, INDEX_SLOT, index_entry_pos,
                                     index_file_name, index_file_size, index_key,
                                     index_key_hash, index_put, index_slot_pos)


class IndexFile:
    def __init__(self, path: Path, slots: int, max_entries: int, readonly: bool = False) -> None:
        self.slots = slots
        self.max_entries = max_entries
        size = index_file_size(slots, max_entries)
        self.mf = MappedFile(path, size, readonly=readonly)
        self.mf.huge_pages(INDEX_HEADER.size + slots * INDEX_SLOT.size)
        (self.begin_timestamp, self.end_timestamp, self.begin_phy_offset, self.end_phy_offset,
         _, self.index_count) = INDEX_HEADER.unpack(self.mf.read(0, INDEX_HEADER.size))
        if self.index_count == 0:
            self.index_count = 1  # entry 0 is never used: slot value 0 means "empty"
        self.synced_count = self.index_count  # entries on disk as of the last sync

    @property
    def name(self) -> str:
        return self.mf.path.name

    @property
    def is_full(self) -> bool:
        return self.index_count >= self.max_entries

    def put(self, topic: str, keys: list[str], offsets: list[int], store_timestamp: int) -> int:
        """Add `topic#key` for each of `keys` (at its message's offset in `offsets`, all
        stored at `store_timestamp`) while there is room: how many went in."""
        count = self.index_count
        if count >= self.max_entries or not keys:
            return 0
        if count == 1 and self.begin_timestamp == 0:
            self.begin_timestamp = store_timestamp
            self.begin_phy_offset = offsets[0]
        end = index_put(self.mf.mm, self.slots, count,  # type: ignore[arg-type]
                        self.max_entries, self.begin_timestamp, topic, keys, offsets,
                        store_timestamp)
        if end > count:
            self.index_count = end
            self.end_timestamp = store_timestamp
            self.end_phy_offset = offsets[end - count - 1]
        return end - count

    def _write_header(self) -> None:
        self.mf.write_at(0, INDEX_HEADER.pack(self.begin_timestamp, self.end_timestamp,
                                              self.begin_phy_offset, self.end_phy_offset,
                                              self._used_slots_hint(), self.index_count))

    def _used_slots_hint(self) -> int:
        # Java counts slots that were empty when first used; readers do not depend on it.
        return min(self.index_count, self.slots)

    def select(self, key: str, max_num: int, begin: int, end: int) -> list[int]:
        """Commit log offsets of entries for `key` stored within [begin, end] (ms), newest first.
        Hash collisions are possible: callers re-check the key on the message."""
        out: list[int] = []
        h = index_key_hash(key)
        (pos,) = INDEX_SLOT.unpack(self.mf.read(index_slot_pos(h, self.slots), 4))
        seen = 0
        while 0 < pos < self.index_count and len(out) < max_num and seen < self.index_count:
            seen += 1
            key_hash, phy, diff, prev = INDEX_ENTRY.unpack(
                self.mf.read(index_entry_pos(pos, self.slots), INDEX_ENTRY.size))
            ts = self.begin_timestamp + diff * 1000
            if key_hash == h and begin <= ts <= end:
                out.append(phy)
            if prev <= 0 or prev >= pos or ts < begin:
                break  # a chain runs newest first: past `begin`, every older entry is too
            pos = prev
        return out

    def write_header(self) -> None:
        """The header is written here (each second), not per key: after a crash a stale
        header only means recovery re-indexes from the older end offset it records."""
        if not self.mf.readonly:
            self._write_header()

    def flush(self) -> None:
        """The header, then entries and header to disk when keys came since the last flush."""
        if self.mf.readonly:
            return
        self._write_header()
        if self.index_count != self.synced_count:
            os.fdatasync(self.mf.fd)
            self.synced_count = self.index_count

    def close(self) -> None:
        if not self.mf.readonly and self.mf.mm is not None:
            self._write_header()
        self.mf.close()


def index_in_last(files: list[IndexFile], topic: str, keys: list[str], offsets: list[int],
                  store_timestamp: int) -> bool:
    """The reput's common run of keys (one topic, one store time) written into the last index
    file (IndexFile.put) when all of it fits there after what the file holds; False, with
    nothing written, when it is IndexService.build's: no file yet, a first entry, a file
    without room for the whole run, keys of messages indexed before. In C when built, called
    from the reput's dispatch_plain: under one sender, the three Python calls down to
    index_put cost more than the entries."""
    if not files or not keys or len(keys) != len(offsets):
        return False
    last = files[-1]
    count = last.index_count
    if (count + len(keys) > last.max_entries or count == 1 and last.begin_timestamp == 0
            or offsets[0] < last.end_phy_offset or last.mf.readonly):
        return False
    return last.put(topic, keys, offsets, store_timestamp) == len(keys)


index_in_last = accelerate(index_in_last)


class IndexService:
    def __init__(self, directory: str, slots: int, max_entries: int,
                 readonly: bool = False) -> None:
        self.directory = Path(directory)
        self.slots = slots
        self.max_entries = max_entries
        self.readonly = readonly
        self.files: list[IndexFile] = []
        # The end of the last file flushed when full: the checkpoint's indexMsgTimestamp.
        self.flushed_timestamp = 0

    def load(self) -> None:
        if not self.directory.is_dir():
            return
        for path in sorted(p for p in self.directory.iterdir() if p.name.isdigit()):
            self.files.append(IndexFile(path, self.slots, self.max_entries, self.readonly))

    def build(self, topic: str, keys: list[str], offsets: list[int],
              store_timestamp: int) -> None:
        """Index dispatched messages stored at `store_timestamp`: keys[i] of the message at
        offsets[i] (ascending). Messages below the last file's end were indexed before
        (recovery re-dispatches a range), so they are skipped, as Java does."""
        last = self.files[-1] if self.files else None
        if last is not None and offsets and offsets[0] < last.end_phy_offset:
            skip = bisect.bisect_left(offsets, last.end_phy_offset)
            keys, offsets = keys[skip:], offsets[skip:]
        while keys:
            fresh = last is None or last.is_full
            if fresh:
                last = self._new_file(store_timestamp)
            done = last.put(topic, keys, offsets, store_timestamp)  # type: ignore[union-attr]
            if done == len(keys) or done == 0 and fresh:
                return  # all in, or an index file that holds nothing (maxIndexNum below 2)
            keys, offsets = keys[done:], offsets[done:]

    def _new_file(self, timestamp: int) -> IndexFile:
        if self.files:
            self.files[-1].write_header()  # synced by the next flush(), off the loop
        self.directory.mkdir(parents=True, exist_ok=True)
        name = index_file_name(timestamp)
        while (self.directory / name).exists():
            timestamp += 1
            name = index_file_name(timestamp)
        f = IndexFile(self.directory / name, self.slots, self.max_entries)
        self.files.append(f)
        return f

    def query(self, topic: str, key: str, max_num: int, begin: int, end: int) -> list[int]:
        out: list[int] = []
        for f in reversed(self.files):
            if f.end_timestamp and f.end_timestamp < begin:
                break
            if f.begin_timestamp > end:
                continue
            out += f.select(index_key(topic, key), max_num - len(out), begin, end)
            if len(out) >= max_num:
                break
        return out

    @property
    def last_update(self) -> tuple[int, int]:
        """(timestamp, commit log offset) of the newest indexed message."""
        if not self.files:
            return 0, 0
        return self.files[-1].end_timestamp, self.files[-1].end_phy_offset

    def flush(self, current: bool = True) -> None:
        """Files that filled up since the last flush to disk, and the one being written
        with `current` (at close), else only its header. Java flushes an index file once it
        is full, not periodically: a sync of the current file each second costs its random
        slot pages a writeback and a write fault each (C++ client, 16 threads: +1.5 us of
        node CPU per message). After a crash the reput re-indexes what a stale header says
        is missing; the checkpoint's indexMsgTimestamp is the end of the last file synced."""
        files = list(self.files)  # the loop may add one meanwhile (this runs in a thread)
        if not files:
            return
        for f in files[:-1]:
            if f.index_count != f.synced_count:
                try:
                    f.flush()
                except (ValueError, OSError):  # ValueError: a closed mapping
                    if f.mf.mm is not None:
                        raise
                    continue  # expired meanwhile: delete_before closed it on the loop
                self.flushed_timestamp = max(self.flushed_timestamp, f.end_timestamp)
        if current:
            files[-1].flush()
            self.flushed_timestamp = max(self.flushed_timestamp, files[-1].end_timestamp)
        else:
            files[-1].write_header()

    def delete_before(self, phy_offset: int) -> None:
        """Expiry: drop whole files that index only messages below `phy_offset`."""
        while len(self.files) > 1 and self.files[0].end_phy_offset < phy_offset:
            f = self.files.pop(0)
            f.close()
            os.unlink(f.mf.path)

    def close(self) -> None:
        for f in self.files:
            f.close()

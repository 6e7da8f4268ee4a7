"""A slave's store: the master's CommitLog bytes appended as they come, then indexed (Java's
DefaultMessageStore.appendToCommitLog and, on a slave, its ReputMessageService).

The HA stream cuts records anywhere (chunks end at haTransferBatchSize or a file's end), so
appending and indexing are two steps: `append` copies bytes and returns at once (the slave
reports its new offset to the master straight after, which is what a SYNC_MASTER waits for),
and the records completed so far are dispatched into consume queues and the index in slices
on the event loop, so a catch-up of gigabytes never holds the loop for long.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from rmqnode import log
from rmqnode.message import MessageExt
from rmqnode.storage.dispatch import request_from_message
from rmqnode.storage.records import Blank, CorruptRecord, decode_record, peek

if TYPE_CHECKING:
    from rmqnode.storage.store import MessageStore

_log = log.get("rmqnode.storage")

SLICE_BYTES = 4 * 1024 * 1024  # dispatched per loop iteration, at most


class ReplicaWriter:
    def __init__(self, store: MessageStore) -> None:
        self.store = store
        self._scheduled = False
        self.broken: CorruptRecord | None = None  # a record that does not decode stops indexing

    def append(self, offset: int, data: bytes | memoryview) -> None:
        """Copy the master's bytes at `offset` (see CommitLog.append_data, whose ValueError
        this raises) and have the records they complete dispatched soon."""
        if self.store.readonly:
            raise ValueError("the store is read-only")
        self.store.commitlog.append_data(offset, data)
        if not self._scheduled and self.broken is None:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._dispatch_slice)

    def _dispatch_slice(self) -> None:
        self._scheduled = False
        if self.dispatch(SLICE_BYTES):
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._dispatch_slice)

    def dispatch(self, budget: int) -> bool:
        """Dispatch the complete records after the store's reput offset, about `budget`
        bytes of them; True when complete records are left."""
        store = self.store
        files = store.commitlog.files
        arrived: dict[tuple[str, int], int] = {}
        start = offset = store.reput_offset
        stored = 0
        try:
            while offset - start < budget:
                mf = files.find(offset)
                if mf is None:
                    if files.files and offset < files.min_offset:  # expired under us
                        offset = files.min_offset
                        continue
                    break
                local = offset - mf.file_from_offset
                view = mf.view(0, mf.wrote_position)
                try:
                    size, _ = peek(view, local)
                    if size <= 0 or local + size > mf.wrote_position:
                        break  # the rest of this record has not arrived yet
                    rec = decode_record(view, local, mf.file_from_offset, read_body=False)
                finally:
                    del view
                if isinstance(rec, Blank):
                    offset = mf.file_from_offset + mf.file_size
                    continue
                assert isinstance(rec, MessageExt)
                if store._dispatch(request_from_message(rec, store.delay_levels)):
                    arrived[(rec.topic, rec.queue_id)] = rec.queue_offset + 1
                store.last_store_timestamp = rec.store_timestamp
                offset += size
                stored += 1
        except CorruptRecord as exc:
            self.broken = exc
            _log.error("replica.corrupt_record", offset=exc.offset, reason=exc.reason,
                       action="indexing stopped; the CommitLog keeps what the master sent")
        if stored:
            store.stats.stored(stored, offset - start)
        store.reput_offset = offset
        store._arrived(arrived)
        return self.broken is None and offset - start >= budget

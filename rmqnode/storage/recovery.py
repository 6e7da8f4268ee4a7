"""Recovery of a store at open (Java's recoverNormally / recoverAbnormally): find where the
CommitLog's valid records end, cut a torn tail, drop queue entries past it or damaged, and
re-dispatch what the queues and the index may have missed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rmqnode import log
from rmqnode.storage.mapped_file import MappedFile
from rmqnode.storage.queue_check import repair_queue_tails
from rmqnode.storage.records import CorruptRecord, check_record

if TYPE_CHECKING:
    from rmqnode.storage.store import MessageStore

_log = log.get("rmqnode.storage")


def recover(store: MessageStore, abnormal: bool) -> None:
    """Validate the CommitLog's tail, cut what is torn, drop queue entries past the cut,
    and re-dispatch what the queues and index may have missed.

    After a clean stop only the last three files are checked (as Java does); after a crash
    the scan starts at the first file older than the checkpoint and checks every CRC. The
    records are only checked here, not decoded: only re-dispatch decodes. Queue tails that
    do not match their records are dropped and rebuilt (queue_check).
    """
    for cq in store.queues.values():
        cq.recover()
    files = store.commitlog.files.files
    valid_end = 0
    redispatch_from: int | None = None
    torn = False
    if files:
        if abnormal:
            valid_end = _crash_scan_start(store, files).file_from_offset
        else:
            valid_end = _clean_scan_start(store, files)
        safe = store.checkpoint.min_timestamp()
        try:
            for offset, size, stamp in store.commitlog.extents(valid_end, abnormal):
                if redispatch_from is None and stamp >= safe:
                    redispatch_from = offset
                valid_end = offset + size
        except CorruptRecord as exc:
            torn = True
            _log.warning("recover.corrupt_tail", file=exc.file, offset=exc.offset,
                         reason=exc.reason)
    _log.info("recover.commitlog_end", offset=valid_end, after_crash=abnormal)
    written_end = files[-1].file_from_offset + files[-1].file_size if files else 0
    # After a clean stop with an intact tail nothing was written past the end.
    store.commitlog.files.truncate(valid_end, zero=abnormal or torn)
    rebuild_from = repair_queue_tails(list(store.queues.values()), store.commitlog,
                                      written_end)
    dispatched = max((cq.max_phy_end for cq in store.queues.values()), default=0)
    if abnormal:
        # Queues and index were flushed up to the checkpoint's time: re-dispatch what was
        # stored since (3 s of margin included), not the whole file.
        dispatched = valid_end if redispatch_from is None else redispatch_from
    if rebuild_from is not None:
        dispatched = min(dispatched, rebuild_from)
    store.reput_offset = min(dispatched, valid_end)
    store.reput_offset = max(store.reput_offset, store.commitlog.min_offset)
    if not store.readonly:
        store.redispatch_from_log()
    store.commitlog.topic_queue_table = {k: cq.max_offset for k, cq in store.queues.items()}

def _clean_scan_start(store: MessageStore, files: list[MappedFile]) -> int:
    """Where to check the CommitLog from after a clean stop: Java checks the last three
    files; the queues were flushed with the log, so we start at the last record a queue
    points to, once that record checks out (CRC included), and check only what follows."""
    start = files[max(0, len(files) - 3)].file_from_offset
    cq = max(store.queues.values(), key=lambda q: q.max_phy_end, default=None)
    if cq is None or cq.max_phy_end <= start:
        return start
    entry = cq.entry(cq.max_offset - 1)
    view = store.commitlog.view(entry[0], entry[1]) if entry is not None else None
    if view is None:
        return start
    try:
        size, _ = check_record(view, 0, entry[0], check_crc=True)
    except CorruptRecord:
        return start
    return entry[0] if size == entry[1] else start

def _crash_scan_start(store: MessageStore, files: list[MappedFile]) -> MappedFile:
    """The newest file whose first message is older than the checkpoint's safe point."""
    safe = store.checkpoint.min_timestamp(index_safe=False)
    for mf in reversed(files):
        first = store.commitlog.message_at(mf.file_from_offset, read_body=False)
        if first is not None and first.store_timestamp <= safe:
            return mf
    return files[0]

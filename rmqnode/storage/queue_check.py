"""The consume-queue check at start: a queue's last entries must point at its own records.

Java's recovery only cuts queue entries that point past the CommitLog's end. A queue file
damaged in other ways (garbage written over it, a copy from another store) would then serve
entries that point at the wrong bytes, and, worse, hide the messages its real entries would
have pointed to. So each queue's tail is checked against the CommitLog: the record an entry
points to must be a message of this topic and queue, at this queue offset, of this size.
Entries that fail are dropped back to the last one that matches, and the caller re-dispatches
the CommitLog from there, which rebuilds them. Only tails are checked, as Java checks only
the last files: one record per queue on a healthy store, so start stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rmqnode import log
from rmqnode.storage.consumequeue import ConsumeQueue
from rmqnode.storage.records import CQ_UNIT_SIZE

if TYPE_CHECKING:
    from rmqnode.storage.commitlog import CommitLog

_log = log.get("rmqnode.storage")


def repair_queue_tails(queues: list[ConsumeQueue], commitlog: CommitLog,
                       written_end: int) -> int | None:
    """Drop every queue's tail entries that do not match their records; returns the CommitLog
    offset to re-dispatch from so that damaged entries are rebuilt, None if none was.

    `written_end` is where the CommitLog's files ended before recovery cut a torn tail: an
    entry pointing between the cut and there lost its record with the cut, and is dropped
    without more ado (as Java's truncateDirtyLogicFiles does). Any other mismatch is damage."""
    redispatch_from: int | None = None
    for cq in queues:
        good, damaged = _matching_end(cq, commitlog, written_end)
        where = cq.files.find(good * CQ_UNIT_SIZE)
        dropped = cq.max_offset - good
        if dropped or damaged:
            cq.truncate(good)  # zeroes the garbage too, or the next start would find it
        if not damaged:
            continue
        start = max(cq.max_phy_end, commitlog.min_offset)
        _log.warning("recover.queue_tail_damaged",
                     file=where.path if where is not None else cq.files.directory,
                     queue_offset=good, dropped_entries=dropped, rebuild_from=start)
        redispatch_from = start if redispatch_from is None else min(redispatch_from, start)
    return redispatch_from


def _matching_end(cq: ConsumeQueue, commitlog: CommitLog, written_end: int
                  ) -> tuple[int, bool]:
    """(the queue offset just past the last entry that matches its record, whether a damaged
    entry was passed on the way). Entries pointing below the CommitLog's start count as
    matching: their files expired, there is nothing to compare."""
    end = cq.max_offset
    damaged = cq.ended_on_garbage
    while end > cq.min_offset:
        entry = cq.entry(end - 1)
        if entry is not None and entry[0] < commitlog.min_offset:
            break
        if entry is not None and commitlog.max_offset <= entry[0] \
                and entry[0] + entry[1] <= written_end:
            end -= 1  # its record was in the torn tail
            continue
        if entry is not None and _points_at_own_record(cq, end - 1, entry, commitlog):
            break
        damaged = True
        end -= 1
    return end, damaged


def _points_at_own_record(cq: ConsumeQueue, queue_offset: int, entry: tuple[int, int, int],
                          commitlog: CommitLog) -> bool:
    phy, size, _ = entry
    msg = commitlog.message_at(phy, read_body=False)
    return (msg is not None and msg.store_size == size and msg.topic == cq.topic
            and msg.queue_id == cq.queue_id and msg.queue_offset == queue_offset)

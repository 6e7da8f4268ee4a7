"""Expiry (CleanCommitLogService + CleanConsumeQueueService): CommitLog files older than
fileReservedTime hours go at the deleteWhen hour, or at once when the disk is fuller than
diskMaxUsedSpaceRatio, or when an operator asks; queues and index then drop what pointed there.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import TYPE_CHECKING

from rmqnode import log

if TYPE_CHECKING:
    from rmqnode.storage.store import MessageStore

_log = log.get("rmqnode.storage")

DELETE_FILES_BATCH_MAX = 10


def disk_used_ratio(path: str) -> float:
    usage = shutil.disk_usage(path)
    return usage.used / usage.total if usage.total else 0.0


def is_delete_hour(delete_when: str, now: float) -> bool:
    """deleteWhen is one hour or several separated by ';' ("04", "03;04")."""
    hour = time.localtime(now).tm_hour
    return any(h.strip().isdigit() and int(h) == hour for h in delete_when.split(";"))


def delete_expired_commitlog(store: MessageStore, now: float, manual: bool = False) -> int:
    """Delete expired CommitLog files (never the one being written); returns how many."""
    cfg = store.config
    files = store.commitlog.files.files
    if len(files) < 2:
        return 0
    ratio = disk_used_ratio(cfg.commit_log_dir)
    disk_full = ratio * 100 > cfg.diskMaxUsedSpaceRatio
    if not (manual or disk_full or is_delete_hour(cfg.deleteWhen, now)):
        return 0
    reserved = cfg.fileReservedTime * 3600
    victims = 0
    for mf in files[:-1][:DELETE_FILES_BATCH_MAX]:
        if now - os.stat(mf.path).st_mtime < reserved and not disk_full:
            break
        victims += 1
    if not victims:
        return 0
    gone = store.commitlog.files.delete_first(victims)
    _log.warning("expire.commitlog", files=len(gone), min_offset=store.commitlog.min_offset,
                 reason="disk" if disk_full else "manual" if manual else "time",
                 disk_used=f"{ratio:.0%}")
    correct_queues(store)
    return len(gone)


def correct_queues(store: MessageStore) -> None:
    """Drop consume-queue files wholly below the CommitLog's new start, and move each queue's
    min offset to its first entry that still points at a message."""
    log_min = store.commitlog.min_offset
    for cq in store.queues.values():
        files = cq.files.files
        while len(files) > 1 and files[0].wrote_position == cq.file_size:
            last_phy = cq.entry((files[0].file_from_offset + cq.file_size) // 20 - 1)
            if last_phy is None or last_phy[0] >= log_min:
                break
            files.pop(0).destroy()
        cq.min_logic_offset = cq.first_pointing_at(log_min)
    store.index.delete_before(log_min)

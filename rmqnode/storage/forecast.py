"""What the next start of a node would do to a store, found before anyone starts it.

The forecast runs the store's own recovery (recovery.py) on a read-only open: the same scan
start, the same checks, the same cut, so the forecast cannot drift from what a node does.
A read-only store only forgets what recovery cuts (nothing is zeroed, deleted or
re-dispatched), so afterwards its CommitLog ends where the node's would and each consume
queue keeps the entries the node's would keep before it re-dispatches the CommitLog.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from rmqnode.errors import RemotingError
from rmqnode.storage.mapped_file import check_sizes, offset_named
from rmqnode.storage.reader import store_config
from rmqnode.storage.store import MessageStore


class StartRefused(Exception):
    """The node would not start on this store (its own words)."""


@dataclass(slots=True)
class Forecast:
    abnormal: bool        # an abort file: the crash recovery (every CRC from the checkpoint)
    commitlog_end: int    # the CommitLog ends here after recovery; what follows is cut
    queue_ends: dict[tuple[str, int], int] = field(default_factory=dict)  # kept max offsets


def forecast_recovery(root: Path) -> Forecast:
    """Raises StartRefused where a node's open would fail (file sizes it refuses)."""
    config = store_config(root)
    try:  # the sizes a node's open refuses; the read-only open below reads any size
        check_sizes(offset_named(root / "commitlog"), config.mappedFileSizeCommitLog)
    except OSError as exc:
        raise StartRefused(str(exc)) from None
    store = MessageStore(config, readonly=True)
    quiet = logging.getLogger("rmqnode")
    was = quiet.level
    quiet.setLevel(logging.CRITICAL)  # recovery's warnings are a node's log, not a report
    try:
        store.open()
        return Forecast(store.recovered_abnormally, store.commitlog.max_offset,
                        {k: cq.max_offset for k, cq in store.queues.items()})
    except (OSError, ValueError, RemotingError) as exc:
        raise StartRefused(str(exc)) from None
    finally:
        quiet.setLevel(was)
        store.close_readonly()

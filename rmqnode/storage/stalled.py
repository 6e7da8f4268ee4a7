"""Queues whose consume queue cannot be written for now (a full disk, a file where the queue's
directory must be, a permission error).

One such queue must not stop the reput for all the others: their consumers would see nothing
new while the CommitLog keeps growing. So the reput skips a stalled queue and goes on; the
store retries it every second and, once its file can be written, catches it up from the
CommitLog starting at the first entry that failed. Until then the checkpoint's logics time
stays before that entry, so that a crash or a stop re-dispatches it on the next start.
"""

from __future__ import annotations

from rmqnode import log
from rmqnode.storage.dispatch import DispatchRequest

_log = log.get("rmqnode.storage")

QueueKey = tuple[str, int]


class StalledQueues:
    """The first entry that could not be written, per stalled queue."""

    def __init__(self) -> None:
        self.first: dict[QueueKey, DispatchRequest] = {}
        self._throttled = log.Throttled(_log)

    def __contains__(self, key: QueueKey) -> bool:
        return key in self.first

    def __bool__(self) -> bool:
        return bool(self.first)

    def stall(self, req: DispatchRequest, error: OSError) -> None:
        """`req`'s entry could not be written: the queue waits from there (a retry that fails
        again keeps the earlier first entry, so nothing between is skipped)."""
        key = (req.topic, req.queue_id)
        self.first.setdefault(key, req)
        self._throttled.error("dispatch.queue_stalled", key=key, topic=req.topic,
                              queue=req.queue_id, path=error.filename or "-",
                              commit_log_offset=self.first[key].commit_log_offset,
                              error=error.strerror or error)

    def take(self) -> list[DispatchRequest]:
        """Every stalled queue's first entry, for a retry (which stalls again what fails)."""
        taken = list(self.first.values())
        self.first.clear()
        return taken

    def resumed(self, key: QueueKey, max_offset: int) -> None:
        self._throttled.forget(key)
        _log.warning("dispatch.queue_resumed", topic=key[0], queue=key[1],
                     max_offset=max_offset)

    @property
    def oldest_timestamp(self) -> int | None:
        """The store time of the oldest entry not yet written (a bound for the checkpoint)."""
        return min((r.store_timestamp for r in list(self.first.values())), default=None)

"""Consume queues an operator asks the store to forget (mqadmin cleanExpiredCQ and
cleanUnusedTopic), as DefaultMessageStore.cleanExpiredConsumerQueue and cleanUnusedTopic do.

Both run on the event loop between two puts, like every other change of the queue table.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from rmqnode.storage.dispatch import SCHEDULE_TOPIC

if TYPE_CHECKING:
    from rmqnode.storage.store import MessageStore

# Never dropped as unused: the store writes them without a topic config (Java's exceptions).
_KEPT = frozenset({SCHEDULE_TOPIC, "RMQ_SYS_TRANS_OP_HALF_TOPIC"})


def clean_expired_queues(store: MessageStore) -> list[tuple[str, int]]:
    """Drop every queue (but the delay levels') whose last message lies wholly before the
    CommitLog's first byte: all it indexes is gone. As in Java the queue starts again from
    offset 0 if messages come. A queue with messages not yet dispatched is left alone: its
    newest entries are still to be written. Returns the queues dropped."""
    begin = store.commitlog.min_offset
    next_offsets = store.commitlog.topic_queue_table
    dropped = [key for key, cq in store.queues.items()
               if key[0] != SCHEDULE_TOPIC and cq.max_offset > 0 and cq.max_phy_end < begin
               and next_offsets.get(key, 0) <= cq.max_offset]
    for key in dropped:
        cq = store.queues.pop(key)
        cq.destroy()
        shutil.rmtree(cq.files.directory, ignore_errors=True)
        next_offsets.pop(key, None)
    return dropped


def clean_unused_topics(store: MessageStore, topics: set[str]) -> list[str]:
    """Drop the queues of every topic the broker has no config for (left behind by a topic
    deleted while the broker was down, or by a broker.conf that changed), as
    DELETE_TOPIC_IN_BROKER would. Returns the topics dropped."""
    unused = sorted({t for t, _ in store.queues if t not in topics and t not in _KEPT})
    for topic in unused:
        store.delete_topic(topic)
    return unused

"""The reput: what the CommitLog holds, written into the consume queues and the index
(DefaultMessageStore's ReputMessageService and CommitLogDispatchers), with stalled queues
retried and waiting pulls told when messages arrive.

A part of MessageStore, kept apart for its size: it works on the store's `commitlog`,
`queues`, `index`, `stalled`, `_pending` and `reput_offset` (set up in MessageStore.__init__).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from pathlib import Path

from rmqnode import log
from rmqnode.config import BrokerConfig
from rmqnode.errors import RemotingError
from rmqnode.message import TRANSACTION_MASK, MessageExt
from rmqnode.storage.commitlog import CommitLog
from rmqnode.storage.consumequeue import ConsumeQueue
from rmqnode.speedups import accelerate
from rmqnode.storage.dispatch import (DispatchBatch, DispatchRequest, goes_to_queue, is_indexed,
                                      request_from_message)
from rmqnode.storage.index import IndexFile, IndexService, index_in_last
from rmqnode.storage.records import Blank, CorruptRecord
from rmqnode.storage.stalled import StalledQueues
from rmqnode.validation import quote

_log = log.get("rmqnode.storage")

IndexWriter = Callable[[str, list, list, int, int], None]


def dispatch_plain(pending: deque, queues: dict[tuple[str, int], ConsumeQueue],
                   stalled: dict, arrived: dict[tuple[str, int], int], index: IndexWriter,
                   index_files: list[IndexFile] | None) -> tuple[int, int] | None:
    """The reput's common case, in one call (in C when built): from the left of `pending`,
    single puts (plain tuples) of messages with no transaction flag whose queue exists, is not
    stalled, and has the entry's slot in its last file (ConsumeQueue.put_in_last, which
    writes it there). For each, `arrived` gets its queue's new end, and its index keys join
    a run of one topic and store time, written when the run ends into the last of
    `index_files` (index_in_last) or else by index(topic, keys, offsets, store time, first
    offset); `index_files` is None when messages are not indexed.

    Stops at the first request it cannot do that way, left in `pending` for the reput's
    general path (which also creates files and stalls queues). Returns the CommitLog offset
    past the last message done and its store time; None when it did none."""
    done = None
    run_topic, run_stamp, run_keys, run_offsets = "", -1, [], []
    try:
        while pending:
            req = pending[0]
            if type(req) is not tuple:
                break
            topic, queue_id, offset, size, tags_code, stamp, queue_offset, keys, sys_flag = req
            key = (topic, queue_id)
            if sys_flag & TRANSACTION_MASK or key in stalled:
                break
            cq = queues.get(key)
            if cq is None or not cq.put_in_last(queue_offset, offset, size, tags_code):
                break
            pending.popleft()
            arrived[key] = queue_offset + 1
            if keys and index_files is not None:
                if run_keys and (stamp != run_stamp or topic != run_topic):
                    written, at, run_keys, run_offsets = run_keys, run_offsets, [], []
                    if not index_in_last(index_files, run_topic, written, at, run_stamp):
                        index(run_topic, written, at, run_stamp, at[0])
                run_topic, run_stamp = topic, stamp
                run_keys += keys
                run_offsets += [offset] * len(keys)
            done = offset + size, stamp
    finally:  # also when a request fails: those before it are queued, their keys go too
        if run_keys and not index_in_last(index_files, run_topic, run_keys, run_offsets,
                                          run_stamp):
            index(run_topic, run_keys, run_offsets, run_stamp, run_offsets[0])
    return done


dispatch_plain = accelerate(dispatch_plain)


class QueueDispatch:
    # What it uses of MessageStore (set in its __init__).
    config: BrokerConfig
    readonly: bool
    commitlog: CommitLog
    cq_root: Path
    queues: dict[tuple[str, int], ConsumeQueue]
    index: IndexService
    delay_levels: list[int]
    reput_offset: int
    stalled: StalledQueues
    arrival_listeners: list[Callable[[dict[tuple[str, int], int]], None]]
    append_listeners: list[Callable[[], None]]
    last_dispatched_timestamp: int
    _pending: deque[DispatchRequest | tuple | DispatchBatch]  # a put's request: a plain tuple
    _reput_scheduled: bool
    reput_after_read: bool  # inside a read that ReputAfterRead ends with the reput
    _loop: asyncio.AbstractEventLoop | None  # the running store's: see _schedule_reput
    _retry: asyncio.TimerHandle | None
    _throttled: log.Throttled

    def redispatch_from_log(self) -> None:
        """Dispatch every record from reput_offset to the end of the CommitLog (recovery and
        rebuilding queues from scratch)."""
        count = 0
        try:
            for offset, rec in self.commitlog.scan(self.reput_offset):
                if isinstance(rec, MessageExt):
                    self._dispatch(request_from_message(rec, self.delay_levels))
                    count += 1
                self.reput_offset = offset + (rec.size if isinstance(rec, Blank)
                                              else rec.store_size)
        except CorruptRecord as exc:  # validated just before; only a racing writer gets here
            _log.error("reput.corrupt", offset=exc.offset, reason=exc.reason)
        if count:
            _log.info("recover.redispatched", messages=count)

    # -- consume queues --------------------------------------------------------------------

    def _queue(self, topic: str, queue_id: int) -> ConsumeQueue:
        key = (topic, queue_id)
        cq = self.queues.get(key)
        if cq is None:
            cq = self.queues[key] = ConsumeQueue(str(self.cq_root), topic, queue_id,
                                                 self.config.mappedFileSizeConsumeQueue,
                                                 readonly=self.readonly)
        return cq

    def find_queue(self, topic: str, queue_id: int) -> ConsumeQueue | None:
        return self.queues.get((topic, queue_id))

    def _dispatch(self, req: DispatchRequest | tuple) -> bool:
        """Write the queue entry and the index keys of one stored message; False when it
        has no queue entry now (none due, or its queue is stalled). `req` is a
        DispatchRequest or, from a put, its fields as a plain tuple."""
        topic, _, offset, _, _, stamp, _, keys, sys_flag = req
        # Once per message: the flag functions asked only about a transaction's message.
        plain = not sys_flag & TRANSACTION_MASK
        queued = (plain or goes_to_queue(sys_flag)) and self._enqueue(req)
        if keys and self.config.messageIndexEnable and (plain or is_indexed(sys_flag)):
            self._index(topic, keys, [offset] * len(keys), stamp, offset)
        self.last_dispatched_timestamp = stamp
        return queued

    def _dispatch_batch(self, batch: DispatchBatch) -> bool:
        """_dispatch for a batch: its queue entries in one write. What a run cannot do (its
        queue is stalled, or the write fails) goes message by message, as _dispatch does:
        an entry written twice is harmless."""
        if not batch.goes_to_queue or (batch.topic, batch.queue_id) in self.stalled:
            return self._dispatch_each(batch)
        try:
            self._queue(batch.topic, batch.queue_id).put_run(
                batch.queue_offset, batch.commit_log_offset, batch.sizes, batch.tags_codes)
        except (OSError, RemotingError, ValueError):
            return self._dispatch_each(batch)
        if self.config.messageIndexEnable and batch.is_indexed:
            self._index(batch.topic, batch.keys, batch.key_offsets, batch.store_timestamp,
                        batch.commit_log_offset)
        self.last_dispatched_timestamp = batch.store_timestamp
        return True

    def _index(self, topic: str, keys: list[str], offsets: list[int], store_timestamp: int,
               commit_log_offset: int) -> None:
        """The index entries of dispatched messages (keys[i] at offsets[i]): into the last
        index file when they fit it (a batch's keys, most often), else _build_index."""
        if not index_in_last(self.index.files, topic, keys, offsets, store_timestamp):
            self._build_index(topic, keys, offsets, store_timestamp, commit_log_offset)

    def _build_index(self, topic: str, keys: list[str], offsets: list[int],
                     store_timestamp: int, commit_log_offset: int) -> None:
        """IndexService.build of keys the last index file did not take (dispatch_plain
        tried index_in_last already). An index file that cannot be written leaves them
        unindexed, as Java does: the messages stay stored and queued, only queries by key
        miss them."""
        try:
            self.index.build(topic, keys, offsets, store_timestamp)
        except OSError as exc:
            self._throttled.error("dispatch.index_failed", path=exc.filename or "-",
                                  commit_log_offset=commit_log_offset,
                                  error=exc.strerror or exc)

    def _dispatch_each(self, batch: DispatchBatch) -> bool:
        """Whether the last message of the batch has its queue entry now."""
        return [self._dispatch(req) for req in batch.requests()][-1]

    def _enqueue(self, req: DispatchRequest | tuple) -> bool:
        """The consume queue entry; a queue whose file cannot be written stalls (see
        StalledQueues) and the others go on."""
        topic, queue_id, offset, size, tags_code, _, queue_offset, _, _ = req
        key = (topic, queue_id)
        if key in self.stalled.first:  # the dict itself: once per message
            return False
        try:
            cq = self.queues.get(key)
            if cq is None:
                cq = self._queue(topic, queue_id)
            cq.put(queue_offset, offset, size, tags_code)
        except OSError as exc:
            self.stalled.stall(DispatchRequest(*req), exc)
            return False
        except RemotingError as exc:  # a record whose topic cannot name a directory
            self._throttled.error("dispatch.unsafe_topic", key=topic, topic=quote(topic),
                                  commit_log_offset=offset, error=exc.remark)
            return False
        except ValueError as exc:  # a queue offset far from the queue's end: stored, unqueued
            self._throttled.error("dispatch.queue_order", key=key, topic=quote(topic),
                                  queue_id=queue_id, commit_log_offset=offset, error=str(exc))
            return False
        return True

    def _reput(self) -> None:
        """The reput step: index what was appended, then tell waiting pulls."""
        self._reput_scheduled = False
        arrived: dict[tuple[str, int], int] = {}
        pending = self._pending
        index_files = self.index.files if self.config.messageIndexEnable else None
        while pending:
            done = dispatch_plain(pending, self.queues, self.stalled.first, arrived,
                                  self._build_index, index_files)
            if done is not None:
                self.reput_offset, self.last_dispatched_timestamp = done
            if not pending:
                break
            # What dispatch_plain leaves: a batch, a transaction's record, a queue with no
            # file for the entry yet, or a stalled one. Index keys are written as each
            # message is dispatched, so the index keeps the order of the CommitLog.
            req = pending.popleft()
            if isinstance(req, DispatchBatch):
                if self._dispatch_batch(req):
                    arrived[(req.topic, req.queue_id)] = req.queue_offset + len(req.sizes)
                self.reput_offset = req.end
            else:
                topic, queue_id, offset, size, _, _, queue_offset, _, _ = req
                if self._dispatch(req):
                    arrived[(topic, queue_id)] = queue_offset + 1
                self.reput_offset = offset + size
        self._arrived(arrived)
        for listener in self.append_listeners:
            listener()
        if self.stalled:
            self._schedule_retry()

    def _arrived(self, arrived: dict[tuple[str, int], int]) -> None:
        """Each listener is told of every queue's new end at once: called per queue, the two
        listeners of a broker cost a quarter of the reput's Python under one sender."""
        if arrived:
            for listener in self.arrival_listeners:
                listener(arrived)

    def _schedule_retry(self) -> None:
        if self._retry is None:
            self._retry = asyncio.get_running_loop().call_later(1.0, self._retry_stalled)

    def _retry_stalled(self) -> None:
        """Each second while queues are stalled: write each one's first missing entry and,
        if that works, the rest from the CommitLog up to where the reput is."""
        self._retry = None
        caught_up = {}
        for first in self.stalled.take():
            key = (first.topic, first.queue_id)
            if self._catch_up(first):
                caught_up[key] = self.queues[key].max_offset
                self.stalled.resumed(key, caught_up[key])
        self._arrived(caught_up)
        if self.stalled:
            self._schedule_retry()

    def _catch_up(self, first: DispatchRequest) -> bool:
        if not self._enqueue(first):
            return False
        key = (first.topic, first.queue_id)
        try:
            for offset, rec in self.commitlog.scan(first.commit_log_offset + first.size):
                if offset >= self.reput_offset:
                    break
                if isinstance(rec, MessageExt) and (rec.topic, rec.queue_id) == key:
                    req = request_from_message(rec, self.delay_levels)
                    if goes_to_queue(req.sys_flag) and not self._enqueue(req):
                        return False
        except CorruptRecord as exc:  # validated at start and written by us since
            _log.error("reput.corrupt", file=exc.file, offset=exc.offset, reason=exc.reason)
        return True

    def _schedule_reput(self) -> None:
        if not self._reput_scheduled:
            self._reput_scheduled = True
            if self.reput_after_read:
                return  # ReputAfterRead runs it when the read of these puts ends
            # asyncio.get_running_loop() makes a getpid() system call: once per read of
            # sends is worth saving, so the started store keeps its loop.
            loop = self._loop
            if loop is None:
                loop = asyncio.get_running_loop()
            loop.call_soon(self._reput)


class ReputAfterRead:
    """The context of a read of requests (net.connection.Dispatcher.around_read) that runs
    the reput of what the read stored when it ends, after its answers are written, if
    `alone()` says no other read can join it in this loop iteration (one connection feeds the
    broker). Otherwise the reput is left to the end of the iteration (call_soon), where one
    reput covers the reads of every connection: with 16 connections, a reput per read cost
    10% more CPU per send. With one, there is nothing to gather, and the call_soon only cost
    a pass through the loop's ready queue and (uvloop) a poll: the C++ client's 1 thread,
    3-6% less node CPU per message (two sets of 8 alternating pairs)."""

    __slots__ = ("store", "alone")

    def __init__(self, store: QueueDispatch, alone: Callable[[], bool]) -> None:
        self.store = store
        self.alone = alone

    def __enter__(self) -> None:
        self.store.reput_after_read = self.alone()

    def __exit__(self, *exc_info: object) -> None:
        store = self.store
        if not store.reput_after_read:
            return
        store.reput_after_read = False
        if store._reput_scheduled:
            try:
                store._reput()
            except Exception as exc:  # noqa: BLE001 - as the loop logs a failed callback
                _log.error("reput.failed", error=type(exc).__name__, message=str(exc))

"""The message store (RocketMQ's DefaultMessageStore): CommitLog, ConsumeQueues, IndexFiles,
checkpoint and abort file, with flush, reput, recovery and the broker's read path.

Life cycle: `open()` loads and recovers (a leftover `abort` file means the last run crashed),
`start()` runs the background services, `close()` flushes, writes the checkpoint and removes
`abort`. The same recovery serves a crashed Java RocketMQ store.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import shutil
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rmqnode import log
from rmqnode.config import BrokerConfig
from rmqnode.message import (DELAY, REAL_QID, REAL_TOPIC, TRANSACTION_COMMIT_TYPE,
                             TRANSACTION_MASK, MessageExt, host_bytes, offset_msg_ids,
                             wait_store_ok)
from rmqnode.storage.cleanup import delete_expired_commitlog
from rmqnode.storage.commitlog import Appended, CommitLog
from rmqnode.storage.consumequeue import ConsumeQueue
from rmqnode.storage.dispatch import (SCHEDULE_TOPIC, DispatchBatch, DispatchRequest,
                                      batch_dispatch, dispatch_request, index_keys,
                                      parse_delay_levels)
from rmqnode.storage.flush import FlushService
from rmqnode.storage.index import IndexService
from rmqnode.storage import records
from rmqnode.storage.records import (CHECKPOINT_FILE_SIZE, Checkpoint, RecordRefused,
                                     encode_messages)
from rmqnode.storage.recovery import recover
from rmqnode.storage.reput import QueueDispatch
from rmqnode.storage.stalled import StalledQueues
from rmqnode.storage.stats import SAMPLE_EVERY, StoreStats
from rmqnode.validation import store_path

_log = log.get("rmqnode.storage")

# PutMessageStatus names, as Java's broker maps them to response codes.
PUT_OK = "PUT_OK"
FLUSH_DISK_TIMEOUT = "FLUSH_DISK_TIMEOUT"
MESSAGE_ILLEGAL = records.MESSAGE_ILLEGAL  # these two: records.RecordRefused's
PROPERTIES_SIZE_EXCEEDED = records.PROPERTIES_SIZE_EXCEEDED
FLUSH_SLAVE_TIMEOUT = "FLUSH_SLAVE_TIMEOUT"  # SYNC_MASTER: no slave ack within slaveTimeout
SLAVE_NOT_AVAILABLE = "SLAVE_NOT_AVAILABLE"  # SYNC_MASTER: no slave, or one too far behind
SERVICE_NOT_AVAILABLE = "SERVICE_NOT_AVAILABLE"
CREATE_MAPEDFILE_FAILED = "CREATE_MAPEDFILE_FAILED"


# GetMessageStatus names.
FOUND = "FOUND"
NO_MATCHED_MESSAGE = "NO_MATCHED_MESSAGE"
OFFSET_FOUND_NULL = "OFFSET_FOUND_NULL"
OFFSET_OVERFLOW_BADLY = "OFFSET_OVERFLOW_BADLY"
OFFSET_OVERFLOW_ONE = "OFFSET_OVERFLOW_ONE"
OFFSET_TOO_SMALL = "OFFSET_TOO_SMALL"
NO_MESSAGE_IN_QUEUE = "NO_MESSAGE_IN_QUEUE"


@dataclass(slots=True)
class GetResult:
    status: str
    next_begin_offset: int
    min_offset: int
    max_offset: int
    messages: list[memoryview] = field(default_factory=list)


class StoreLockedError(OSError):
    """Another process has this store open."""


@dataclass(slots=True)
class Message:
    """A message to store (MessageExtBrokerInner): what the broker received, decoded."""
    topic: str
    queue_id: int
    body: bytes
    properties: dict[str, str] = field(default_factory=dict)
    flag: int = 0
    sys_flag: int = 0
    born_timestamp: int = 0
    born_host: bytes = b"\x7f\x00\x00\x01\x00\x00\x00\x00"
    reconsume_times: int = 0
    prepared_transaction_offset: int = 0
    # Java's propertiesString, when the record keeps other properties than those that steer
    # the put (a send drops WAIT from the record; a delivered delayed message or a committed
    # transaction keeps what it was parked with). None: `properties`, in HashMap order.
    properties_string: str | None = None


    @classmethod
    def copy_of(cls, stored: MessageExt, topic: str, queue_id: int,
                properties: dict[str, str], properties_string: str | None = None,
                **changes: int) -> Message:
        """A stored message to be stored again elsewhere (retry, delay due, transaction
        commit or check-back): same body, flags and birth, new place and properties."""
        fields = dict(flag=stored.flag, sys_flag=stored.sys_flag,
                      born_timestamp=stored.born_timestamp, born_host=stored.born_host,
                      reconsume_times=stored.reconsume_times,
                      prepared_transaction_offset=stored.prepared_transaction_offset)
        fields.update(changes)
        return cls(topic=topic, queue_id=queue_id, body=stored.body, properties=properties,
                   properties_string=properties_string, **fields)


@dataclass(slots=True)
class PutResult:
    status: str
    appended: Appended | None = None
    msg_ids: list[str] = field(default_factory=list)
    remark: str = ""

    @property
    def ok(self) -> bool:
        """Stored, whether or not on disk or on a slave in time."""
        return self.status in (PUT_OK, FLUSH_DISK_TIMEOUT, FLUSH_SLAVE_TIMEOUT,
                               SLAVE_NOT_AVAILABLE)


class MessageStore(QueueDispatch):
    """DefaultMessageStore: its reput (CommitLog -> consume queues and index) is
    QueueDispatch, in storage/reput.py."""

    def __init__(self, config: BrokerConfig, readonly: bool = False) -> None:
        self.config = config
        self.readonly = readonly
        self.root = Path(config.storePathRootDir)
        self.store_host = host_bytes(config.broker_addr)
        self.delay_levels = parse_delay_levels(config.messageDelayLevel)
        self.commitlog = CommitLog(config.commit_log_dir, config.mappedFileSizeCommitLog,
                                   self.store_host, readonly=readonly)
        self.cq_root = self.root / "consumequeue"
        self.queues: dict[tuple[str, int], ConsumeQueue] = {}
        self.index = IndexService(str(self.root / "index"), config.maxHashSlotNum,
                                  config.maxIndexNum, readonly=readonly)
        self.checkpoint = Checkpoint()
        self.sync_flush = config.flushDiskType == "SYNC_FLUSH"
        self.flusher = FlushService(self._flush_commitlog,
                                    config.flushIntervalCommitLog / 1000.0)
        self.reput_offset = 0
        self._pending: deque[DispatchRequest | tuple | DispatchBatch] = deque()
        self._reput_scheduled = False
        self.reput_after_read = False  # see reput.ReputAfterRead
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stalled = StalledQueues()
        self._retry: asyncio.TimerHandle | None = None
        self._throttled = log.Throttled(_log)  # errors that repeat on every send or dispatch
        self.arrival_listeners: list[Callable[[dict[tuple[str, int], int]], None]] = []
        self.append_listeners: list[Callable[[], None]] = []  # after each reput (HA master)
        self.stats = StoreStats()  # brokerStatus's put and get figures
        self.last_store_timestamp = 0
        self.last_dispatched_timestamp = 0
        self.recovered_abnormally = False
        self._lock_fd = -1
        self._tasks: list[asyncio.Task] = []

    def set_store_host(self, addr: str) -> None:
        """The broker's advertised address, once it is known (before open)."""
        self.store_host = host_bytes(addr)
        self.commitlog.store_host = self.store_host

    # -- opening and recovery --------------------------------------------------------------

    @property
    def abort_path(self) -> Path:
        return self.root / "abort"

    def open(self) -> None:
        """Load every file and recover to a consistent state."""
        if not self.readonly:
            self.root.mkdir(parents=True, exist_ok=True)
            self._lock()
        abnormal = self.abort_path.exists()
        self.checkpoint = self._read_checkpoint()
        self.commitlog.load()
        self._load_queues()
        self.index.load()
        recover(self, abnormal)
        # Java's recoverTopicQueueTable (correctMinOffset): a queue starts at its first entry
        # pointing into the CommitLog. A slave's queues begin with blank entries up to the
        # first message it was sent.
        log_min = self.commitlog.min_offset
        for cq in self.queues.values():
            cq.min_logic_offset = max(cq.min_logic_offset, cq.first_pointing_at(log_min))
        if not self.readonly:
            self.abort_path.touch()
            self._write_checkpoint()
        self.recovered_abnormally = abnormal

    def _load_queues(self) -> None:
        """Every consume queue under consumequeue/<topic>/<queueId>. A regular file where a
        directory belongs is skipped with a warning, as Java skips it: one stray file must
        not keep the broker from starting (its topic's queue stalls until it is removed)."""
        if not self.cq_root.is_dir():
            return
        for topic_dir in sorted(self.cq_root.iterdir()):
            if not topic_dir.is_dir():
                _log.warning("store.stray_file_skipped", path=topic_dir,
                             expected="a topic directory")
                continue
            for qdir in sorted(topic_dir.iterdir()):
                if not qdir.name.isdigit():
                    continue
                if not qdir.is_dir():
                    _log.warning("store.stray_file_skipped", path=qdir,
                                 expected="a queue directory")
                    continue
                self._queue(topic_dir.name, int(qdir.name)).load()

    def _lock(self) -> None:
        self._lock_fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise StoreLockedError(f"store {self.root} is in use by another process") from None

    def _read_checkpoint(self) -> Checkpoint:
        try:
            return Checkpoint.unpack((self.root / "checkpoint").read_bytes())
        except FileNotFoundError:
            return Checkpoint()

    def _write_checkpoint(self) -> None:
        data = self.checkpoint.pack().ljust(CHECKPOINT_FILE_SIZE, b"\0")
        fd = os.open(self.root / "checkpoint", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, data, 0)
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- writing ---------------------------------------------------------------------------

    def _park_delayed(self, msg: Message) -> None:
        """A message with a delay level goes to SCHEDULE_TOPIC_XXXX, queue level - 1, with its
        real topic and queue kept in properties, as Java's CommitLog.asyncPutMessage does: the
        level is rewritten only when past the highest, and the record is written from all the
        properties again (so it keeps the WAIT a send would have left out)."""
        level = msg.properties.get(DELAY)
        if not level or msg.sys_flag & TRANSACTION_MASK not in (0, TRANSACTION_COMMIT_TYPE):
            return
        try:
            n = int(level)
        except ValueError:
            return
        if n <= 0:
            return
        n = min(n, len(self.delay_levels))
        if level != str(n):  # past the highest, or spelt so the scheduler could not read it
            msg.properties[DELAY] = str(n)
        msg.properties[REAL_TOPIC] = msg.topic
        msg.properties[REAL_QID] = str(msg.queue_id)
        msg.properties_string = None
        msg.topic, msg.queue_id = SCHEDULE_TOPIC, n - 1

    def put_nowait(self, messages: list[Message]) -> PutResult:
        """Append one message, or a batch (same topic and queue, consecutive queue offsets),
        to the page cache. Flushing is the caller's to wait for (see put_messages)."""
        begin = time.perf_counter_ns()
        result = self._append(messages)
        appended = result.appended
        self.stats.put(len(messages) if appended else 0, appended.wrote_bytes if appended else 0,
                       time.perf_counter_ns() - begin)
        return result

    def _append(self, messages: list[Message]) -> PutResult:
        if self.readonly:
            return PutResult(SERVICE_NOT_AVAILABLE, remark="store is read-only")
        if self.config.brokerRole == "SLAVE":  # only replication writes a slave's CommitLog
            return PutResult(SERVICE_NOT_AVAILABLE, remark="broker role is slave")
        first = messages[0]
        single = len(messages) == 1
        if single and DELAY in first.properties:
            self._park_delayed(first)
        try:
            records, sizes = encode_messages(messages, self.store_host,
                                             self.config.maxMessageSize)
        except RecordRefused as exc:
            return PutResult(exc.status, remark=exc.remark)
        last = self.commitlog.room_in_last(len(records))
        if last is None and not self._room_for_new_file():
            return PutResult(SERVICE_NOT_AVAILABLE, remark="the disk is full")
        try:
            appended = self.commitlog.append(records, first.topic, first.queue_id, sizes, last)
        except OSError as exc:
            self._throttled.error("append.failed", key=exc.errno, path=exc.filename or "-",
                                  error=exc.strerror or exc)
            if exc.errno == errno.ENOSPC:
                return PutResult(SERVICE_NOT_AVAILABLE, remark="the disk is full")
            return PutResult(CREATE_MAPEDFILE_FAILED, remark=f"store cannot write: {exc}")
        except ValueError as exc:
            return PutResult(MESSAGE_ILLEGAL, remark=str(exc))
        stamp = appended.store_timestamp
        offset = appended.wrote_offset
        if single:
            self._pending.append(dispatch_request(
                first.topic, first.queue_id, offset, sizes[0], first.properties, stamp,
                appended.queue_offset, first.sys_flag, self.delay_levels))
        else:
            self._pending.extend(self._dispatch_of(messages, sizes, appended))
        self.last_store_timestamp = stamp
        if not self._reput_scheduled:  # once per read of sends, not per put
            self._schedule_reput()
        return PutResult(PUT_OK, appended, offset_msg_ids(self.store_host, offset, sizes))

    def _dispatch_of(self, messages: list[Message], sizes: list[int],
                     appended: Appended) -> list[DispatchBatch] | list[DispatchRequest]:
        """What the reput needs of a batch put: one run, when the messages share a sysFlag
        (which decides whether they are queued and indexed), else message by message."""
        first = messages[0]
        topic, stamp, offset = first.topic, appended.store_timestamp, appended.wrote_offset
        codes, keys, key_offsets, sys_flag = batch_dispatch(topic, messages, offset, sizes,
                                                            stamp, self.delay_levels)
        batch = DispatchBatch(topic, first.queue_id, offset, sizes, codes, stamp,
                              appended.queue_offset, keys, key_offsets,
                              first.sys_flag if sys_flag is None else sys_flag)
        if sys_flag is not None:
            return [batch]
        return [req._replace(sys_flag=msg.sys_flag)
                for req, msg in zip(batch.requests(), messages)]

    def _room_for_new_file(self) -> bool:
        """Java stops writing past diskSpaceWarningLevelRatio; we check before each new file,
        so queue files, the index and the checkpoint always find room for what was stored."""
        usage = shutil.disk_usage(self.config.commit_log_dir if os.path.isdir(
            self.config.commit_log_dir) else self.root)
        limit = usage.total * self.config.diskSpaceWarningLevelRatio / 100
        if usage.used + self.config.mappedFileSizeCommitLog > limit:
            self._throttled.error("store.disk_full", used=usage.used, total=usage.total,
                                  limit_ratio=self.config.diskSpaceWarningLevelRatio)
            return False
        return True

    async def put_messages(self, messages: list[Message]) -> PutResult:
        """Store and, under SYNC_FLUSH (unless the producer said WAIT=false), wait until the
        bytes are on disk; a flush slower than syncFlushTimeout answers FLUSH_DISK_TIMEOUT."""
        result = self.put_nowait(messages)
        if self.must_wait_flush(result, wait_store_ok(messages[0].properties)):
            await self.wait_flushed(result)
        return result

    def must_wait_flush(self, result: PutResult, wait_store: bool) -> bool:
        return self.sync_flush and result.status == PUT_OK and wait_store

    async def wait_flushed(self, result: PutResult) -> PutResult:
        fut: asyncio.Future[PutResult] = asyncio.get_running_loop().create_future()
        self.when_flushed(result, lambda done: fut.done() or fut.set_result(done))
        return await fut

    def when_flushed(self, result: PutResult, callback: Callable[[PutResult], None]) -> None:
        """callback(result) once the stored bytes are on disk; its status is FLUSH_DISK_TIMEOUT
        if that took longer than syncFlushTimeout. For the hot path: no task, no future."""
        end = result.appended.wrote_offset + result.appended.wrote_bytes  # type: ignore[union-attr]

        def flushed(ok: bool) -> None:
            if not ok:
                result.status = FLUSH_DISK_TIMEOUT
            callback(result)

        self.flusher.when_flushed(end, self.config.syncFlushTimeout / 1000.0, flushed)

    async def put_message(self, msg: Message) -> PutResult:
        return await self.put_messages([msg])

    # -- reading (the broker's read path) -------------------------------------------------

    def max_offset(self, topic: str, queue_id: int) -> int:
        cq = self.queues.get((topic, queue_id))
        return cq.max_offset if cq is not None else 0

    def min_offset(self, topic: str, queue_id: int) -> int:
        cq = self.queues.get((topic, queue_id))
        return cq.min_offset if cq is not None else 0

    def get_messages(self, topic: str, queue_id: int, offset: int, max_num: int,
                     match: Callable[[int], bool] | None = None,
                     max_bytes: int = 256 * 1024) -> GetResult:
        """Messages of one queue from `offset`, with RocketMQ's statuses and nextBeginOffset.

        `match` sees each entry's tag code (the consume-queue filter); entries it rejects are
        skipped but still advance nextBeginOffset, so consumers never re-scan them.
        """
        begin = time.perf_counter_ns()
        result = self._read(topic, queue_id, offset, max_num, match, max_bytes)
        self.stats.read(result.status == FOUND, len(result.messages),
                        time.perf_counter_ns() - begin)
        return result

    def _read(self, topic: str, queue_id: int, offset: int, max_num: int,
              match: Callable[[int], bool] | None, max_bytes: int) -> GetResult:
        cq = self.queues.get((topic, queue_id))
        if cq is None or cq.max_offset == 0:
            return GetResult(NO_MESSAGE_IN_QUEUE, 0, 0, 0)
        low, high = cq.min_offset, cq.max_offset
        if offset < low:
            return GetResult(OFFSET_TOO_SMALL, low, low, high)
        if offset == high:
            return GetResult(OFFSET_OVERFLOW_ONE, offset, low, high)
        if offset > high:
            return GetResult(OFFSET_OVERFLOW_BADLY, low if low == 0 else high, low, high)
        found: list[memoryview] = []
        size_total = 0
        next_offset = offset
        log_min = self.commitlog.min_offset
        scan_limit = max(16000 // 20, max_num)
        for q_offset, phy, size, tags in cq.entries(offset, scan_limit):
            if found and (len(found) >= max_num or size_total + size > max_bytes):
                break
            next_offset = q_offset + 1
            if phy < log_min:
                continue  # expired from the CommitLog
            if match is not None and not match(tags):
                continue
            view = self.commitlog.view(phy, size)
            if view is None:
                continue
            found.append(view)
            size_total += size
        if found:
            return GetResult(FOUND, next_offset, low, high, found)
        if next_offset == offset:  # the entry was not readable at all
            return GetResult(OFFSET_FOUND_NULL, offset + 1, low, high)
        return GetResult(NO_MATCHED_MESSAGE, next_offset, low, high)

    def delete_topic(self, topic: str) -> None:
        """Drop a topic's consume queues (DELETE_TOPIC_IN_BROKER); its CommitLog records stay
        until they expire, as in Java. A name that is no directory of consumequeue/ (`..`,
        `a/b`) raises RemotingError before anything is touched."""
        directory = store_path(self.cq_root, topic)
        for key in [k for k in self.queues if k[0] == topic]:
            self.queues.pop(key).destroy()
        shutil.rmtree(directory, ignore_errors=True)

    def message_at(self, commit_log_offset: int) -> MessageExt | None:
        return self.commitlog.message_at(commit_log_offset)

    def raw_message(self, commit_log_offset: int) -> bytes | None:
        """The stored bytes of the record at an offset (VIEW_MESSAGE_BY_ID's body)."""
        msg = self.commitlog.message_at(commit_log_offset, read_body=False)
        if msg is None:
            return None
        view = self.commitlog.view(commit_log_offset, msg.store_size)
        return bytes(view) if view is not None else None

    def store_time(self, commit_log_offset: int) -> int | None:
        msg = self.commitlog.message_at(commit_log_offset, read_body=False)
        return msg.store_timestamp if msg is not None else None

    def earliest_store_time(self, topic: str, queue_id: int) -> int:
        cq = self.queues.get((topic, queue_id))
        if cq is None:
            return -1
        entry = cq.entry(cq.min_offset)
        ts = self.store_time(entry[0]) if entry is not None else None
        return ts if ts is not None else -1

    def offset_by_time(self, topic: str, queue_id: int, timestamp: int,
                       upper: bool = False) -> int:
        """LOWER: the first offset stored at or after `timestamp` (the max offset if none).
        UPPER: the last offset stored at or before it (the min offset if none)."""
        cq = self.queues.get((topic, queue_id))
        if cq is None:
            return 0
        lo, hi = cq.min_offset, cq.max_offset - 1
        answer = cq.min_offset if upper else cq.max_offset
        while lo <= hi:
            mid = (lo + hi) // 2
            entry = cq.entry(mid)
            ts = self.store_time(entry[0]) if entry is not None else None
            if ts is None:
                lo = mid + 1
                continue
            if upper:
                if ts <= timestamp:
                    answer, lo = mid, mid + 1
                else:
                    hi = mid - 1
            elif ts >= timestamp:
                answer, hi = mid, mid - 1
            else:
                lo = mid + 1
        return answer

    def query_by_key(self, topic: str, key: str, max_num: int, begin: int = 0,
                     end: int = 2**62) -> list[MessageExt]:
        """Messages of `topic` whose KEYS or UNIQ_KEY contain `key` (hash collisions removed)."""
        out = []
        for phy in self.index.query(topic, key, max_num * 2, begin, end):
            msg = self.commitlog.message_at(phy)
            if msg is not None and msg.topic == topic and key in index_keys(msg.properties):
                out.append(msg)
                if len(out) >= max_num:
                    break
        return out

    # -- flushing and background services --------------------------------------------------

    def _flush_commitlog(self) -> int:
        stamp = self.last_store_timestamp
        flushed = self.commitlog.files.flush()
        if stamp:
            self.checkpoint.physic_msg_timestamp = stamp
        return flushed

    def _flush_logics(self, closing: bool = False) -> None:
        stamp = self.last_dispatched_timestamp
        stalled = self.stalled.oldest_timestamp
        if stalled is not None:  # a restart must re-dispatch what the stalled queues lack
            stamp = min(stamp, stalled)
        for cq in list(self.queues.values()):
            cq.flush()
        self.index.flush(current=closing)
        if stamp:
            self.checkpoint.logics_msg_timestamp = stamp
        if self.index.flushed_timestamp:
            self.checkpoint.index_msg_timestamp = self.index.flushed_timestamp
        self._write_checkpoint()

    async def _logics_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await asyncio.to_thread(self._flush_logics)
            except Exception as exc:  # noqa: BLE001 - one failed flush must not end them all
                _log.error("flush.logics_failed", error=type(exc).__name__, message=str(exc))

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_EVERY)
            self.stats.sample(int(time.time() * 1000))

    async def _cleanup_loop(self) -> None:
        while True:
            await asyncio.sleep(10.0)
            try:
                delete_expired_commitlog(self, time.time())
            except OSError as exc:
                _log.error("expire.failed", error=exc)

    def delete_expired_files(self) -> int:
        """An operator's request (DELETE_EXPIRED_COMMITLOG): expire now, whatever the hour."""
        return delete_expired_commitlog(self, time.time(), manual=True)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.flusher.flushed_offset = self.commitlog.max_offset
        self.flusher.start()
        if self.stalled:  # queues that recovery could not write
            self._schedule_retry()
        self._tasks.append(asyncio.create_task(self._logics_loop()))
        self._tasks.append(asyncio.create_task(self._cleanup_loop()))
        self._tasks.append(asyncio.create_task(self._stats_loop()))

    async def close(self) -> None:
        self._loop = None
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if not self.readonly:
            if self._pending:
                self._reput()
            await self.flusher.stop()
            self._flush_logics(closing=True)
            if self.stalled:
                # Their entries are in the CommitLog only: the abort file makes the next
                # start re-dispatch from the checkpoint, which stayed before them.
                _log.warning("store.closed_with_stalled_queues",
                             queues=",".join(f"{t}/{q}" for t, q in self.stalled.first))
            else:
                self.abort_path.unlink(missing_ok=True)
        self.close_readonly()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def close_readonly(self) -> None:
        """Unmap everything, writing nothing (offline readers call only this)."""
        self.commitlog.close()
        for cq in self.queues.values():
            cq.close()
        self.index.close()

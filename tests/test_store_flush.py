"""Getting a store's writes to disk: SYNC_FLUSH group commit and its timeouts, rounds
on the loop's thread, the zeros kept ahead of small flushes, a slow disk that stalls the
loop for one round only, and when index files are synced (store tests share
test_store_engine's helpers)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from rmqnode.storage.index import IndexFile
from rmqnode.storage.records import Checkpoint
from rmqnode.storage.store import FLUSH_DISK_TIMEOUT, PUT_OK
from test_store_engine import drain, msg, opened, run


def test_sync_flush_group_commit_and_timeout(tmp_path):
    async def go():
        store = await opened(tmp_path, flushDiskType="SYNC_FLUSH")
        results = await asyncio.gather(*(store.put_message(msg(body=b"s" * 100))
                                          for _ in range(200)))
        assert all(r.status == PUT_OK for r in results)
        assert store.flusher.flushed_offset >= store.commitlog.max_offset
        assert store.flusher.rounds < 100  # concurrent senders shared msyncs
        nowait = await store.put_message(msg(WAIT="false"))
        assert nowait.status == PUT_OK
        await store.close()

        store = await opened(tmp_path, flushDiskType="SYNC_FLUSH", syncFlushTimeout=0)
        late = await asyncio.gather(*(store.put_message(msg()) for _ in range(5)))
        # stored, just not on disk in time
        assert all(r.status == FLUSH_DISK_TIMEOUT and r.ok for r in late)
        store.config.syncFlushTimeout = 5000  # the next waiters are answered by flushes again
        assert (await store.put_message(msg())).status == PUT_OK
        await store.close()
    run(go())


def test_sends_read_together_after_a_lone_sender_share_a_round(tmp_path):
    """A lone sender's round runs on the loop's thread and answers one waiter; the sends that
    arrive together after it must not each take that path too (one fdatasync per send) but
    share a round."""
    async def go():
        store = await opened(tmp_path, flushDiskType="SYNC_FLUSH")
        for _ in range(2):  # a sender alone: the second one is flushed on the loop's thread
            assert (await store.put_message(msg())).status == PUT_OK
        before = store.flusher.rounds
        results = await asyncio.gather(*(store.put_message(msg()) for _ in range(8)))
        assert all(r.status == PUT_OK for r in results)
        assert store.flusher.flushed_offset >= store.commitlog.max_offset
        rounds = store.flusher.rounds - before
        await store.close()
        return rounds
    assert run(go()) <= 3  # the first alone, the seven others in one (a periodic one maybe)


def test_zeros_kept_ahead_of_small_flushes_and_never_over_records(tmp_path):
    """Group commits of single sends keep zeros written ahead of the CommitLog's appends
    (fdatasync then converts reserved blocks once per ZERO_AHEAD, not once per round); they
    never reach a record, the file reads the same, and large flushes turn them off."""
    from rmqnode.storage.mapped_file import SMALL_FLUSH, ZERO_AHEAD

    async def go():
        store = await opened(tmp_path, flushDiskType="SYNC_FLUSH",
                             mappedFileSizeCommitLog=4 << 20)
        for i in range(600):  # one at a time: each its own small flush
            assert (await store.put_message(msg(body=b"%05d" % i * 40))).status == PUT_OK
        mf = store.commitlog.files.last()
        assert 0 < mf.flush_size < SMALL_FLUSH
        assert mf.zeroed_to >= mf.wrote_position + ZERO_AHEAD // 2
        assert mf.read(mf.wrote_position, mf.zeroed_to - mf.wrote_position).count(0) == \
            mf.zeroed_to - mf.wrote_position
        end = store.commitlog.max_offset
        await store.close()
        store = await opened(tmp_path, flushDiskType="SYNC_FLUSH",
                             mappedFileSizeCommitLog=4 << 20)
        assert store.commitlog.max_offset == end
        bodies = [r.body for r in drain(store, "T", 0)]
        assert bodies == [b"%05d" % i * 40 for i in range(600)]
        await store.close()

    async def large_flushes():
        store = await opened(tmp_path / "async", mappedFileSizeCommitLog=4 << 20)
        for _ in range(2):  # the first flush is large: zeros stop after it
            for _ in range(4000):
                assert store.put_nowait([msg(body=b"a" * 200)]).status == PUT_OK
            await store.flusher.flush_now()
        mf = store.commitlog.files.last()
        assert mf.flush_size >= SMALL_FLUSH
        assert mf.zeroed_to < mf.wrote_position
        await store.close()
    run(go())
    run(large_flushes())


def test_index_files_are_synced_when_full_and_the_checkpoint_says_so(tmp_path):
    """As Java: an index file is flushed once full (off the loop, by the next logics flush)
    and at close, and the checkpoint's indexMsgTimestamp is the end of the last file
    flushed; the periodic flush writes the current file's header only. (It used to set the
    dispatch point there while the index's fdatasync ran once per file, at its first flush.)"""
    def checkpoint() -> Checkpoint:
        return Checkpoint.unpack((tmp_path / "checkpoint").read_bytes())

    async def go():
        store = await opened(tmp_path, maxIndexNum=8)  # 7 keys a file
        for i in range(5):
            await store.put_message(msg(KEYS=f"k{i}"))
        await asyncio.sleep(1.3)  # the reput, then a logics flush
        assert checkpoint().logics_msg_timestamp == store.last_dispatched_timestamp
        assert checkpoint().index_msg_timestamp == 0  # no index file full yet
        first = store.index.files[0]
        assert first.synced_count < first.index_count  # only its header was written
        for i in range(5, 12):
            await store.put_message(msg(KEYS=f"k{i}"))
        await asyncio.sleep(1.3)
        assert len(store.index.files) == 2 and first.synced_count == first.index_count == 8
        assert checkpoint().index_msg_timestamp == first.end_timestamp
        second = store.index.files[1]
        assert second.synced_count < second.index_count
        last = store.last_dispatched_timestamp
        await store.close()
        assert second.synced_count == second.index_count
        assert checkpoint().index_msg_timestamp == second.end_timestamp == last
        reopened = IndexFile(second.mf.path, 64, 8, readonly=True)
        assert reopened.index_count == second.index_count  # its header went with it
        reopened.mf.close()
    run(go())


def test_an_index_files_hash_slots_are_mapped_in_huge_pages(tmp_path):
    """Java's default index file (5 million slots): keys land on random slots, and where the
    kernel maps files in transparent huge pages, the 20 MB of slots are mapped in 2 MiB
    pages (FilePmdMapped in the mapping's smaps), the entries after them in small ones."""
    path = tmp_path / "20261130000000000"
    index = IndexFile(path, 5_000_000, 20_000_000)
    keys = [f"key-{i}" for i in range(4000)]
    assert index.put("T", keys, list(range(4000)), 1_700_000_000_000) == 4000
    mode = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    mapped, ours = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):  # a mapping's first line
            ours = line.endswith(str(path))
        elif ours and line.startswith("FilePmdMapped:"):
            mapped += int(line.split()[1])
    index.close()
    if mode.exists() and "[never]" not in mode.read_text():  # this kernel maps them
        assert 2048 <= mapped <= 22 * 1024, mapped
    assert IndexFile(path, 5_000_000, 20_000_000, readonly=True).index_count == 4001


def test_a_slow_disk_stalls_the_loop_for_one_round_only():
    """Rounds run on the loop's thread while the disk is fast. The first slow one holds the
    loop; after it the rounds run in the worker while the loop keeps serving, and a sender
    whose deadline passes meanwhile is answered with a timeout; once a round is fast again,
    they are back on the loop's thread."""
    import threading

    from rmqnode.storage.flush import FAST_FLUSH, FlushService

    disk = {"end": 0, "delay": 0.3}
    threads: list[int] = []

    def flush() -> int:
        threads.append(threading.get_ident())
        time.sleep(disk["delay"])
        return disk["end"]

    async def go():
        flusher = FlushService(flush, interval=10.0)
        flusher.start()
        loop_thread = threading.get_ident()
        answers: dict[str, tuple[bool, float]] = {}
        began = time.monotonic()

        def answer(name):
            return lambda ok: answers.setdefault(name, (ok, time.monotonic() - began))

        async def ticks_until(name):
            ticks = 0
            while name not in answers:
                await asyncio.sleep(0.01)
                ticks += 1
            return ticks

        disk["end"] = 100
        flusher.when_flushed(100, 5.0, answer("first"))
        held = await ticks_until("first")
        assert threads == [loop_thread] and answers["first"][0] is True
        assert held <= 1 and answers["first"][1] >= 0.3  # the loop waited for this one
        began = time.monotonic()
        disk["end"] = 200
        flusher.when_flushed(200, 5.0, answer("patient"))
        flusher.when_flushed(150, 0.05, answer("hasty"))
        ticks = await ticks_until("patient")
        assert threads[-1] != loop_thread and ticks >= 10  # the loop ran all along
        assert answers["hasty"][0] is False and answers["hasty"][1] < 0.2
        assert answers["patient"][0] is True and answers["patient"][1] >= 0.3
        disk["end"], disk["delay"] = 300, 0.0
        flusher.when_flushed(300, 5.0, answer("fast"))  # a fast round, still in the worker
        await ticks_until("fast")
        assert threads[-1] != loop_thread
        for offset in (400, 401):  # (two of an iteration: the second waits for a round)
            disk["end"] = offset
            flusher.when_flushed(offset, 5.0, answer(offset))
        await ticks_until(401)
        assert threads[-1] == loop_thread and answers[401][0] is True
        await flusher.stop()

    run(go())
    assert FAST_FLUSH < 0.05


def test_a_lone_sender_is_flushed_and_answered_in_its_own_call():
    """A sender alone (the last round answered one sender, nobody else waits) is flushed on
    the loop's thread and answered before when_flushed returns: True, or False when its
    fdatasync took longer than its timeout; one whose flush fails waits for a round that
    works (the next, not the periodic one seconds later)."""
    import threading

    from rmqnode.storage.flush import FlushService

    disk = {"end": 0, "delay": 0.0, "fail": 0}
    threads: list[int] = []

    def flush() -> int:
        threads.append(threading.get_ident())
        time.sleep(disk["delay"])
        if disk["fail"]:
            disk["fail"] -= 1
            raise OSError(5, "Input/output error")
        return disk["end"]

    async def go():
        flusher = FlushService(flush, interval=10.0)
        flusher.start()
        answers: list[bool] = []
        disk["end"] = 10
        flusher.when_flushed(10, 5.0, answers.append)  # the first: a round for waiters
        while not answers:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0)
        disk["end"] = 20
        flusher.when_flushed(20, 5.0, answers.append)
        assert answers == [True, True] and threads[-1] == threading.get_ident()
        await asyncio.sleep(0)
        disk["end"], disk["delay"] = 30, 0.003
        flusher.when_flushed(30, 0.001, answers.append)
        assert answers[-1] is False  # on disk, but later than it may be
        await asyncio.sleep(0)
        disk["end"], disk["delay"], disk["fail"] = 40, 0.0, 1
        flusher.when_flushed(40, 5.0, answers.append)
        assert len(answers) == 3  # its flush failed: not answered yet
        while len(answers) < 4:
            await asyncio.sleep(0.001)
        assert answers[-1] is True and flusher.flushed_offset == 40
        await flusher.stop()
    run(go())

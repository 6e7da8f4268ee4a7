"""Stores written by rmqnode: layout, rollover, recovery, expiry and the read path (getting
writes to disk: test_store_flush.py)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time

import pytest

from rmqnode.config import BrokerConfig
from rmqnode.message import compress, host_bytes
from rmqnode.storage.records import Blank, decode_record
from rmqnode.storage.store import (FOUND, MESSAGE_ILLEGAL,
                                   NO_MATCHED_MESSAGE, NO_MESSAGE_IN_QUEUE, OFFSET_OVERFLOW_BADLY,
                                   OFFSET_OVERFLOW_ONE, OFFSET_TOO_SMALL, PROPERTIES_SIZE_EXCEEDED,
                                   PUT_OK, Message, MessageStore)
from test_store_java import all_records


def config(root, **extra) -> BrokerConfig:
    values = dict(storePathRootDir=str(root), mappedFileSizeCommitLog=64 * 1024,
                  mappedFileSizeConsumeQueue=20 * 50, maxHashSlotNum=64, maxIndexNum=400,
                  brokerIP1="127.0.0.1", listenPort=10911)
    values.update(extra)
    return BrokerConfig(**values)


def run(coro):
    return asyncio.run(coro)


async def opened(root, **extra) -> MessageStore:
    store = MessageStore(config(root, **extra))
    store.open()
    store.start()
    return store


def msg(topic="T", queue_id=0, body=b"x", **props) -> Message:
    return Message(topic=topic, queue_id=queue_id, body=body, properties=dict(props),
                   born_timestamp=1_700_000_000_000,
                   born_host=host_bytes("10.1.2.3:5555"))


def drain(store, topic, queue_id, offset=0):
    out = []
    while True:
        result = store.get_messages(topic, queue_id, offset, 32)
        if result.status != FOUND:
            return out
        out += [decode_record(v, 0, check_crc=True) for v in result.messages]
        offset = result.next_begin_offset


def test_records_we_write_match_javas_field_by_field(tmp_path, java_store_pristine):
    """Re-store real 4.9.8 records through our put path: every byte equals Java's except the
    three fields a store assigns (queue offset, physical offset, store time)."""
    java = [rec for _, rec in all_records(java_store_pristine)[:300]]

    async def go():
        store = await opened(tmp_path, mappedFileSizeCommitLog=1048576)
        try:
            for rec in java:
                m = Message(topic=rec.topic, queue_id=rec.queue_id, body=rec.body,
                            properties=dict(rec.properties), flag=rec.flag,
                            sys_flag=rec.sys_flag, born_timestamp=rec.born_timestamp,
                            born_host=rec.born_host, reconsume_times=rec.reconsume_times,
                            prepared_transaction_offset=rec.prepared_transaction_offset)
                assert (await store.put_message(m)).status == PUT_OK
        finally:
            await store.close()
    run(go())
    ours = [raw for raw, _ in all_records(tmp_path)]
    originals = [raw for raw, _ in all_records(java_store_pristine)[:300]]
    assert len(ours) == len(originals)
    for mine, theirs, rec in zip(ours, originals, java):
        assert len(mine) == len(theirs)
        ts = 56  # store timestamp position for IPv4 born hosts
        masked = lambda b: b[:20] + b[36:ts] + b[ts + 8:]  # noqa: E731
        assert masked(mine) == masked(theirs)
        assert decode_record(mine, 0).queue_offset == rec.queue_offset  # same per-queue order


def test_rollover_blank_records_and_reopen(tmp_path):
    bodies = [os.urandom(100 + (i * 7) % 900) for i in range(400)]

    async def write():
        store = await opened(tmp_path)
        for i, body in enumerate(bodies):
            r = await store.put_message(msg(queue_id=i % 3, body=body, TAGS=f"t{i % 2}",
                                            KEYS=f"k{i}"))
            assert r.status == PUT_OK
        await store.close()
    run(write())
    files = sorted(os.listdir(tmp_path / "commitlog"))
    assert len(files) > 3 and all(len(f) == 20 for f in files)
    assert files[1] == f"{64 * 1024:020d}"
    # Each full file ends with a blank record that says how much is unused.
    first = (tmp_path / "commitlog" / files[0]).read_bytes()
    pos = 0
    while True:
        rec = decode_record(first, pos)
        if isinstance(rec, Blank):
            assert pos + rec.size == len(first)
            break
        pos += rec.store_size
    assert len(os.listdir(tmp_path / "consumequeue" / "T" / "0")) == 3  # 134 entries / 50

    async def read():
        store = await opened(tmp_path)
        assert not store.recovered_abnormally
        got = []
        for q in range(3):
            got += [(r.queue_offset, r.queue_id, r.body) for r in drain(store, "T", q)]
        assert sorted(b for _, _, b in got) == sorted(bodies)
        assert [m.body for m in store.query_by_key("T", "k77", 4)] == [bodies[77]]
        # Appending continues where it stopped.
        r = await store.put_message(msg(queue_id=0, body=b"after"))
        assert r.appended.queue_offset == 134
        await store.close()
    run(read())


def test_batches_compression_ipv6_and_delay_slots(tmp_path):
    async def go():
        store = await opened(tmp_path)
        batch = [msg(body=f"b{i}".encode(), UNIQ_KEY=f"U{i}") for i in range(5)]
        r = await store.put_messages(batch)
        assert r.status == PUT_OK and len(r.msg_ids) == 5 and r.appended.queue_offset == 0
        batch_ids = r.msg_ids
        body, flags = compress(b"z" * 10000, "zstd")
        m = msg(body=body)
        m.sys_flag = flags
        m.born_host = host_bytes("[::1]:7000")
        await store.put_message(m)
        delayed = msg(topic="SCHEDULE_TOPIC_XXXX", queue_id=2, DELAY="3")
        r = await store.put_message(delayed)
        await asyncio.sleep(0)  # the reput step runs on the next loop iteration, as in Java
        got = drain(store, "T", 0)
        assert [g.body for g in got[:5]] == [f"b{i}".encode() for i in range(5)]
        assert [g.msg_id for g in got[:5]] == [f"U{i}" for i in range(5)]
        assert [g.offset_msg_id for g in got[:5]] == batch_ids  # one offset id per message
        assert got[5].born_host_text == "[::1]:7000" and got[5].body_inflated() == b"z" * 10000
        _, _, due = store.find_queue("SCHEDULE_TOPIC_XXXX", 2).entry(0)
        assert due == r.appended.store_timestamp + 10_000  # level 3 = 10 s
        await store.close()
    run(go())


def test_get_statuses_follow_rocketmq(tmp_path):
    async def go():
        store = await opened(tmp_path)
        assert store.get_messages("T", 0, 0, 32).status == NO_MESSAGE_IN_QUEUE
        for i in range(10):
            await store.put_message(msg(body=str(i).encode(), TAGS="A" if i % 2 else "B"))
        await asyncio.sleep(0)
        r = store.get_messages("T", 0, 10, 32)
        assert (r.status, r.next_begin_offset) == (OFFSET_OVERFLOW_ONE, 10)
        r = store.get_messages("T", 0, 15, 32)
        assert (r.status, r.next_begin_offset) == (OFFSET_OVERFLOW_BADLY, 0)  # min is 0
        r = store.get_messages("T", 0, 3, 4)
        assert (r.status, r.next_begin_offset, r.min_offset, r.max_offset) == (FOUND, 7, 0, 10)
        from rmqnode.message import tags_code
        only_a = lambda code: code == tags_code("A")  # noqa: E731
        r = store.get_messages("T", 0, 0, 32, only_a)
        assert [decode_record(v, 0).body for v in r.messages] == [b"1", b"3", b"5", b"7", b"9"]
        assert r.next_begin_offset == 10
        r = store.get_messages("T", 0, 9, 32, lambda code: False)
        assert (r.status, r.next_begin_offset) == (NO_MATCHED_MESSAGE, 10)
        store.find_queue("T", 0).min_logic_offset = 4
        r = store.get_messages("T", 0, 1, 32)
        assert (r.status, r.next_begin_offset) == (OFFSET_TOO_SMALL, 4)
        big = await store.put_message(msg(body=b"x" * (4 * 1024 * 1024 + 1)))
        assert big.status == MESSAGE_ILLEGAL and "maxMessageSize" in big.remark
        wide = await store.put_message(msg(body=b"w", KEYS="k" * 32763))  # 32768 bytes
        assert wide.status == PROPERTIES_SIZE_EXCEEDED and "32767" in wide.remark
        assert store.max_offset("T", 0) == 10  # neither was stored
        edge = await store.put_message(msg(body=b"e", KEYS="k" * 32762))  # 32767: fits
        assert edge.status == PUT_OK
        await store.close()
    run(go())


def _write(root, n, **extra):
    async def go():
        store = await opened(root, **extra)
        for i in range(n):
            await store.put_message(msg(queue_id=i % 2, body=f"m{i}".encode(), KEYS=f"k{i}"))
        await store.close()
    run(go())


def test_torn_tail_after_a_crash_is_cut_and_queues_follow(tmp_path):
    _write(tmp_path, 40)
    (tmp_path / "abort").touch()  # as if the process had died
    log = tmp_path / "commitlog" / f"{0:020d}"
    data = bytearray(log.read_bytes())
    records = all_records(tmp_path)
    last_raw, last = records[-1]
    end = last.commit_log_offset + len(last_raw)
    data[end - 50:end] = bytes(50)  # a torn write: the record's second half never landed
    log.write_bytes(data)

    async def go():
        store = await opened(tmp_path)
        assert store.recovered_abnormally
        bodies = [r.body for q in (0, 1) for r in drain(store, "T", q)]
        assert sorted(bodies) == sorted(f"m{i}".encode() for i in range(39))
        assert store.commitlog.max_offset == last.commit_log_offset
        r = await store.put_message(msg(queue_id=1, body=b"new"))
        assert (r.appended.wrote_offset, r.appended.queue_offset) == (last.commit_log_offset, 19)
        await store.close()
    run(go())
    # The torn bytes were zeroed, so no later scan can mistake them for a record.
    tail = log.read_bytes()[all_records(tmp_path)[-1][1].commit_log_offset:][
        len(all_records(tmp_path)[-1][0]):]
    assert tail.strip(b"\0") == b""


def test_flipped_byte_mid_log_truncates_there_and_says_where(tmp_path, caplog):
    _write(tmp_path, 30)
    (tmp_path / "abort").touch()
    records = all_records(tmp_path)
    victim = records[10][1]
    log = tmp_path / "commitlog" / f"{0:020d}"
    data = bytearray(log.read_bytes())
    data[victim.commit_log_offset + 88] ^= 0x01  # first body byte: the CRC covers the body
    log.write_bytes(data)
    import logging
    logging.getLogger("rmqnode").propagate = True
    with caplog.at_level(logging.WARNING, logger="rmqnode"):
        async def go():
            store = await opened(tmp_path)
            assert store.commitlog.max_offset == victim.commit_log_offset
            assert sum(len(drain(store, "T", q)) for q in (0, 1)) == 10
            await store.close()
        run(go())
    assert f"offset={victim.commit_log_offset}" in caplog.text and "CRC" in caplog.text


def test_consume_queues_rebuild_from_scratch(tmp_path):
    _write(tmp_path, 120)
    before = {q: [(r.queue_offset, r.commit_log_offset) for r in
                  drain_store(tmp_path, "T", q)] for q in (0, 1)}
    shutil.rmtree(tmp_path / "consumequeue")
    shutil.rmtree(tmp_path / "index")
    after = {q: [(r.queue_offset, r.commit_log_offset) for r in
                 drain_store(tmp_path, "T", q)] for q in (0, 1)}
    assert after == before and len(after[0]) == 60

    async def keys():
        store = await opened(tmp_path)
        assert [m.body for m in store.query_by_key("T", "k99", 2)] == [b"m99"]
        await store.close()
    run(keys())


def drain_store(root, topic, q, **extra):
    """Open the store, read one queue from its start, close it again."""
    async def go():
        store = await opened(root, **extra)
        try:
            assert not store.recovered_abnormally
            return drain(store, topic, q)
        finally:
            await store.close()
    return run(go())


def test_a_reads_puts_are_dispatched_when_it_ends_if_it_is_alone(tmp_path):
    """ReputAfterRead: with one connection feeding the broker, the puts of a read are in
    their queue when the read ends, with no loop callback; with others, the reput is left to
    the loop (one for every read of the iteration); puts outside a read are left to it too."""
    from rmqnode.storage.reput import ReputAfterRead

    async def go():
        store = await opened(tmp_path)
        alone = [True]
        read = ReputAfterRead(store, lambda: alone[0])
        with read:
            for i in range(3):
                assert store.put_nowait([msg(body=b"a%d" % i)]).status == PUT_OK
            assert store.max_offset("T", 0) == 0  # not yet: the read goes on
        assert store.max_offset("T", 0) == 3 and not store._reput_scheduled
        alone[0] = False
        with read:
            store.put_nowait([msg(body=b"b")])
        assert store.max_offset("T", 0) == 3  # the loop's turn
        await asyncio.sleep(0)
        assert store.max_offset("T", 0) == 4
        store.put_nowait([msg(body=b"c")])  # a put outside any read
        await asyncio.sleep(0)
        assert [m.body for m in drain(store, "T", 0)] == [b"a0", b"a1", b"a2", b"b", b"c"]
        await store.close()
    run(go())


def test_empty_last_files_left_by_a_crash_are_dropped(tmp_path):
    """kill -9 between creating a new file and sizing it leaves it empty (a CI run of the
    kill -9 test found such a consume-queue file): the node must start, lose nothing, and
    recreate the file; an empty file before the last, or a wrong size, is still refused."""
    async def fill():
        store = await opened(tmp_path)
        for i in range(60):  # 50 entries per queue file: the second file is in use
            await store.put_message(msg(body=f"m{i}".encode()))
        await asyncio.sleep(0)
        await store.close()
    run(fill())
    cq_dir = tmp_path / "consumequeue" / "T" / "0"
    log_dir = tmp_path / "commitlog"
    (cq_dir / f"{20 * 100:020d}").touch()  # the third queue file, created, never sized
    (log_dir / f"{64 * 1024:020d}").touch()  # likewise the next CommitLog file
    got = drain_store(tmp_path, "T", 0)
    assert [g.body for g in got] == [f"m{i}".encode() for i in range(60)]

    async def more():
        store = await opened(tmp_path)
        for i in range(60, 110):  # into the recreated third queue file
            await store.put_message(msg(body=f"m{i}".encode()))
        await asyncio.sleep(0)
        assert [g.body for g in drain(store, "T", 0)] == [f"m{i}".encode() for i in range(110)]
        await store.close()
    run(more())
    assert (cq_dir / f"{20 * 100:020d}").stat().st_size == 20 * 50

    (cq_dir / f"{20 * 50:020d}").write_bytes(b"")  # an empty file that is not the last one
    with pytest.raises(OSError, match="size 0 differs from the configured 1000"):
        run(opened(tmp_path))


def test_abort_file_exists_only_while_open(tmp_path):
    async def go():
        store = await opened(tmp_path)
        assert (tmp_path / "abort").exists() and (tmp_path / "lock").exists()
        await store.put_message(msg())
        await store.close()
        assert not (tmp_path / "abort").exists()
        assert (tmp_path / "checkpoint").stat().st_size == 4096
    run(go())


def test_expired_commitlog_files_go_and_queues_follow(tmp_path):
    _write(tmp_path, 2600, fileReservedTime=1)

    async def go():
        store = await opened(tmp_path, fileReservedTime=1, deleteWhen="99")
        files = list(store.commitlog.files)
        assert len(files) >= 4
        old = time.time() - 2 * 3600
        for mf in files[:2]:
            os.utime(mf.path, (old, old))
        assert store.delete_expired_files() == 2  # the fresh ones stay
        assert not files[0].path.exists() and files[2].path.exists()
        log_min = store.commitlog.min_offset
        assert log_min == files[2].file_from_offset
        for q in (0, 1):
            low = store.min_offset("T", q)
            assert low > 0
            r = store.get_messages("T", q, 0, 32)
            assert (r.status, r.next_begin_offset) == (OFFSET_TOO_SMALL, low)
            first = drain(store, "T", q, low)[0]
            assert first.commit_log_offset >= log_min
            before = store.find_queue("T", q).entry(low - 1)
            assert before[0] < log_min  # the entry just below the new minimum was expired
        assert store.query_by_key("T", "k0", 4) == []
        assert [m.body for m in store.query_by_key("T", "k2599", 4)] == [b"m2599"]
        # Nothing is due at this hour and nothing is manual: the periodic check does nothing.
        from rmqnode.storage.cleanup import delete_expired_commitlog
        for mf in store.commitlog.files.files[:-1]:
            os.utime(mf.path, (old, old))
        assert delete_expired_commitlog(store, time.time()) == 0
        await store.close()
    run(go())


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 1 MiB filesystem (tmpfs), so that the disk really fills up."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"cannot mount a tmpfs for the full-disk test: {done.stderr}"
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_answers_service_not_available_and_corrupts_nothing(tiny_disk):
    root = tiny_disk / "store"
    acked = []

    async def fill():
        store = await opened(root, mappedFileSizeCommitLog=256 * 1024,
                             mappedFileSizeConsumeQueue=2000, maxHashSlotNum=16, maxIndexNum=64,
                             messageIndexEnable=False)
        for i in range(10_000):
            r = await store.put_message(msg(queue_id=0, body=b"%05d" % i + b"." * 500))
            if r.status != PUT_OK:
                assert r.status == "SERVICE_NOT_AVAILABLE" and r.remark == "the disk is full"
                break
            acked.append(i)
        else:
            raise AssertionError("the disk never filled up")
        await asyncio.sleep(0.05)
        await store.close()
    run(fill())
    assert len(acked) > 500
    got = [int(r.body[:5]) for r in drain_store(root, "T", 0, mappedFileSizeCommitLog=256 * 1024,
                                                mappedFileSizeConsumeQueue=2000,
                                                maxHashSlotNum=16, maxIndexNum=64,
                                                messageIndexEnable=False)]
    assert got == acked  # every acknowledged message, in order, nothing torn


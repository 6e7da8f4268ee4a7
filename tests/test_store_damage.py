"""A store that meets hostile names, a queue directory it cannot write, and damaged consume
queue files: real files, real filesystem conditions, nothing of ours patched."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil

import pytest

from rmqnode.errors import RemotingError
from rmqnode.storage.consumequeue import ConsumeQueue
from rmqnode.storage.records import CQ_UNIT_SIZE, POS_QUEUE_OFFSET, decode_record
from test_store_engine import _write, drain, drain_store, msg, opened, run

HOSTILE = ["..", "../commitlog", "/abs", "a/b", "%DLQ%x/../..", "\0", "", "."]


@pytest.fixture
def warnings(caplog):
    logging.getLogger("rmqnode").propagate = True
    with caplog.at_level(logging.WARNING, logger="rmqnode"):
        yield caplog


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_topic_names_never_become_paths(tmp_path, name):
    _write(tmp_path, 6)
    before = tree(tmp_path)

    async def go():
        store = await opened(tmp_path)
        try:
            with pytest.raises(RemotingError):
                store.delete_topic(name)
            with pytest.raises(RemotingError):
                ConsumeQueue(str(store.cq_root), name, 0, 1000)
            # A record that came with such a topic (a foreign or crafted CommitLog) is stored
            # but gets no queue: nothing is created outside consumequeue/<topic>.
            await store.put_message(msg(topic=name or "x", body=b"evil"))
            assert len(drain(store, "T", 0)) == 3
        finally:
            await store.close()
    run(go())
    assert (tmp_path / "commitlog").is_dir()
    created = set(tree(tmp_path)) - set(before)
    assert all(p.startswith("consumequeue/") or p.startswith("index/") for p in created)
    assert not os.path.exists("/abs")


def test_a_blocked_queue_does_not_stall_the_others_and_catches_up(tmp_path, warnings):
    """consumequeue/Blocked is a regular file where its directory must be: sends to it are
    stored, other topics go on being dispatched, and once the file is gone the queue is
    rebuilt from the CommitLog without a restart."""
    (tmp_path / "consumequeue").mkdir(parents=True)
    blocker = tmp_path / "consumequeue" / "Blocked"
    blocker.write_text("in the way")

    async def go():
        store = await opened(tmp_path)
        try:
            for i in range(30):
                assert (await store.put_message(msg(topic="Blocked", body=b"b%d" % i))).ok
                assert (await store.put_message(msg(topic="Free", body=b"f%d" % i))).ok
            await asyncio.sleep(0.05)
            assert len(drain(store, "Free", 0)) == 30
            assert drain(store, "Blocked", 0) == []
            stalled = [r for r in warnings.records if "dispatch.queue_stalled" in r.message]
            assert len(stalled) == 1 and "Blocked" in stalled[0].message  # not one per send
            blocker.unlink()
            await asyncio.sleep(1.5)
            assert [m.body for m in drain(store, "Blocked", 0)] == [b"b%d" % i for i in range(30)]
            assert (await store.put_message(msg(topic="Blocked", body=b"after"))).ok
            await asyncio.sleep(0.05)
            assert drain(store, "Blocked", 0)[-1].body == b"after"
        finally:
            await store.close()
    run(go())
    assert "dispatch.queue_resumed" in warnings.text


def test_a_queue_still_blocked_at_stop_is_rebuilt_on_the_next_start(tmp_path, warnings):
    (tmp_path / "consumequeue").mkdir(parents=True)
    blocker = tmp_path / "consumequeue" / "Blocked"
    blocker.write_text("in the way")

    async def go():
        store = await opened(tmp_path)
        for i in range(10):
            await store.put_message(msg(topic="Blocked", body=b"b%d" % i))
            await store.put_message(msg(topic="Free", body=b"f%d" % i))
        await asyncio.sleep(0.05)
        await store.close()
    run(go())
    assert "store.closed_with_stalled_queues" in warnings.text
    assert (tmp_path / "abort").exists()  # so that the next start re-dispatches
    blocker.unlink()

    async def again():
        store = await opened(tmp_path)
        try:
            assert len(drain(store, "Blocked", 0)) == 10 and len(drain(store, "Free", 0)) == 10
        finally:
            await store.close()
    run(again())


def test_stray_files_where_directories_belong_are_skipped(tmp_path, warnings):
    _write(tmp_path, 10)
    (tmp_path / "consumequeue" / "stray.txt").write_text("x")
    (tmp_path / "consumequeue" / "T" / "7").write_text("x")
    assert len(drain_store(tmp_path, "T", 0)) == 5
    assert warnings.text.count("store.stray_file_skipped") == 2
    assert "stray.txt" in warnings.text


def _cq_file(root, topic="T", queue=0):
    return root / "consumequeue" / topic / str(queue) / f"{0:020d}"


@pytest.mark.parametrize("first_size", [b"\x00\x00\x01\x00", b"\xff\xff\xff\xff"],
                         ids=["taken-for-entries", "ends-the-queue-at-once"])
def test_garbage_queue_file_no_longer_hides_messages(tmp_path, warnings, first_size):
    _write(tmp_path, 40)
    path = _cq_file(tmp_path)
    data = bytearray(path.read_bytes())
    data[:CQ_UNIT_SIZE * 20] = os.urandom(CQ_UNIT_SIZE * 20)
    data[0] = 0x01  # a positive offset...
    data[8:12] = first_size  # ...and a size that recovery takes for an entry, or not
    path.write_bytes(data)
    assert [r.body for r in drain_store(tmp_path, "T", 0)] == \
        [f"m{i}".encode() for i in range(0, 40, 2)]
    assert "recover.queue_tail_damaged" in warnings.text and str(path) in warnings.text
    warnings.clear()
    assert len(drain_store(tmp_path, "T", 0)) == 20  # repaired for good: no warning again
    assert "queue_tail_damaged" not in warnings.text


def test_tail_entries_pointing_at_other_records_are_rebuilt(tmp_path, warnings):
    """The last entries of queue 0 are swapped for queue 1's (right sizes, in the log, but
    another queue's records): they are cut back to the last good one and rebuilt."""
    _write(tmp_path, 40)
    q0, q1 = _cq_file(tmp_path, queue=0), _cq_file(tmp_path, queue=1)
    data, other = bytearray(q0.read_bytes()), q1.read_bytes()
    data[15 * CQ_UNIT_SIZE:20 * CQ_UNIT_SIZE] = other[15 * CQ_UNIT_SIZE:20 * CQ_UNIT_SIZE]
    q0.write_bytes(data)
    assert [r.body for r in drain_store(tmp_path, "T", 0)] == \
        [f"m{i}".encode() for i in range(0, 40, 2)]
    line = next(r.message for r in warnings.records if "queue_tail_damaged" in r.message)
    assert "queue_offset=15" in line and "dropped_entries=5" in line and str(q0) in line


def test_a_healthy_store_reopens_without_a_queue_warning(tmp_path, warnings):
    _write(tmp_path, 40)
    shutil.copy(_cq_file(tmp_path), tmp_path / "before")
    assert len(drain_store(tmp_path, "T", 1)) == 20
    assert "queue_tail_damaged" not in warnings.text
    assert (tmp_path / "before").read_bytes() == _cq_file(tmp_path).read_bytes()


def test_batches_to_a_blocked_queue_are_indexed_and_caught_up_message_by_message(tmp_path,
                                                                                   warnings):
    """A batch whose queue is stalled is dispatched one message at a time: each message is
    found by its own keys meanwhile, and its entries come once the queue can be written. A
    batch whose messages differ in sysFlag goes message by message too."""
    (tmp_path / "consumequeue").mkdir(parents=True)
    blocker = tmp_path / "consumequeue" / "Blocked"
    blocker.write_text("in the way")

    def batch(topic, n):
        return [msg(topic=topic, body=b"%s%d" % (topic.encode(), i), KEYS=f"k{i} all",
                    UNIQ_KEY=f"{topic}-u{i}") for i in range(n)]

    async def go():
        store = await opened(tmp_path)
        try:
            assert (await store.put_messages(batch("Blocked", 8))).ok
            mixed = batch("Mixed", 6)
            for m in mixed[::2]:
                m.sys_flag = 0x2  # MULTI_TAGS_FLAG: queued and indexed all the same
            assert (await store.put_messages(mixed)).ok
            await asyncio.sleep(0.05)
            assert drain(store, "Blocked", 0) == []
            assert [m.body for m in drain(store, "Mixed", 0)] == [m.body for m in mixed]
            for topic, n in [("Blocked", 8), ("Mixed", 6)]:
                for i in range(n):
                    for key in [f"k{i}", f"{topic}-u{i}"]:
                        assert [m.body for m in store.query_by_key(topic, key, 10)] == \
                            [b"%s%d" % (topic.encode(), i)]
                assert len(store.query_by_key(topic, "all", 32)) == n
            blocker.unlink()
            await asyncio.sleep(1.5)
            assert [m.body for m in drain(store, "Blocked", 0)] == \
                [b"Blocked%d" % i for i in range(8)]
        finally:
            await store.close()
    run(go())
    assert "dispatch.queue_resumed" in warnings.text


def test_a_record_whose_queue_offset_leaps_ahead_gets_no_entry_and_no_files(tmp_path,
                                                                          warnings):
    """A record in the CommitLog whose queue offset is far past its queue's end (a crafted or
    damaged log, a master's bytes on a slave) is kept but not queued, with an error: no
    consume-queue file is created for each of the slots in between (here a thousand; with
    Java's file size and a crafted offset, millions)."""
    small = {"mappedFileSizeConsumeQueue": 10 * CQ_UNIT_SIZE}
    _write(tmp_path, 40, **small)
    log = next((tmp_path / "commitlog").iterdir())
    data = bytearray(log.read_bytes())
    pos = 0
    while (rec := decode_record(data, pos, 0)).body != b"m10":  # queue 0, queue offset 5
        pos += rec.store_size
    data[pos + POS_QUEUE_OFFSET:pos + POS_QUEUE_OFFSET + 8] = (10_000).to_bytes(8, "big")
    log.write_bytes(data)
    shutil.rmtree(tmp_path / "consumequeue")  # rebuilt from the CommitLog at the next start
    # Its slot stays empty, and a pull skips it (no record of 0 bytes is served).
    assert [r.body for r in drain_store(tmp_path, "T", 0, **small)] == \
        [f"m{i}".encode() for i in range(0, 40, 2) if i != 10]
    assert len(list((tmp_path / "consumequeue" / "T" / "0").iterdir())) == 2
    assert "dispatch.queue_order" in warnings.text and "10000" in warnings.text
    assert [r.body for r in drain_store(tmp_path, "T", 1, **small)] == \
        [f"m{i}".encode() for i in range(1, 40, 2)]

"""The store engine on stores written by a real Apache RocketMQ 4.9.8 broker."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from conftest import JAVA_SIZES, STORE_FIXTURE
from rmqnode.config import BrokerConfig
from rmqnode.message import tags_code
from rmqnode.storage.records import Blank, decode_record, reencode
from rmqnode.storage.store import FOUND, MessageStore


def open_store(root, readonly=False, **extra) -> MessageStore:
    store = MessageStore(BrokerConfig(storePathRootDir=str(root), **JAVA_SIZES, **extra),
                         readonly=readonly)
    store.open()
    return store


def all_records(root):
    """Every CommitLog record, straight from the files."""
    out = []
    logdir = root / "commitlog"
    for name in sorted(os.listdir(logdir)):
        data = (logdir / name).read_bytes()
        pos = 0
        while True:
            rec = decode_record(data, pos, int(name), check_crc=True)
            if rec is None or isinstance(rec, Blank):
                break
            out.append((data[pos:pos + rec.store_size], rec))
            pos += rec.store_size
    return out


def test_every_record_decodes_verifies_and_reencodes_byte_for_byte(java_store_pristine, manifest):
    records = all_records(java_store_pristine)
    assert len(records) == len(manifest) == 2873
    for raw, rec in records:
        again = reencode(rec)
        assert bytes(again) == raw


def cpp_offset_id(rec) -> str:
    """What the C++ 1.x consumer reports as msgId for a message without UNIQ_KEY: the offset
    id with the IPv4 address bytes reversed (the manifest recorded what it was told)."""
    host = rec.store_host[:4][::-1] + rec.store_host[4:]
    return (host + rec.commit_log_offset.to_bytes(8, "big")).hex().upper()


def test_records_match_the_manifest(java_store_pristine, manifest):
    for (_, rec), m in zip(all_records(java_store_pristine), manifest):
        assert (rec.topic, rec.queue_id, rec.queue_offset, rec.commit_log_offset) == \
            (m["topic"], m["queueId"], m["queueOffset"], m["commitLogOffset"])
        assert rec.properties == m["properties"]
        assert rec.keys == (m["keys"] or "").split()
        assert rec.tags == m["tags"]
        body = rec.body_inflated()
        assert (len(body), hashlib.sha256(body).hexdigest()) == (m["bodyLength"],
                                                                 m["bodySha256"])
        if m["servedByBroker"]:
            assert rec.msg_id == m["msgId"] or ("UNIQ_KEY" not in rec.properties
                                                and cpp_offset_id(rec) == m["msgId"])
            assert (rec.store_size, rec.born_timestamp, rec.store_timestamp,
                    rec.reconsume_times) == (m["storeSize"], m["bornTimestamp"],
                                             m["storeTimestamp"], m["reconsumeTimes"])
    compressed = [r for _, r in all_records(java_store_pristine) if r.sys_flag & 1]
    assert len(compressed) == 5 and all(len(r.body_inflated()) > 4096 for r in compressed)


def test_read_only_open_changes_nothing(java_store_pristine, manifest):
    before = {p: p.stat().st_mtime_ns for p in java_store_pristine.rglob("*") if p.is_file()}
    digest = hashlib.sha256((java_store_pristine / "commitlog" / "00000000000000000000")
                            .read_bytes()).hexdigest()
    store = open_store(java_store_pristine, readonly=True)
    _, last = all_records(java_store_pristine)[-1]
    assert store.commitlog.max_offset == last.commit_log_offset + last.store_size
    assert store.get_messages("PubA", 0, 0, 1).status == FOUND
    store.close_readonly()
    after = {p: p.stat().st_mtime_ns for p in java_store_pristine.rglob("*") if p.is_file()}
    assert before == after
    assert hashlib.sha256((java_store_pristine / "commitlog" / "00000000000000000000")
                          .read_bytes()).hexdigest() == digest


def test_consume_queues_and_index_agree_with_the_commit_log(java_store, manifest):
    store = open_store(java_store)
    try:
        assert store.recovered_abnormally  # the broker left its abort file behind
        for m in manifest:
            result = store.get_messages(m["topic"], m["queueId"], m["queueOffset"], 1)
            assert result.status == FOUND, m
            rec = decode_record(result.messages[0], 0)
            assert rec.commit_log_offset == m["commitLogOffset"]
            cq = store.find_queue(m["topic"], m["queueId"])
            phy, size, tag = cq.entry(m["queueOffset"])
            assert (phy, size) == (m["commitLogOffset"], rec.store_size)
            if m["topic"] == "SCHEDULE_TOPIC_XXXX":
                # The tag slot holds the time the delayed message is due.
                level = int(rec.properties["DELAY"])
                delays = [1000, 5000, 10000, 30000, 60000, 120000]
                assert tag == rec.store_timestamp + delays[level - 1]
            else:
                assert tag == tags_code(rec.tags)
        for m in manifest[::97]:
            for key in (m["keys"] or "").split():
                found = store.query_by_key(m["topic"], key, 64)
                assert m["commitLogOffset"] in [r.commit_log_offset for r in found]
        uniq = manifest[5]["properties"]["UNIQ_KEY"]
        [hit] = store.query_by_key("PubA", uniq, 8)
        assert hit.commit_log_offset == manifest[5]["commitLogOffset"]
        assert store.max_offset("PubA", 0) == 660 and store.min_offset("PubA", 0) == 0
        first = next(m for m in manifest if m["topic"] == "PubA" and m["queueId"] == 1)
        assert store.earliest_store_time("PubA", 1) == first["storeTimestamp"]
    finally:
        asyncio.run(store.close())


def test_offsets_by_time(java_store, manifest):
    store = open_store(java_store)
    try:
        q2 = [m for m in manifest if m["topic"] == "PubA" and m["queueId"] == 2]
        mid = q2[len(q2) // 2]
        ts = mid["storeTimestamp"]
        lower = store.offset_by_time("PubA", 2, ts)
        assert lower == min(m["queueOffset"] for m in q2 if m["storeTimestamp"] >= ts)
        upper = store.offset_by_time("PubA", 2, ts, upper=True)
        assert upper == max(m["queueOffset"] for m in q2 if m["storeTimestamp"] <= ts)
        assert store.offset_by_time("PubA", 2, 0) == 0
        assert store.offset_by_time("PubA", 2, 2**62) == store.max_offset("PubA", 2)
    finally:
        asyncio.run(store.close())


def test_crashed_store_recovers_every_acknowledged_message(java_crashed):
    acked = set((STORE_FIXTURE / "store-crashed-acked.txt").read_text().split())
    store = open_store(java_crashed)
    try:
        assert store.recovered_abnormally
        bodies = set()
        for queue_id in range(4):
            offset = store.min_offset("PubA", queue_id)
            while True:
                result = store.get_messages("PubA", queue_id, offset, 32)
                if result.status != FOUND:
                    assert offset == store.max_offset("PubA", queue_id)
                    break
                for view in result.messages:
                    rec = decode_record(view, 0, check_crc=True)
                    assert rec.queue_id == queue_id
                    bodies.add(rec.body.decode("utf-8", "replace"))
                offset = result.next_begin_offset
        assert acked <= bodies, f"{len(acked - bodies)} acknowledged messages lost"
        # Every queue entry points at a record of its own topic, queue and offset.
        for (topic, queue_id), cq in store.queues.items():
            for q_offset, phy, size, _ in cq.entries(cq.min_offset, 10**6):
                rec = store.message_at(phy)
                assert (rec.topic, rec.queue_id, rec.queue_offset, rec.store_size) == \
                    (topic, queue_id, q_offset, size)
        # The keys of the crash load are indexed.
        sample = sorted(acked)[::500]
        for body in sample:
            assert [r.body.decode() for r in store.query_by_key("PubA", body, 4)] == [body]
    finally:
        asyncio.run(store.close())
    # Recovered, then cleanly closed: the next open is a normal one and sees the same end.
    again = open_store(java_crashed)
    try:
        assert not again.recovered_abnormally
        assert again.max_offset("PubA", 0) == store.max_offset("PubA", 0)
    finally:
        asyncio.run(again.close())


def test_a_second_process_cannot_open_the_same_store(java_store):
    from rmqnode.storage.store import StoreLockedError
    store = open_store(java_store)
    try:
        with pytest.raises(StoreLockedError, match="in use by another process"):
            open_store(java_store)
    finally:
        asyncio.run(store.close())

"""The reput's common case in C (csrc/reput.c) against its pure-Python original
(storage/reput.py's dispatch_plain): on every record of the Java 4.9.8 store and on odd
requests, both write the same consume-queue bytes, report the same arrivals and index runs,
and stop at the same requests, each in its own store directory."""

from __future__ import annotations

import random
from collections import deque

from rmqnode import speedups
from rmqnode.message import TRANSACTION_MASK
from rmqnode.storage.consumequeue import ConsumeQueue
from rmqnode.storage.dispatch import DispatchBatch, DispatchRequest, dispatch_request
from rmqnode.storage.index import IndexService
from rmqnode.storage.reput import dispatch_plain  # noqa: F401 - binds the twin
from twins import counted_fallbacks, java_records, outcome

LEVELS = [1000, 5000, 10000]
QUEUE_FILE = 20 * 7  # small files: entries fall in a new file every 7 of a queue


def reput(impl: str, root, requests: list, stalled=(), fail_index_at: int = -1,
          indexed: bool = False) -> dict:
    """dispatch_plain by `impl` over `requests` until all are done; what it leaves, the
    general path of the reput does here as the store does (a new file for an entry, nothing
    for a stalled queue's or a transaction's entry, keys indexed one message at a time).
    `indexed`: runs go into real index files (small ones, so they fill and roll), whose
    bytes are compared; else every run is handed to the index() callable."""
    fn = (speedups.PURE if impl == "pure" else speedups.NATIVE)["dispatch_plain"]
    service = IndexService(str(root / "index"), 17, 60) if indexed else None
    queues: dict = {}
    stalled = {key: None for key in stalled}
    arrived: dict = {}
    index: list = []  # (topic, key, offset, store time): where runs end may differ (below)
    runs: list = []
    steps: list = []
    pending = deque(requests)

    def write_index(topic, keys, offsets, stamp, first):
        if len(runs) == fail_index_at:
            raise OSError(28, "No space left on device")
        assert first == offsets[0]
        index.extend((topic, k, at, stamp) for k, at in zip(keys, offsets, strict=True))
        runs.append(len(keys))
        if service is not None:
            service.build(topic, keys, offsets, stamp)

    while pending:
        got = outcome(fn, pending, queues, stalled, arrived, write_index,
                      service.files if service is not None else [])
        steps.append((got, len(pending)))
        if got[0] != "returned" or not pending:
            break
        req = pending.popleft()
        steps.append(("general", req))
        if not isinstance(req, tuple) or isinstance(req, DispatchBatch):
            continue
        topic, queue_id, offset, size, tags, stamp, queue_offset, keys, flag = req
        if flag & TRANSACTION_MASK:
            continue
        if (topic, queue_id) not in stalled:
            try:  # the store refuses what these refuse (a topic that names no directory)
                cq = queues.get((topic, queue_id))
                if cq is None:
                    cq = queues[(topic, queue_id)] = ConsumeQueue(str(root), topic, queue_id,
                                                                  QUEUE_FILE)
                cq.put(queue_offset, offset, size, tags)
            except Exception as exc:  # noqa: BLE001 - compared
                steps.append(("refused", type(exc)))
                continue
            arrived[(topic, queue_id)] = queue_offset + 1
        if keys:
            write_index(topic, keys, [offset] * len(keys), stamp, offset)
    files = {key: [(mf.path.name, bytes(mf.mm), mf.wrote_position) for mf in cq.files]
             for key, cq in queues.items()}
    ends = {key: cq.max_phy_end for key, cq in queues.items()}
    for cq in queues.values():
        cq.close()
    index_files = []
    for f in service.files if service is not None else []:
        f.close()
        index_files.append((f.name, (root / "index" / f.name).read_bytes()))
    return {"steps": steps, "arrived": arrived, "index": index, "files": files, "ends": ends,
            "left": list(pending), "runs": runs, "index_files": index_files}


def same_reput(tmp_path, requests, **kw) -> dict:
    """Both implementations on `requests`: the same everywhere. Only where the compiled one
    hands a request of odd fields to the original may the index runs end elsewhere (it
    writes its run first), not the entries they write."""
    pure = reput("pure", tmp_path / "pure", list(requests), **kw)
    native = reput("native", tmp_path / "native", list(requests), **kw)
    runs = pure.pop("runs"), native.pop("runs")
    assert native == pure
    return pure, runs


def requests_of(store) -> list[tuple]:
    """The reput's requests of single puts of every record of `store`, as the put makes them."""
    return [dispatch_request(rec.topic, rec.queue_id, rec.commit_log_offset, rec.store_size,
                             rec.properties, rec.store_timestamp, rec.queue_offset, rec.sys_flag,
                             LEVELS)
            for _, rec in java_records(store)]


def test_every_java_store_record_is_dispatched_identically(java_store_pristine, tmp_path):
    reqs = requests_of(java_store_pristine)
    plain = [r for r in reqs if not r[8] & TRANSACTION_MASK]
    assert len(plain) > 100 and len(plain) < len(reqs)  # the store has transactions' records
    with counted_fallbacks("dispatch_plain") as calls:
        got, (runs, native_runs) = same_reput(tmp_path, reqs)
    assert calls == []  # the compiled path did them all
    assert runs == native_runs
    # The general path did only what the common case leaves: a first entry in a new file,
    # or a transaction's record.
    general = [s[1] for s in got["steps"] if s[0] == "general"]
    new_files = sum(len(f) for f in got["files"].values())
    assert len(general) == new_files + len(reqs) - len(plain)
    # Every plain record has its entry, and its keys are indexed in CommitLog order.
    for topic, queue_id, offset, size, tags, _, queue_offset, _, _ in plain:
        name, data, wrote = next(f for f in got["files"][(topic, queue_id)]
                                 if int(f[0]) <= queue_offset * 20 < int(f[0]) + QUEUE_FILE)
        local = queue_offset * 20 - int(name)
        assert data[local:local + 20] == offset.to_bytes(8, "big") + size.to_bytes(4, "big") \
            + tags.to_bytes(8, "big", signed=True)
        assert wrote >= local + 20
    assert [(e[0], e[1], e[2]) for e in got["index"]] == \
        [(r[0], k, r[2]) for r in plain for k in r[7]]
    assert len(runs) < len([r for r in plain if r[7]])  # keys written in runs
    for key in got["files"]:
        last = max((r for r in plain if (r[0], r[1]) == key), key=lambda r: r[6])
        assert got["arrived"][key] == last[6] + 1
        assert got["ends"][key] == last[2] + last[3]


def test_index_runs_written_into_index_files_are_the_same(java_store_pristine, tmp_path):
    """Runs the compiled reput writes into the last index file itself (index_in_last's
    common case), and those it hands to index() (a file's first run, a full file), make
    the same index files as the original's."""
    reqs = requests_of(java_store_pristine)
    got, _ = same_reput(tmp_path, reqs, indexed=True)
    assert len(got["index_files"]) > 3  # files filled and rolled
    keys = sum(len(r[7]) for r in reqs if not r[8] & TRANSACTION_MASK)
    # handed to index() only where the last file could not take the run
    assert len(got["index"]) < keys // 3


def test_stalled_queues_other_requests_and_odd_fields_stop_it_identically(tmp_path):
    def req(queue_id=0, offset=0, size=100, tags=7, stamp=5, queue_offset=0, keys=("k",),
            flag=0, topic="T"):
        return (topic, queue_id, offset, size, tags, stamp, queue_offset, list(keys), flag)

    base = [req(q, offset=1000 * i + q, queue_offset=i, stamp=5 + i // 3)
            for i in range(9) for q in range(3)]
    odd = [req(flag=4), req(flag=8), req(flag=12), req(topic=None), req(queue_id=None),
           req(queue_id=2**40), req(size=2**31), req(size=-1), req(tags=2**63),
           req(stamp=1.5), req(queue_offset=-1), req(queue_offset=2**62, queue_id=1),
           req(offset=2**63 - 50), req(keys=()), ("T", 0, 1, 2),
           DispatchRequest("T", 0, 0, 100, 7, 5, 1, ["k"], 0),
           DispatchBatch("T", 0, 0, [100], [7], 5, 1, ["k"], [0], 0)]
    rng = random.Random(21)
    for extra in odd:
        for _ in range(2):
            reqs = list(base)
            reqs.insert(rng.randrange(len(reqs)), extra)
            same_reput(tmp_path / str(rng.random()), reqs, stalled=[("T", 1)])
    # An index that cannot be written: the same error, raised at the same request.
    got, _ = same_reput(tmp_path / "nospace", base, fail_index_at=5)
    assert got["steps"][-1][0][0] == "raised" and got["left"]


def test_a_closed_or_read_only_last_file_is_left_to_the_general_path(tmp_path):
    def run(impl: str, how: str):
        cq = ConsumeQueue(str(tmp_path / impl / how), "T", 0, QUEUE_FILE)
        cq.put(0, 0, 10, 0)
        last = cq.files.files[-1]
        if how == "closed":
            last.close()
        else:
            last.readonly = True
        pending = deque([("T", 0, 10, 10, 0, 1, 1, [], 0)])
        fn = (speedups.PURE if impl == "pure" else speedups.NATIVE)["dispatch_plain"]
        got = fn(pending, {("T", 0): cq}, {}, {}, None, [])
        cq.close()
        return got, len(pending)

    for how in ("closed", "readonly"):
        assert run("pure", how) == run("native", how) == (None, 1)

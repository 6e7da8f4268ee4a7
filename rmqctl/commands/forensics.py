"""`rmqctl store check` and `rmqctl store index`: offline forensics on a store's files, no node
needed, Java RocketMQ's stores too. Everything is opened read-only: nothing is created, locked
or changed, so a check is safe before a node starts and on a copy taken from a broken host."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

import click

from rmqnode.storage.dispatch import index_keys
from rmqnode.storage.forecast import StartRefused, forecast_recovery
from rmqnode.storage.index import IndexFile, IndexService
from rmqnode.storage.reader import (CommitLogReader, Damage, NotAStore, StoreState,
                                    check_entry, commitlog_files, consume_queues,
                                    queue_entries, read_only_map, store_state)
from rmqnode.storage.mapped_file import file_name
from rmqnode.storage.records import (CQ_UNIT_SIZE, INDEX_HEADER, CorruptRecord,
                                     index_file_size)
from rmqctl.commands.store import Progress, report_damage
from rmqctl.context import Ctx, NotFound, pass_ctx
from rmqctl.output import emit_object, emit_rows
from rmqctl.render import BODY_FORMATS, message_row

_SHOWN = 50  # problem lines of each kind in a table; -o json lists all


@click.group("store")
def store() -> None:
    """Offline forensics on a store: a stopped node's, a running one's, or a Java broker's.

    Files are only read: nothing is created, locked or changed.

    \b
    Examples:
      rmqctl store check ~/.rmqnode/store
      rmqctl store index ~/.rmqnode/store --key order-42 --topic Orders
    """


def _store_root(root: Path) -> Path:
    if not (root / "commitlog").is_dir():
        raise click.UsageError(f"{root} is not a store: it has no commitlog/ folder")
    return root


@store.command("check")
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@pass_ctx
def check(ctx: Ctx, root: Path) -> None:
    """Check a whole store offline and say what the next start would cut.

    Every CommitLog file is walked to its end, past damage (bad magic codes, torn or
    truncated records, body CRCs, zeros between records, missing or odd-sized files), each
    reported with its file and offset. Every consume queue entry is checked against its
    record (topic, queue, queue offset, size, tags code, body CRC). The checkpoint, abort
    and lock files say whether the last shutdown was clean and whether a node holds the
    store now. The recovery forecast is rmqnode's own recovery run read-only: which file
    would be cut at which offset, how many bytes and records would go, which queue entries
    would be dropped (then rebuilt from the CommitLog where their records are intact).

    Ends with "N records OK, M bad"; the exit code is 1 on any problem, 0 on a clean store
    (an abort file alone is no problem: it only means the next start runs the crash
    recovery, which the forecast covers). -o json gives the whole report.

    \b
    Examples:
      rmqctl store check ~/.rmqnode/store
      rmqctl -o json store check /backup/broker-a/store | jq .recovery
    """
    report = _check(_store_root(root))
    if ctx.output in ("json", "ndjson"):
        emit_object(report, ctx.output)
    else:
        _print_report(report)
    if not report["ok"]:
        sys.exit(1)


def _check(root: Path) -> dict:
    state = store_state(root)
    problems = [p for p in (state.checkpoint_problem,) if p]
    if state.lock_holder is not None:
        problems.append(f"process {state.lock_holder} holds {root / 'lock'}: a node is "
                        "running on this store, which may change under the check")
    try:
        forecast, refused = forecast_recovery(root), None
    except StartRefused as exc:
        forecast, refused = None, str(exc)
        problems.append(f"a node would not start on this store: {refused}")
    try:
        log = CommitLogReader(commitlog_files(root))
    except NotAStore:
        log = CommitLogReader([])
    queues = consume_queues(root)
    cut = forecast.commitlog_end if forecast is not None else None
    ok = bad = 0
    bad_crc: set[int] = set()
    damage: list[Damage] = []
    lost: dict[int, int] = {}  # records past the cut, per file index
    sizes = [p.stat().st_size for p in log.files]
    queue_sizes = [sum(f.stat().st_size for f in q[2].iterdir() if f.is_file())
                   for q in queues]
    with Progress(sizes + queue_sizes, "checking") as progress:
        for item in log.records(check_crc=True, progress=progress.advance):
            if isinstance(item, Damage):
                damage.append(item)
                if item.kind == "crc":
                    bad_crc.add(item.offset)
                elif item.kind == "corrupt":
                    bad += 1
                    if cut is not None and item.offset >= cut:  # a lost record too
                        i = log.file_index(item.offset)
                        lost[i] = lost.get(i, 0) + 1
                continue
            offset = item.commit_log_offset
            if offset in bad_crc:
                bad += 1
            else:
                ok += 1
            if cut is not None and offset >= cut:
                i = log.file_index(offset)
                lost[i] = lost.get(i, 0) + 1
        entries_ok, bad_entries, on_disk = 0, [], {}
        for (topic, qid, folder), size in zip(queues, queue_sizes):
            end, unit = 0, _queue_file_size(folder)
            for entry in queue_entries(folder):
                if isinstance(entry, Damage):
                    damage.append(entry)
                    continue
                end = entry[0] + 1
                problem = check_entry(topic, qid, entry, log, bad_crc)
                if problem is None:
                    entries_ok += 1
                else:
                    bad_entries.append({"topic": topic, "queueId": qid, "queueOffset": entry[0],
                                        "commitLogOffset": entry[1], "size": entry[2],
                                        "tagsCode": entry[3], "problem": problem,
                                        "file": str(folder / file_name(
                                            entry[0] * CQ_UNIT_SIZE // unit * unit))})
            on_disk[(topic, qid)] = end
            progress.advance(size)
    log.close()
    recovery: dict = {"refused": refused} if forecast is None else {
        "mode": "crash" if forecast.abnormal else "normal",
        "commitlogEnd": forecast.commitlog_end,
        "truncate": _cuts(log, forecast.commitlog_end, lost),
        "queueEntriesDropped": [
            {"topic": t, "queueId": q, "entries": n, "kept": forecast.queue_ends.get((t, q), 0),
             "dropped": n - forecast.queue_ends.get((t, q), 0)}
            for (t, q), n in sorted(on_disk.items()) if n > forecast.queue_ends.get((t, q), 0)]}
    clean = not (problems or damage or bad_entries or recovery.get("truncate")
                 or recovery.get("queueEntriesDropped"))
    return {"store": str(root), "ok": clean, "problems": problems,
            "checkpoint": _checkpoint(state), "cleanShutdown": state.clean_shutdown,
            "lockHolder": state.lock_holder,
            "commitlog": {"files": len(log.files), "fileSize": sizes[0] if sizes else 0,
                          "records": ok + bad, "recordsOk": ok, "recordsBad": bad},
            "consumeQueues": {"queues": len(queues), "entries": entries_ok + len(bad_entries),
                              "entriesOk": entries_ok, "entriesBad": len(bad_entries)},
            "damage": [d.row() for d in damage], "badEntries": bad_entries,
            "recovery": recovery}


def _queue_file_size(folder: Path) -> int:
    """A queue's file size, for the name of the file an entry is in."""
    return next((p.stat().st_size for p in sorted(folder.iterdir())
                 if p.name.isdigit() and p.stat().st_size), 1)


def _cuts(log: CommitLogReader, cut: int, lost: dict[int, int]) -> list[dict]:
    """Per file, the written bytes at and past the cut: the file holding the cut is cut
    there, later ones are deleted."""
    rows = []
    for i, path in enumerate(log.files):
        start = log.starts[i]
        end = start + log.data_end.get(path, 0)
        first = max(cut, start)
        if end > first:
            rows.append({"file": str(path), "offset": first, "bytes": end - first,
                         "records": lost.get(i, 0),
                         "action": "cut" if start <= cut else "delete"})
    return rows


def _checkpoint(state: StoreState) -> dict | None:
    cp = state.checkpoint
    if cp is None:
        return None
    return {"physicMsgTimestamp": cp.physic_msg_timestamp,
            "logicsMsgTimestamp": cp.logics_msg_timestamp,
            "indexMsgTimestamp": cp.index_msg_timestamp}


def _when(ms: int) -> str:
    if ms <= 0:
        return "never"
    return datetime.fromtimestamp(ms / 1000).isoformat(sep=" ", timespec="milliseconds")


def _print_report(r: dict) -> None:
    out = click.echo
    cl, cq = r["commitlog"], r["consumeQueues"]
    out(f"store:         {r['store']}")
    cp = r["checkpoint"]
    out("checkpoint:    " + ("missing" if cp is None else
                             f"CommitLog {_when(cp['physicMsgTimestamp'])}, queues "
                             f"{_when(cp['logicsMsgTimestamp'])}, index "
                             f"{_when(cp['indexMsgTimestamp'])}"))
    out("last shutdown: " + ("clean" if r["cleanShutdown"] else
                             "not clean (abort file present): the next start runs the crash "
                             "recovery"))
    out("lock:          " + ("free" if r["lockHolder"] is None else
                             f"held by process {r['lockHolder']}"))
    out(f"commitlog:     {cl['files']} files of {cl['fileSize']} bytes, {cl['records']} "
        "records")
    out(f"consumequeue:  {cq['queues']} queues, {cq['entries']} entries, "
        f"{cq['entriesBad']} bad")
    lines = r["problems"] + [f"{d['file']} offset {d['offset']}: {d['reason']}" +
                             (f" ({d['bytes']} bytes unreadable)" if d["kind"] == "corrupt"
                              and d["bytes"] else "") for d in r["damage"]]
    lines += [f"{e['file']} queue offset {e['queueOffset']} (commit log offset "
              f"{e['commitLogOffset']}): {e['problem']}" for e in r["badEntries"]]
    if lines:
        out("problems:")
        for line in lines[:_SHOWN]:
            out(f"  {line}")
        if len(lines) > _SHOWN:
            out(f"  ... and {len(lines) - _SHOWN} more (-o json lists all)")
    rec = r["recovery"]
    if "refused" in rec:
        out(f"recovery:      a node would refuse to start: {rec['refused']}")
    else:
        head = f"recovery:      the {rec['mode']} recovery ends the CommitLog at " \
               f"{rec['commitlogEnd']}"
        out(head + (" and cuts:" if rec["truncate"] else ": nothing to cut"))
        if rec["truncate"]:
            emit_rows(rec["truncate"], "table", ["action", "file", "offset", "bytes", "records"])
        if rec["queueEntriesDropped"]:
            out("and drops queue entries (rebuilt from the CommitLog where their records "
                "are intact):")
            emit_rows(rec["queueEntriesDropped"], "table")
    out(f"{cl['recordsOk']} records OK, {cl['recordsBad']} bad")


# -- the index ------------------------------------------------------------------------------

def _time(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    from rmqctl.positions import PositionError, parse_time  # lands with --from/--to
    try:
        return parse_time(value, int(time.time() * 1000))
    except PositionError as exc:
        raise click.BadParameter(str(exc)) from None


@store.command("index")
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-k", "--key", required=True, help="A KEYS word or a message id (UNIQ_KEY).")
@click.option("-t", "--topic", help="The message's topic (default: every topic of the store).")
@click.option("--begin", callback=_time, help="Only messages stored at or after this time "
              "(ms, s, a date, RFC 3339, or relative: -1h).")
@click.option("--end", callback=_time, help="Only messages stored at or before this time.")
@click.option("--max", "max_num", type=click.IntRange(1), default=64, show_default=True,
              help="At most this many messages per topic.")
@click.option("--slots", type=click.IntRange(1), help="maxHashSlotNum the node ran with "
              "(default: found from the file size; Java's and rmqnode's 5000000).")
@click.option("--max-entries", type=click.IntRange(1),
              help="maxIndexNum the node ran with (default: 4 x slots, as in Java).")
@click.option("--body", "body_format", type=click.Choice(BODY_FORMATS), default="auto",
              show_default=True)
@pass_ctx
def index(ctx: Ctx, root: Path, key: str, topic: str | None, begin: int | None,
          end: int | None, max_num: int, slots: int | None, max_entries: int | None,
          body_format: str) -> None:
    """Find messages by key in a store's IndexFiles, offline, and print their records.

    Keys are what producers set in KEYS (each word) and the message id (UNIQ_KEY). A key
    is indexed per topic: without --topic every topic of the store is looked up. Hash
    collisions are removed by checking the key on the record. Exit code 3 if none is found,
    1 if an index file or a record it points to is damaged.

    \b
    Examples:
      rmqctl store index ~/.rmqnode/store --key order-42 --topic Orders
      rmqctl store index /data/store -k 7F0000010F2E18B4AAC27B8E01230000
      rmqctl -o json store index /data/store -k ka7 --begin 2026-11-24T22:00:00Z --end -1h
    """
    root = _store_root(root)
    files = sorted(p for p in (root / "index").glob("*") if p.name.isdigit() and p.is_file())
    if not files:
        ctx.fail(f"{root} has no index files", 3)
    slots, max_entries = _geometry(files[0].stat().st_size, slots, max_entries)
    damage, good = [], []
    want = index_file_size(slots, max_entries)
    for path in files:
        problem = _index_problem(path, want, max_entries)
        if problem is None:
            good.append(path)
        else:
            damage.append(Damage(str(path), 0, problem, "layout"))
    service = IndexService(str(root / "index"), slots, max_entries, readonly=True)
    service.files = [IndexFile(p, slots, max_entries, readonly=True) for p in good]
    topics = [topic] if topic else sorted({t for t, _, _ in consume_queues(root)})
    log = CommitLogReader(commitlog_files(root))
    found = []
    low, high = begin or 0, 2**62 if end is None else end
    try:
        for name in topics:
            hits = 0
            # The index keeps times in whole seconds from its file's start: ask a second
            # wider, then keep the records whose own store time is in range.
            for phy in service.query(name, key, max_num * 2, low - 1000, high + 1000):
                try:
                    msg = log.message_at(phy)
                except CorruptRecord as exc:
                    damage.append(Damage(exc.file or "commitlog", exc.offset, "an index entry "
                                         f"for {key} points at a corrupt record: {exc.reason}"))
                    continue
                if msg is not None and msg.topic == name and hits < max_num \
                        and key in index_keys(msg.properties) \
                        and low <= msg.store_timestamp <= high:
                    found.append(msg)
                    hits += 1
    finally:
        service.close()
        log.close()
    found.sort(key=lambda m: m.commit_log_offset)
    rows = [message_row(m, body_format) for m in found]
    emit_rows(rows, ctx.output, ["commitLogOffset", "topic", "queueId", "queueOffset", "tags",
                                 "keys", "storeTimestamp", "body"]
              if ctx.output in ("table", "raw") else None)
    report_damage(damage)
    if damage:
        sys.exit(1)
    if not rows:
        raise NotFound(f"no message with key {key} in {root}'s index" +
                       (f" for topic {topic}" if topic else ""))


def _geometry(size: int, slots: int | None, entries: int | None) -> tuple[int, int]:
    """(slots, entries) of index files of `size` bytes: both given, one given and the other
    found from the size, or Java's ratio of 4 entries per slot."""
    if slots is None and entries is None:
        if (size - INDEX_HEADER.size) % 84 == 0:
            slots = (size - INDEX_HEADER.size) // 84
            return slots, 4 * slots
        raise click.UsageError(f"index files of {size} bytes are not of 4 entries per slot: "
                               "give --slots and --max-entries (the node's maxHashSlotNum and "
                               "maxIndexNum)")
    if slots is None:
        slots = (size - index_file_size(0, entries or 0)) // 4
    elif entries is None:
        entries = (size - index_file_size(slots, 0)) // 20
    if slots < 1 or entries < 1 or index_file_size(slots, entries) != size:
        raise click.UsageError(f"index files of {size} bytes do not have {slots} slots and "
                               f"{entries} entries")
    return slots, entries


def _index_problem(path: Path, size: int, max_entries: int) -> str | None:
    actual = path.stat().st_size
    if actual != size:
        return f"size {actual} differs from the {size} of the others"
    data = read_only_map(path)
    try:
        count = INDEX_HEADER.unpack_from(data, 0)[5]
    finally:
        if not isinstance(data, bytes):
            data.close()
    if not 0 <= count <= max_entries:
        return f"header counts {count} entries, more than the {max_entries} it can hold"
    return None

"""Offline store commands: read CommitLog and ConsumeQueue files directly, no node needed.
They open files read-only and work on stores written by Java RocketMQ as well."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rmqnode.message import MessageExt
from rmqnode.storage.reader import (CommitLogReader, Damage, NotAStore, check_entry,
                                    commitlog_files, consume_queues, queue_entries)
from rmqnode.storage.records import CorruptRecord
from rmqctl.context import Ctx, pass_ctx
from rmqctl.output import emit_rows
from rmqctl.render import BODY_FORMATS, message_row


def commitlog_reader(path: Path) -> CommitLogReader:
    try:
        return CommitLogReader(commitlog_files(path))
    except NotAStore as exc:
        raise click.UsageError(str(exc)) from None


class Progress:
    """A progress bar on stderr for scans of more than one file, only on a terminal (pipes
    and scripts see nothing of it)."""

    def __init__(self, sizes: list[int], label: str = "scanning") -> None:
        self.bar = None
        if len(sizes) > 1 and sys.stderr.isatty():
            self.bar = click.progressbar(length=sum(sizes), label=label, file=sys.stderr)

    def __enter__(self) -> Progress:
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def report_damage(damage: list[Damage]) -> None:
    """One stderr line per damage, with its file and offset."""
    for d in damage:
        what = "corrupt record" if d.kind in ("crc", "corrupt") else "damaged store"
        click.echo(f"rmqctl: {what}: {d}", err=True)


@click.command("inspect-commitlog")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("-t", "--topic", help="Only messages of this topic.")
@click.option("--from-offset", type=int, default=0, help="First commit log offset to show.")
@click.option("--to-offset", type=int, default=None, help="Stop before this offset.")
@click.option("--verify", is_flag=True, help="Check body CRCs too.")
@click.option("--summary", is_flag=True, help="Counts per topic and queue instead of messages.")
@click.option("--body", "body_format", type=click.Choice(BODY_FORMATS), default="auto",
              show_default=True, help="How to print bodies (auto: UTF-8 text, else base64).")
@pass_ctx
def inspect_commitlog(ctx: Ctx, path: Path, topic: str | None, from_offset: int,
                      to_offset: int | None, verify: bool, summary: bool,
                      body_format: str) -> None:
    """Read CommitLog files offline: a store root, its commitlog/ folder, or one file.

    A bad magic code, a truncated or torn record, or (with --verify) a body that fails its
    CRC is reported on stderr with its file and offset, and the scan goes on at the next
    record that checks out; the exit code is then 1. A --summary over damage says it is
    partial. Files are opened read-only: safe on a running node's or a Java broker's store.

    \b
    Examples:
      rmqctl inspect-commitlog ~/.rmqnode/store --summary
      rmqctl -o ndjson inspect-commitlog /data/store -t Orders --body none
      rmqctl inspect-commitlog store/commitlog/00000000001073741824 --verify
    """
    log = commitlog_reader(path)
    damage: list[Damage] = []
    rows, stats = [], {}
    with Progress([p.stat().st_size for p in log.files]) as progress:
        for item in log.records(check_crc=verify, progress=progress.advance):
            if isinstance(item, Damage):
                damage.append(item)
                continue
            off = item.commit_log_offset
            if off < from_offset or (topic and item.topic != topic):
                continue
            if to_offset is not None and off >= to_offset:
                break
            if summary:
                _count(stats, item)
            elif ctx.output == "ndjson":
                emit_rows([message_row(item, body_format)], "ndjson")
            else:
                row = message_row(item, body_format)
                if ctx.output == "table" and isinstance(row.get("body"), str) and \
                        len(row["body"]) > 60:
                    row["body"] = row["body"][:57] + "..."  # for reading; -o json has all
                rows.append(row)
    log.close()
    if summary:
        emit_rows(sorted(stats.values(), key=lambda r: (r["topic"], r["queueId"])), ctx.output)
    elif ctx.output != "ndjson":
        columns = ["commitLogOffset", "topic", "queueId", "queueOffset", "tags", "keys",
                   "storeTimestamp", "body"] if ctx.output in ("table", "raw") else None
        emit_rows(rows, ctx.output, columns)
    report_damage(damage)
    unread = [d for d in damage if d.kind != "crc"]
    if summary and unread:
        click.echo(f"rmqctl: the summary is partial: {len(unread)} damaged regions "
                   f"({sum(d.length for d in unread)} bytes) could not be read", err=True)
    if damage:
        sys.exit(1)


def _count(stats: dict, msg: MessageExt) -> None:
    s = stats.setdefault((msg.topic, msg.queue_id), {
        "topic": msg.topic, "queueId": msg.queue_id, "messages": 0, "bytes": 0,
        "firstStoreTimestamp": msg.store_timestamp, "lastStoreTimestamp": msg.store_timestamp})
    s["messages"] += 1
    s["bytes"] += msg.store_size
    s["lastStoreTimestamp"] = msg.store_timestamp


@click.command("dump-consumequeue")
@click.argument("store", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-t", "--topic", required=True)
@click.option("-q", "--queue", "queue_id", type=int, default=None,
              help="One queue (default: every queue of the topic).")
@click.option("--resolve", is_flag=True, help="Show the message each entry points to.")
@click.option("--body", "body_format", type=click.Choice(BODY_FORMATS), default="auto",
              show_default=True)
@pass_ctx
def dump_consumequeue(ctx: Ctx, store: Path, topic: str, queue_id: int | None, resolve: bool,
                      body_format: str) -> None:
    """One row per queue offset of a topic's consume queues, offline. An entry that does not
    match its CommitLog record (none there, another message, another size or tags code) is
    flagged, as is a damaged queue file, and the exit code is then 1.

    \b
    Examples:
      rmqctl dump-consumequeue ~/.rmqnode/store -t Orders
      rmqctl dump-consumequeue ~/.rmqnode/store -t Orders -q 0
      rmqctl -o ndjson dump-consumequeue /data/store -t Orders -q 3 --resolve
    """
    queues = [q for q in consume_queues(store, topic) if queue_id in (None, q[1])]
    if not queues:
        what = f"{topic}/{queue_id}" if queue_id is not None else f"of topic {topic}"
        ctx.fail(f"no consume queue {what} in {store}")
    log = CommitLogReader(commitlog_files(store) if (store / "commitlog").is_dir() else [])
    rows, damage, bad = [], [], 0
    for name, qid, folder in queues:
        for entry in queue_entries(folder):
            if isinstance(entry, Damage):
                damage.append(entry)
                continue
            q_offset, phy, size, tags = entry
            row = {"queueId": qid, "queueOffset": q_offset, "commitLogOffset": phy,
                   "size": size, "tagsCode": tags}
            problem = check_entry(name, qid, entry, log)
            if problem is not None:
                row["problem"] = problem
                bad += 1
            if resolve:
                try:
                    msg = log.message_at(phy)
                except CorruptRecord:
                    msg = None
                if msg is not None:
                    row["message"] = message_row(msg, body_format)
            rows.append(row)
    log.close()
    emit_rows(rows, ctx.output, ["queueOffset", "queueId", "commitLogOffset", "size",
                                 "tagsCode", "problem"] if ctx.output in ("table", "raw")
              else None)
    report_damage(damage)
    if bad:
        click.echo(f"rmqctl: {bad} entries point nowhere or at the wrong record", err=True)
    if bad or damage:
        sys.exit(1)

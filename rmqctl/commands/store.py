"""Offline store commands: read CommitLog and ConsumeQueue files directly, no node needed.
They open files read-only and work on stores written by Java RocketMQ as well."""

from __future__ import annotations

import mmap
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from rmqnode.message import MessageExt
from rmqnode.storage.records import (CQ_ENTRY, CQ_UNIT_SIZE, Blank, CorruptRecord, body_crc,
                                     decode_record)
from rmqctl.context import Ctx, pass_ctx
from rmqctl.output import emit_rows
from rmqctl.render import BODY_FORMATS, message_row

def read_only_map(path: Path) -> bytes | mmap.mmap:
    """The file's bytes without reading 1 GiB into memory; never writable."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return b""
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def commitlog_files(path: Path) -> list[Path]:
    """A store root, its commitlog/ folder, or one CommitLog file."""
    if path.is_file():
        return [path]
    folder = path / "commitlog" if (path / "commitlog").is_dir() else path
    files = sorted(p for p in folder.iterdir() if p.name.isdigit() and len(p.name) == 20) \
        if folder.is_dir() else []
    if not files:
        raise click.UsageError(f"{path} holds no CommitLog files (a store root, its commitlog/ "
                               "folder, or a file named by its 20-digit offset)")
    return files


class Progress:
    """A progress bar on stderr for scans of more than one file, only on a terminal (pipes
    and scripts see nothing of it)."""

    def __init__(self, files: list[Path]) -> None:
        self.bar = None
        if len(files) > 1 and sys.stderr.isatty():
            self.bar = click.progressbar(length=sum(p.stat().st_size for p in files),
                                         label="scanning", file=sys.stderr)
            self.bar.__enter__()

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def scan(files: list[Path], verify: bool, problems: list[str]) -> Iterator[MessageExt]:
    """Every record in offset order. With `verify`, a bad record is reported (file, offset,
    reason) and skipped when its size is plausible; otherwise the file's scan ends there."""
    progress = Progress(files)
    try:
        for path in files:
            yield from _scan_file(path, verify, problems)
            progress.advance(path.stat().st_size)
    finally:
        progress.close()


def _scan_file(path: Path, verify: bool, problems: list[str]) -> Iterator[MessageExt]:
    base = int(path.name) if path.name.isdigit() else 0
    data = read_only_map(path)
    pos = 0
    while pos < len(data):
        try:
            rec = decode_record(data, pos, base)
        except CorruptRecord as exc:
            problems.append(f"{path} offset {exc.offset}: {exc.reason}")
            size = int.from_bytes(data[pos:pos + 4], "big", signed=True)
            if not verify or size < 91 or pos + size > len(data):
                break
            pos += size
            continue
        if rec is None or isinstance(rec, Blank):
            break
        if verify and body_crc(rec.body) != rec.body_crc:
            problems.append(f"{path} offset {base + pos}: body CRC {body_crc(rec.body)} "
                            f"does not match stored {rec.body_crc}")
        yield rec
        pos += rec.store_size


@click.command("inspect-commitlog")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("-t", "--topic", help="Only messages of this topic.")
@click.option("--from-offset", type=int, default=0, help="First commit log offset to show.")
@click.option("--to-offset", type=int, default=None, help="Stop before this offset.")
@click.option("--verify", is_flag=True,
              help="Check structure and body CRCs; report every bad record; exit 1 if any.")
@click.option("--summary", is_flag=True, help="Counts per topic and queue instead of messages.")
@click.option("--body", "body_format", type=click.Choice(BODY_FORMATS), default="auto",
              show_default=True, help="How to print bodies (auto: UTF-8 text, else base64).")
@pass_ctx
def inspect_commitlog(ctx: Ctx, path: Path, topic: str | None, from_offset: int,
                      to_offset: int | None, verify: bool, summary: bool,
                      body_format: str) -> None:
    """Read CommitLog files offline: a store root, its commitlog/ folder, or one file.

    \b
    Examples:
      rmqctl inspect-commitlog ~/.rmqnode/store --summary
      rmqctl -o ndjson inspect-commitlog /data/store -t Orders --body none
      rmqctl inspect-commitlog store/commitlog/00000000001073741824 --verify
    """
    problems: list[str] = []
    files = commitlog_files(path)
    rows, stats = [], {}
    for msg in scan(files, verify, problems):
        off = msg.commit_log_offset
        if off < from_offset or (topic and msg.topic != topic):
            continue
        if to_offset is not None and off >= to_offset:
            break
        if summary:
            key = (msg.topic, msg.queue_id)
            s = stats.setdefault(key, {"topic": msg.topic, "queueId": msg.queue_id,
                                       "messages": 0, "bytes": 0,
                                       "firstStoreTimestamp": msg.store_timestamp,
                                       "lastStoreTimestamp": msg.store_timestamp})
            s["messages"] += 1
            s["bytes"] += msg.store_size
            s["lastStoreTimestamp"] = msg.store_timestamp
        elif ctx.output == "ndjson":
            emit_rows([message_row(msg, body_format)], "ndjson")
        else:
            row = message_row(msg, body_format)
            if ctx.output == "table" and isinstance(row.get("body"), str) and \
                    len(row["body"]) > 60:
                row["body"] = row["body"][:57] + "..."  # a table is for reading; -o json has all
            rows.append(row)
    if summary:
        emit_rows(sorted(stats.values(), key=lambda r: (r["topic"], r["queueId"])), ctx.output)
    elif ctx.output != "ndjson":
        columns = ["commitLogOffset", "topic", "queueId", "queueOffset", "tags", "keys",
                   "storeTimestamp", "body"] if ctx.output in ("table", "raw") else None
        emit_rows(rows, ctx.output, columns)
    for line in problems:
        click.echo(f"rmqctl: corrupt record: {line}", err=True)
    if problems:
        sys.exit(1)


@click.command("dump-consumequeue")
@click.argument("store", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-t", "--topic", required=True)
@click.option("-q", "--queue", "queue_id", type=int, required=True)
@click.option("--resolve", is_flag=True, help="Show the message each entry points to.")
@click.option("--body", "body_format", type=click.Choice(BODY_FORMATS), default="auto",
              show_default=True)
@pass_ctx
def dump_consumequeue(ctx: Ctx, store: Path, topic: str, queue_id: int, resolve: bool,
                      body_format: str) -> None:
    """One row per queue offset of a ConsumeQueue, offline. Entries that point nowhere (no
    record of this topic and queue at that offset) are flagged and make the exit code 1.

    \b
    Examples:
      rmqctl dump-consumequeue ~/.rmqnode/store -t Orders -q 0
      rmqctl -o ndjson dump-consumequeue /data/store -t Orders -q 3 --resolve
    """
    folder = store / "consumequeue" / topic / str(queue_id)
    if not folder.is_dir():
        ctx.fail(f"no consume queue {topic}/{queue_id} in {store}")
    logs = {int(p.name): p for p in commitlog_files(store)} if (store / "commitlog").is_dir() \
        else {}
    file_size = os.path.getsize(next(iter(logs.values()))) if logs else 0
    cache: dict[int, bytes | mmap.mmap] = {}
    rows, dangling = [], 0
    for name in sorted(p.name for p in folder.iterdir() if p.name.isdigit()):
        data = (folder / name).read_bytes()
        first = int(name) // CQ_UNIT_SIZE
        for i in range(len(data) // CQ_UNIT_SIZE):
            phy, size, tags = CQ_ENTRY.unpack_from(data, i * CQ_UNIT_SIZE)
            if phy == 0 and size == 0 and tags == 0 and (i or first):
                break  # the unwritten rest of the file
            row = {"queueOffset": first + i, "commitLogOffset": phy, "size": size,
                   "tagsCode": tags}
            msg = _resolve(logs, cache, file_size, phy)
            ok = msg is not None and (msg.topic, msg.queue_id, msg.queue_offset,
                                      msg.store_size) == (topic, queue_id, first + i, size)
            if not ok:
                row["problem"] = "points nowhere" if msg is None else "points at another message"
                dangling += 1
            if resolve and msg is not None:
                row["message"] = message_row(msg, body_format)
            rows.append(row)
    emit_rows(rows, ctx.output, ["queueOffset", "commitLogOffset", "size", "tagsCode",
                                 "problem"] if ctx.output in ("table", "raw") else None)
    if dangling:
        click.echo(f"rmqctl: {dangling} entries point nowhere", err=True)
        sys.exit(1)


def _resolve(logs: dict[int, Path], cache: dict[int, bytes | mmap.mmap], file_size: int,
             phy: int) -> MessageExt | None:
    if not file_size:
        return None
    start = phy - phy % file_size
    if start not in logs:
        return None
    if start not in cache:
        cache.clear()
        cache[start] = read_only_map(logs[start])
    try:
        rec = decode_record(cache[start], phy - start, start)
    except CorruptRecord:
        return None
    return rec if isinstance(rec, MessageExt) else None

"""`rmqctl offset reset`: move a group's offsets, live or on a stopped node's store."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import click

from rmqnode.config import BrokerConfig
from rmqnode.net.codes import RequestCode
from rmqnode.broker.offsets import ConsumerOffsetManager
from rmqctl.client.admin import Admin
from rmqctl.context import Ctx, pass_ctx
from rmqctl.output import emit_rows


@click.group()
def offset() -> None:
    """Consumer offsets."""


@offset.command("reset")
@click.option("-g", "--group", required=True)
@click.option("-t", "--topic", required=True)
@click.option("--to-timestamp", type=int, metavar="MS", help="First message stored at or after.")
@click.option("--to-offset", type=int, help="This offset, on every queue (or --queue).")
@click.option("--earliest", is_flag=True, help="The first message still stored.")
@click.option("--latest", is_flag=True, help="After the last message.")
@click.option("--queue", type=int, help="Only this queue.")
@click.option("--offline", "store", type=click.Path(file_okay=False, path_type=Path),
              help="Edit consumerOffset.json of a STOPPED node's store instead.")
@pass_ctx
def offset_reset(ctx: Ctx, group: str, topic: str, to_timestamp: int | None,
                 to_offset: int | None, earliest: bool, latest: bool, queue: int | None,
                 store: Path | None) -> None:
    """Move GROUP's offsets on TOPIC. Live: every broker of the topic resets them and tells
    the group's online members. --offline edits a stopped node's store.

    \b
    Examples:
      rmqctl offset reset -g orders-service -t Orders --to-timestamp 1700000000000
      rmqctl offset reset -g audit -t Orders --earliest
      rmqctl offset reset -g audit -t Orders --to-offset 0 --offline ~/.rmqnode/store
    """
    chosen = [x for x in (to_timestamp is not None, to_offset is not None, earliest, latest) if x]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --to-timestamp, --to-offset, --earliest, "
                               "--latest")
    if store is not None:
        if to_offset is None:
            raise click.UsageError("--offline takes --to-offset (times need the running node)")
        emit_rows(_reset_offline(ctx, store, group, topic, to_offset, queue), ctx.output)
        return
    timestamp = 0 if earliest else -1 if latest else to_timestamp if to_timestamp is not None \
        else 0

    async def work(ns):
        admin = Admin(ns)
        fields = {"topic": topic, "group": group, "timestamp": timestamp, "isForce": True}
        if to_offset is not None:
            fields |= {"queueId": queue if queue is not None else -1, "offset": to_offset}
        elif queue is not None:
            fields["queueId"] = queue
        rows = [{"topic": topic, "brokerName": broker_name, "queueId": mq["queueId"],
                 "offset": value}
                for broker_name, mq, value in await admin.queue_tables(
                    await admin.topic_masters(topic), RequestCode.INVOKE_BROKER_TO_RESET_OFFSET,
                    fields)]
        return sorted(rows, key=lambda r: (r["brokerName"], r["queueId"]))
    emit_rows(ctx.run(work), ctx.output)


def _reset_offline(ctx: Ctx, store: Path, group: str, topic: str, to_offset: int,
                   queue: int | None) -> list[dict]:
    lock = store / "lock"
    if lock.exists():
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            ctx.fail(f"{store} is in use by a running node: stop it first, or reset live")
        finally:
            os.close(fd)
    offsets = ConsumerOffsetManager(BrokerConfig(storePathRootDir=str(store)))
    offsets.load()
    queues = sorted(offsets.queues(group, topic))
    if queue is not None:
        queues = [queue]
    if not queues:
        ctx.fail(f"{store} has no offsets of group {group} on {topic}")
    for q in queues:
        offsets.commit(group, topic, q, to_offset)
    offsets.persist()  # atomically, keeping the previous file as .bak
    return [{"topic": topic, "queueId": q, "offset": to_offset} for q in queues]

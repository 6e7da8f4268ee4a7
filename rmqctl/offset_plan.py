"""What an offset reset will do, shown before it does it (`rmqctl offset reset`): per queue the
group's committed offset before, the offset after, the queue's max offset and the lag before
and after (lag: the messages left to read, max offset - committed offset). A reset applies
only once the operator has seen this: `--dry-run` stops at it, a terminal asks, and anywhere
else the reset needs `--yes`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import click

from rmqctl.context import Ctx
from rmqctl.offset_file import QueueOffsets
from rmqctl.output import emit_rows


@dataclass(frozen=True)
class Target:
    """Where a reset puts each queue: `offset` (clamped to what the queue holds), or the
    first message stored at or after `timestamp` (0: the first one, -1: after the last); or,
    with `saved` (--to-group, --to-file), each queue's own offset, clamped the same way,
    and queues that `source` has no offset of stay as they are."""
    timestamp: int = 0
    offset: int | None = None
    saved: dict[str, QueueOffsets] | None = None
    source: str = ""

    def requested(self, topic: str, broker_name: str, queue_id: int) -> int | None:
        """The exact offset asked for this queue (None: by time, or none saved)."""
        if self.saved is not None:
            return self.saved.get(topic, {}).get((broker_name, queue_id))
        return self.offset

    def fields(self, topic: str, group: str) -> dict[str, Any]:
        """INVOKE_BROKER_TO_RESET_OFFSET's header for every queue (a saved offset: its
        queueId and offset are added, one request per queue)."""
        return {"topic": topic, "group": group, "timestamp": self.timestamp,
                "isForce": True} | ({"offset": self.offset} if self.offset is not None else {})


@dataclass(frozen=True)
class QueuePlan:
    """One queue before and after (`after` None: left as it is); `broker_name` is None on a
    stopped node's store, which does not know its own name."""
    topic: str
    broker_name: str | None
    queue_id: int
    before: int | None
    after: int | None
    max_offset: int
    requested: int | None

    def row(self, target: Target, via: str | None = None) -> dict[str, Any]:
        """The same columns for every queue of a reset, so tables and JSON line up."""
        after = self.before if self.after is None else self.after
        lag_before = None if self.before is None else self.max_offset - self.before
        lag_after = None if after is None else self.max_offset - after
        row = {"topic": self.topic} | (
            {"brokerName": self.broker_name} if self.broker_name else {}) | {
            "queueId": self.queue_id, "before": self.before, "after": after,
            "maxOffset": self.max_offset, "lagBefore": lag_before, "lagAfter": lag_after,
            "lagChange": None if lag_before is None or lag_after is None
            else lag_after - lag_before}
        if target.offset is not None or target.saved is not None:
            row |= {"requested": self.requested, "clamped": _clamped(self.requested, after)}
        if target.saved is not None:
            row["unchanged"] = f"no offset in {target.source}" if self.after is None else None
        return row | ({"via": via} if via else {})

    def done(self, offset: int) -> QueuePlan:
        """This queue as the reset left it."""
        return replace(self, after=offset)


def _clamped(requested: int | None, offset: int | None) -> str | None:
    """Which end of the queue cut what was asked."""
    if requested is None or offset is None or offset == requested:
        return None
    return "to max" if offset < requested else "to min"


def question(plans: list[QueuePlan], group: str) -> str:
    topics = sorted({p.topic for p in plans})
    moved = sum(p.after is not None for p in plans)
    return (f"Reset {moved} queue{'s' * (moved != 1)} of group {group} on "
            f"topic{'s' * (len(topics) > 1)} {', '.join(topics)}")


def go_ahead(ctx: Ctx, plans: list[QueuePlan], target: Target, group: str, dry_run: bool,
             yes: bool) -> bool:
    """Whether to apply: not with --dry-run (the preview is the output); with --yes; on a
    terminal (stdin and stdout, where the preview shows) when the operator says y. Anywhere
    else nothing changes and the exit code is 2, as for other changes that need --yes."""
    rows = [p.row(target) for p in plans]
    if dry_run:
        emit_rows(rows, ctx.output)
        click.echo("rmqctl: dry run: nothing changed", err=True)
        return False
    ctx.confirm(question(plans, group), yes, "to reset without a terminal to ask on "
                "(--dry-run shows what would change)", lambda: emit_rows(rows, ctx.output))
    return True

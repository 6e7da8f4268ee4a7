"""`rmqctl bench produce|consume|e2e`: load a cluster and report msgs/s, MB/s and latency
percentiles, from as many worker processes as it takes (see rmqctl/client/bench_pool.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from rmqctl.client.bench import (ConsumeLoad, ConsumeSpec, Meter, ProduceLoad, ProduceSpec,
                                 STAMP, ensure_topic, queue_offsets)
from rmqctl.client.bench_pool import BenchFailed, Job, Pool, RoleTotals
from rmqctl.client.namesrv import NameServerClient
from rmqctl.context import Ctx, pass_ctx
from rmqctl.output import emit_object, emit_rows

E2E_GRACE = 5.0  # seconds e2e consumers may go without a message once producers are done
COLUMNS = ["role", "messages", "errors", "seconds", "msgs/s", "MB/s", "latency", "p50 ms",
           "p90 ms", "p99 ms", "p99.9 ms", "max ms"]


class Misuse(click.ClickException):
    """Misuse of a bench command: one line on stderr and exit 2, like every rmqctl failure
    (click's own usage errors print four lines; run.py and scripts read the one)."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"rmqctl: {self.format_message()}", err=True)


class BenchCommand(click.Command):
    """A command whose usage errors are Misuse (one line, exit 2)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise Misuse(exc.format_message()) from None


def split(total: int, parts: int) -> list[int]:
    """total spread over parts as evenly as whole numbers allow."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def side(totals: RoleTotals, started: float, latency_of: str, open_ended: bool = False
         ) -> dict[str, Any]:
    """One role's figures, as -o json prints them. An open-ended role (e2e's consumers, which
    wait until told to stop) is timed to its last message, not to the stop."""
    meter = totals.meter
    ended = meter.last_at if open_ended and meter.last_at else totals.ended
    seconds = max(ended - started, 1e-9)
    out: dict[str, Any] = {
        "messages": meter.messages, "bytes": meter.bytes, "errors": meter.errors,
        "seconds": round(seconds, 3), "msgsPerSec": round(meter.messages / seconds, 1),
        "mbPerSec": round(meter.bytes / seconds / 1e6, 3), "latencyOf": latency_of,
        "latencyMs": meter.latency.summary_ms() if meter.latency.count else None}
    if meter.last_error:
        out["lastError"] = meter.last_error
    return out


def table_row(role: str, figures: dict[str, Any]) -> dict[str, Any]:
    ms = figures["latencyMs"] or {}
    row = {"role": role, "messages": f"{figures['messages']:,}",
           "errors": f"{figures['errors']:,}", "seconds": f"{figures['seconds']:.2f}",
           "msgs/s": f"{figures['msgsPerSec']:,.0f}", "MB/s": f"{figures['mbPerSec']:.2f}",
           "latency": figures["latencyOf"] if ms else "-"}
    for name in ("p50", "p90", "p99", "p99.9", "max"):
        row[f"{name} ms"] = f"{ms[name]:.2f}" if ms else "-"
    return row


class Progress:
    """The once-a-second line on stderr: each role's rate over the last second, MB/s, and
    the p99 of everything so far."""

    def __init__(self, roles: list[str]) -> None:
        self.last = {role: Meter() for role in roles}

    def __call__(self, pool: Pool, elapsed: float) -> None:
        parts = []
        for role, before in self.last.items():
            meter = pool.totals[role].meter
            rate = meter.messages - before.messages
            mb = (meter.bytes - before.bytes) / 1e6
            p99 = f" p99 {meter.latency.percentile(0.99) * 1000:.2f} ms" \
                if meter.latency.count else ""  # oneway: no answers, no latency
            parts.append(f"{role} {rate:,} msgs/s {mb:.2f} MB/s{p99} ({meter.messages:,} total)")
            before.messages, before.bytes = meter.messages, meter.bytes
        click.echo(f"bench {elapsed:4.0f}s  " + " | ".join(parts), err=True)


def run_pool(ctx: Ctx, jobs: list[Job], on_tick: Callable[[Pool, float], None]
             ) -> tuple[Pool, dict[str, RoleTotals]]:
    """Run the workers; a worker's failure is one line and exit 1. Ctrl-C once they run still
    returns (finish() prints what was measured); before that it just ends with 130."""
    pool = Pool(jobs)
    try:
        return pool, pool.run(on_tick)
    except BenchFailed as exc:
        ctx.fail(str(exc), 1, exc)
        raise  # not reached: fail() exits
    except KeyboardInterrupt:
        sys.exit(130)


def finish(ctx: Ctx, result: dict[str, Any], roles: list[str], pool: Pool) -> None:
    """Print the result (one JSON object, or a table); exit 1 if nothing at all got through,
    130 after Ctrl-C."""
    if ctx.output in ("json", "ndjson"):
        emit_object(result, ctx.output)
    else:
        emit_rows([table_row(role, result[role]) for role in roles], ctx.output, COLUMNS)
    errors = [(role, result[role]) for role in roles if result[role]["errors"]]
    for role, figures in errors:
        click.echo(f"rmqctl: {figures['errors']} {role} errors, last: "
                   f"{figures.get('lastError', '?')}", err=True)
    if pool.interrupted:
        sys.exit(130)
    if any(not result[role]["messages"] for role, _ in errors):
        sys.exit(1)


def _produce_options(f: Callable) -> Callable:
    options = [
        click.option("-t", "--topic", default="BenchTopic", show_default=True,
                     help="Created with --queues on every master if it does not exist."),
        click.option("--queues", type=click.IntRange(1, 1024), default=8, show_default=True,
                     help="Queues of the topic when bench creates it."),
        click.option("-s", "--size", type=click.IntRange(1, 4 * 1024 * 1024), default=128,
                     show_default=True, help="Message body bytes."),
        click.option("-c", "--connections", type=click.IntRange(1, 4096), default=4,
                     show_default=True, help="Producer connections, each its own client."),
        click.option("--inflight", type=click.IntRange(1, 65536),
                     help="Sends outstanding per connection. Default: 1 sync, 16 async."),
        click.option("--batch", type=click.IntRange(1, 1024), default=1, show_default=True,
                     help="Messages per SEND_BATCH_MESSAGE (1: plain sends)."),
        click.option("--mode", default="async", show_default=True,
                     type=click.Choice(["sync", "async", "oneway"]),
                     help="oneway: no answers, so no latency."),
        click.option("-d", "--duration", type=click.FloatRange(0, min_open=True),
                     help="Seconds to send (default 10 unless -n)."),
        click.option("-n", "--count", type=click.IntRange(1), help="Messages to send in all."),
        click.option("--procs", type=click.IntRange(1, 256), default=1, show_default=True,
                     help="Producer processes (at most one per connection)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def produce_settings(topic: str, size: int, connections: int, inflight: int | None,
                     batch: int, mode: str) -> dict[str, Any]:
    """What produce and e2e print about how they sent, beside the figures."""
    return {"topic": topic, "size": size, "connections": connections,
            "inflight": window_of(mode, inflight), "batch": batch, "mode": mode}


def send_latency(mode: str) -> str:
    return "none" if mode == "oneway" else "send"  # oneway: no answers to time


def window_of(mode: str, inflight: int | None) -> int:
    """--inflight, else 1 for sync (one send at a time per connection, as a sync client
    thread does) and 16 for async and oneway."""
    return inflight or (1 if mode == "sync" else 16)


def produce_jobs(ctx: Ctx, topic: str, size: int, connections: int, inflight: int | None,
                 batch: int, mode: str, duration: float | None, count: int | None,
                 procs: int, stamped: bool) -> list[Job]:
    if batch > 1 and mode == "oneway":
        raise Misuse("--batch needs answers: use --mode sync or async")
    window = window_of(mode, inflight)
    if duration is None and count is None:
        duration = 10.0
    procs = min(procs, connections)
    counts = split(count, procs) if count is not None else [None] * procs
    specs = [ProduceSpec(ctx.namesrv_addr, topic, size, conns, window, batch, mode, duration,
                         n, ctx.timeout, stamped, ctx.credentials())
             for conns, n in zip(split(connections, procs), counts)]
    return [Job("produce", lambda s=spec: ProduceLoad(s)) for spec in specs]


def consume_jobs(ctx: Ctx, topic: str, group: str, queues: list, connections: int,
                 procs: int, pull_batch: int, follow: bool, duration: float | None,
                 stamped: bool) -> list[Job]:
    """Queues dealt round-robin over connections, connections over processes."""
    connections = max(1, min(connections, len(queues)))
    slots = [queues[i::connections] for i in range(connections)]
    procs = min(procs, connections)
    specs = [ConsumeSpec(ctx.namesrv_addr, topic, group, slots[k::procs], pull_batch, follow,
                         duration, ctx.timeout, stamped, ctx.credentials())
             for k in range(procs)]
    return [Job("consume", lambda s=spec: ConsumeLoad(s)) for spec in specs]


@click.group()
def bench() -> None:
    """Benchmark a cluster: produce, consume (drain) or both at once (e2e latency); or this
    machine's limits the cluster is judged against (disk, net: no node needed)."""


@bench.command(cls=BenchCommand)
@_produce_options
@pass_ctx
def produce(ctx: Ctx, topic: str, queues: int, size: int, connections: int,
            inflight: int | None, batch: int, mode: str, duration: float | None,
            count: int | None, procs: int) -> None:
    """Send SIZE-byte messages to TOPIC as fast as the window allows; report msgs/s, MB/s and
    send latency (request to answer) percentiles.

    \b
    Examples:
      rmqctl bench produce -d 10 -c 16 --procs 2
      rmqctl bench produce -n 200000 -s 1024 --batch 32
      rmqctl -o json bench produce --mode sync -c 1 -n 1000
    """
    jobs = produce_jobs(ctx, topic, size, connections, inflight, batch, mode, duration, count,
                        procs, stamped=False)
    ctx.run(lambda ns: ensure_topic(ns, topic, queues))
    pool, totals = run_pool(ctx, jobs, Progress(["produce"]))
    result = {"command": "produce",
              **produce_settings(topic, size, connections, inflight, batch, mode),
              "procs": len(jobs), "produce": side(totals["produce"], pool.started,
                                                  send_latency(mode))}
    finish(ctx, result, ["produce"], pool)


@bench.command(cls=BenchCommand)
@click.option("-t", "--topic", default="BenchTopic", show_default=True)
@click.option("-g", "--group", default="BENCH_CONSUMER", show_default=True,
              help="Consumer group the pulls are made (and offsets committed) for.")
@click.option("-c", "--connections", type=click.IntRange(1, 1024), default=1, show_default=True,
              help="Consumer connections; the queues are dealt over them.")
@click.option("--batch", type=click.IntRange(1, 1024), default=32, show_default=True,
              help="Messages per pull (maxMsgNums).")
@click.option("-d", "--duration", type=click.FloatRange(0, min_open=True),
              help="Stop after this many seconds even if not drained.")
@click.option("--procs", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Consumer processes (at most one per connection).")
@pass_ctx
def consume(ctx: Ctx, topic: str, group: str, connections: int, batch: int,
            duration: float | None, procs: int) -> None:
    """Drain TOPIC from the first offset of every queue with PULL_MESSAGE; report msgs/s,
    MB/s and pull round-trip percentiles.

    \b
    Examples:
      rmqctl bench produce -n 200000 --batch 32 && rmqctl bench consume
      rmqctl -o json bench consume -t Orders -c 4 --procs 2
    """
    offsets = ctx.run(lambda ns: queue_offsets(ns, topic, "first"))
    jobs = consume_jobs(ctx, topic, group, offsets, connections, procs, batch, False, duration,
                        stamped=False)
    pool, totals = run_pool(ctx, jobs, Progress(["consume"]))
    result = {"command": "consume", "topic": topic, "group": group,
              "connections": min(connections, len(offsets)), "batch": batch,
              "procs": len(jobs), "consume": side(totals["consume"], pool.started, "pull")}
    finish(ctx, result, ["consume"], pool)


class E2EProgress(Progress):
    """Progress, and the end of e2e: consumers stop once they have every message the
    producers got answers for, or have gone E2E_GRACE seconds without one."""

    def __init__(self) -> None:
        super().__init__(["produce", "consume"])
        self.seen, self.quiet_since = -1, 0.0

    def __call__(self, pool: Pool, elapsed: float) -> None:
        super().__call__(pool, elapsed)
        produced, consumed = pool.totals["produce"], pool.totals["consume"].meter.messages
        if consumed != self.seen:
            self.seen, self.quiet_since = consumed, elapsed
        if produced.done and (consumed >= produced.meter.messages
                              or elapsed - self.quiet_since > E2E_GRACE):
            pool.stop("consume")


@bench.command(cls=BenchCommand)
@_produce_options
@click.option("-g", "--group", default="BENCH_CONSUMER", show_default=True)
@click.option("--consumer-procs", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Consumer processes (one connection each).")
@pass_ctx
def e2e(ctx: Ctx, topic: str, queues: int, size: int, connections: int, inflight: int | None,
        batch: int, mode: str, duration: float | None, count: int | None, procs: int,
        group: str, consumer_procs: int) -> None:
    """Produce and consume TOPIC at once; report both rates and the end-to-end latency of
    every message: its send time (stamped in the first 8 body bytes, as bornTimestamp only
    has milliseconds) to its arrival at a consumer.

    \b
    Examples:
      rmqctl bench e2e -d 10 -c 8 --procs 2
      rmqctl -o json bench e2e -n 5000 --mode sync
    """
    if size < STAMP.size:
        raise Misuse(f"e2e stamps the send time in the body: --size must be at least "
                     f"{STAMP.size}")
    producers = produce_jobs(ctx, topic, size, connections, inflight, batch, mode, duration,
                             count, procs, stamped=True)

    async def prepare(ns: NameServerClient) -> list:
        await ensure_topic(ns, topic, queues)
        return await queue_offsets(ns, topic, "last")

    offsets = ctx.run(prepare)
    consumers = consume_jobs(ctx, topic, group, offsets, consumer_procs, consumer_procs, 32,
                             True, None, stamped=True)
    pool, totals = run_pool(ctx, producers + consumers, E2EProgress())
    produced = side(totals["produce"], pool.started, send_latency(mode))
    consumed = side(totals["consume"], pool.started, "e2e", open_ended=True)
    result = {"command": "e2e", **produce_settings(topic, size, connections, inflight, batch,
                                                   mode),
              "procs": len(producers), "consumerProcs": len(consumers), "produce": produced,
              "consume": consumed,
              "missing": max(0, produced["messages"] - consumed["messages"])}
    finish(ctx, result, ["produce", "consume"], pool)


# After the group and BenchCommand, which they use: the machine's limits.
from rmqctl.commands.bench_hw import disk, net  # noqa: E402

bench.add_command(disk)
bench.add_command(net)

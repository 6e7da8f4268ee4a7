"""Two revisions of rmqnode loaded in turn on this machine: what a change did.

    python benchmarks/ab.py BASE                    # rmqctl bench, 16 connections, 128 B
    python benchmarks/ab.py BASE --load cpp         # the C++ client 1.x, 16 threads
    python benchmarks/ab.py BASE --flush SYNC_FLUSH --batch 32 --rounds 6

BASE (a commit, branch or tag) is checked out into a temporary git worktree and its compiled
accelerator built there; this checkout is the other side, as it is built. Each side gets
one node on a fresh store, started with PYTHONPATH set to its tree (a node runs in its own
home directory, so the path decides which code it imports). The rounds alternate which side
is loaded first; a load is `rmqctl bench produce` (benchmarks/run.py's produce settings) or
the C++ client (benchmarks/cpp_load.py, one producer shared by the threads), and its figure
is the node's CPU per message, all its threads, beside the rate; the summary gives the
medians of both and in how many pairs each side won.

Each load starts with what the loads before it wrote dropped from the page cache
(rows.settle: on this kind of machine new page-cache pages cost five times as much once
about 8 GB are in use, which used to make the speed drift within a run). The C++ client's
rate at 16 threads still swings from one process to the next: compare the sides' medians
and count the pairs, never one run against one run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench_acl import cpp_load, create_topic
from rows import LOAD_DIRS, on_cpu, rmqctl
from run import node_defines, produce_args
from servers import BENCH_DIR, Server, start_node

REPO = BENCH_DIR.parent


@contextmanager
def worktree(rev: str, work: Path) -> Iterator[Path]:
    """`rev` checked out beside this checkout, with its accelerator built (or a clear error)."""
    tree = work / "base"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), rev],
                   check=True, capture_output=True)
    try:
        built = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "-q"],
                               cwd=tree, capture_output=True, text=True)
        if built.returncode != 0 and (tree / "rmqnode" / "csrc").exists():
            sys.exit(f"ab.py: the accelerator of {rev} did not build:\n{built.stderr[-2000:]}")
        yield tree
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                       capture_output=True)


def load(args: argparse.Namespace, node: Server, work: Path, seconds: float) -> tuple[float, float]:
    """One load of `node`: (messages a second, node CPU in us per message)."""
    if args.load == "cpp":
        got = cpp_load(node, args.threads, seconds, work, False)
        return got["msgsPerSec"], got["cpuUsPerMsg"]
    got, cpu = on_cpu(node, lambda: rmqctl(node.addrs["namesrv"], *produce_args(
        f"AB{args.size}x{args.batch}", args.size, args.connections, args.batch,
        seconds))["produce"])
    return got["msgsPerSec"], cpu


def run_rounds(args: argparse.Namespace, nodes: dict[str, Server], work: Path) -> None:
    for node in nodes.values():  # the topic, the files, the caches: a first load not counted
        if args.load == "cpp":
            create_topic(node)
        load(args, node, work, 2.0)
    names = list(nodes)
    cpu: dict[str, list[float]] = {name: [] for name in names}
    rates: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        line = []
        for name in names if r % 2 == 0 else names[::-1]:
            rate, us = load(args, nodes[name], work, args.seconds)
            cpu[name].append(us)
            rates[name].append(rate)
            line.append(f"{name}: {rate:,.0f} msgs/s, {us:.2f} us/msg")
        print(f"round {r + 1}: " + "; ".join(line), flush=True)
    base, this = names
    lower = sum(b > t for b, t in zip(cpu[base], cpu[this]))
    faster = sum(b < t for b, t in zip(rates[base], rates[this]))
    # Both: less CPU per message can come with fewer messages (a change that makes the
    # client wait longer), and a higher rate with more CPU.
    print(f"node CPU per message, medians: {base} {statistics.median(cpu[base]):.2f} us, "
          f"this checkout {statistics.median(cpu[this]):.2f} us; this checkout lower in "
          f"{lower} of {args.rounds} pairs")
    print(f"messages a second, medians: {base} {statistics.median(rates[base]):,.0f}, "
          f"this checkout {statistics.median(rates[this]):,.0f}; this checkout faster in "
          f"{faster} of {args.rounds} pairs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the revision to compare this checkout with")
    parser.add_argument("--load", choices=("rmqctl", "cpp"), default="rmqctl")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16, help="rmqctl bench's")
    parser.add_argument("--threads", type=int, default=16, help="the C++ client's")
    parser.add_argument("--size", type=int, default=128, help="rmqctl bench's body size")
    parser.add_argument("--batch", type=int, default=1, help="rmqctl bench's batch")
    parser.add_argument("--flush", choices=("ASYNC_FLUSH", "SYNC_FLUSH"), default="ASYNC_FLUSH")
    args = parser.parse_args()
    if args.load == "cpp" and (args.size, args.batch) != (128, 1):
        parser.error("the C++ load sends single 128 B messages")

    with tempfile.TemporaryDirectory(prefix="rmq-ab-") as tmp:
        work = Path(tmp)
        LOAD_DIRS.append(work)
        with worktree(args.base, work) as base_tree:
            sides = {args.base: base_tree, "this checkout": REPO}
            nodes = {name: start_node(work / f"node{i}", *node_defines(args.flush),
                                      env={"PYTHONPATH": str(tree)})
                     for i, (name, tree) in enumerate(sides.items())}
            try:
                run_rounds(args, nodes, work)
            finally:
                for node in nodes.values():
                    node.stop()


if __name__ == "__main__":
    main()

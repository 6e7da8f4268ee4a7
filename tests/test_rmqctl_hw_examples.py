"""rmqctl bench disk|net (the machine's limits, no node) and rmqctl examples (the sheets).

bench: real files in a temporary directory and real sockets; counts, fields and orderings
only, never speeds. examples: the sheets through the real command, and every rmqctl
invocation on them parsed against the command tree, so a renamed option fails here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from rmqctl.cli import main
from rmqctl.commands.bench_hw import COLUMNS, DISK_TESTS, NET_TESTS
from rmqctl.commands.examples import RECIPES_SHEET, examples_of, sheets
from rmqctl.global_options import hoist_global_options

LATENCY_KEYS = ["p50", "p90", "p99", "p99.9", "max"]
FIGURE_KEYS = {"blockSize", "ops", "bytes", "seconds", "opsPerSec", "mbPerSec", "latencyMs"}
MiB = 1024 * 1024
RMQCTL = str(Path(sys.executable).parent / "rmqctl")  # the installed script: completion
MISSING = (None, getattr(click.core, "UNSET", None))  # what click's parser leaves unset


def rmqctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rmqctl.cli", *args], capture_output=True,
                          text=True, timeout=120, env=env)


def ordered(latency: dict[str, float]) -> bool:
    values = [latency[k] for k in LATENCY_KEYS]
    return list(latency) == LATENCY_KEYS and values == sorted(values) and values[0] > 0


# bench disk / net ---------------------------------------------------------------------------

def test_bench_disk_measures_every_test_and_leaves_nothing_behind(tmp_path):
    out = rmqctl("-o", "json", "bench", "disk", "--dir", str(tmp_path), "--size", "8MiB",
                 "--block", "1MiB", "--record", "4KiB", "--seconds", "30")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["command"] == "disk" and result["dir"] == str(tmp_path.resolve())
    assert (result["size"], result["block"], result["record"]) == (8 * MiB, MiB, 4096)
    for test in DISK_TESTS:
        figures = result[test]
        assert set(figures) == FIGURE_KEYS, test
        assert figures["seconds"] > 0 and figures["mbPerSec"] > 0 and figures["opsPerSec"] > 0
    for test in ("write", "writeSync", "mmap", "read", "readCached"):
        assert result[test]["bytes"] == 8 * MiB and result[test]["ops"] == 8, test
        assert result[test]["blockSize"] == MiB
    sync = result["sync"]
    assert sync["blockSize"] == 4096 and 1 <= sync["ops"] <= 2048
    assert sync["bytes"] == sync["ops"] * 4096
    assert result["writeSync"]["latencyMs"] is None  # one fdatasync for all the writes
    for test in ("write", "mmap", "sync", "read", "readCached"):
        assert ordered(result[test]["latencyMs"]), test
    assert list(tmp_path.iterdir()) == []  # scratch directory and files removed


def test_bench_disk_table_and_csv_have_a_row_per_test(tmp_path):
    args = ["bench", "disk", "--dir", str(tmp_path), "--size", "2MiB", "--block", "512KiB"]
    table = rmqctl(*args)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["test", "block", "ops", "seconds", "ops/s", "MB/s", "p50", "ms",
                                "p90", "ms", "p99", "ms", "p99.9", "ms", "max", "ms"]
    assert [line.split()[0] for line in lines[2:]] == list(DISK_TESTS)
    assert "\x1b[" not in table.stdout  # not a terminal: no colour
    csv = rmqctl("-o", "csv", *args)
    assert csv.returncode == 0, csv.stderr
    rows = csv.stdout.splitlines()
    assert rows[0] == ",".join(COLUMNS) and len(rows) == 1 + len(DISK_TESTS)
    assert rows[1].startswith("write,512.0 KiB,4,")


def test_bench_net_moves_every_byte_and_times_every_round_trip():
    out = rmqctl("-o", "json", "bench", "net", "--size", "16MiB", "--block", "64KiB",
                 "-n", "500", "--payload", "1KiB", "--seconds", "60")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["command"] == "net" and result["payload"] == 1024
    moved = result["throughput"]
    assert set(moved) == FIGURE_KEYS and moved["bytes"] == 16 * MiB and moved["ops"] == 256
    assert moved["mbPerSec"] > 0 and moved["latencyMs"] is None
    rtt = result["rtt"]
    assert set(rtt) == FIGURE_KEYS and rtt["ops"] == 500 and rtt["bytes"] == 500 * 1024
    assert ordered(rtt["latencyMs"])
    ndjson = rmqctl("-o", "ndjson", "bench", "net", "--size", "1MiB", "-n", "10")
    assert ndjson.returncode == 0 and len(ndjson.stdout.splitlines()) == 1
    assert set(NET_TESTS) <= set(json.loads(ndjson.stdout))


@pytest.mark.parametrize("args, code, says", [
    (["net", "--size", "12parsecs"], 2, "not a size: '12parsecs'"),
    (["net", "--size", "0"], 2, "no bytes at all"),
    (["net", "--size", "1MiB", "--block", "2MiB"], 2, "--block must not be larger"),
    (["disk", "--size", "1MiB", "--record", "2MiB"], 2, "--record must not be larger"),
    (["disk", "--dir", "/nonexistent/rmqctl"], 2, "does not exist"),
    (["disk", "--seconds", "0"], 2, "--seconds"),
    (["disk", "--size", "9999TiB"], 1, "free, --size"),
])
def test_bench_hw_misuse_is_one_line(tmp_path, args, code, says):
    if args[0] == "disk" and "--dir" not in args:
        args = [*args, "--dir", str(tmp_path)]
    out = rmqctl("bench", *args)
    assert out.returncode == code and out.stdout == ""
    assert len(out.stderr.splitlines()) == 1 and says in out.stderr, out.stderr
    assert list(tmp_path.iterdir()) == []


# examples ------------------------------------------------------------------------------------

def test_examples_lists_the_sheets():
    out = rmqctl("-o", "json", "examples")
    assert out.returncode == 0, out.stderr
    listed = {row["sheet"]: row for row in json.loads(out.stdout)}
    for family in ("send", "consume", "tail", "offset", "topic", "group", "message", "store",
                   "acl", "context", "bench", RECIPES_SHEET):
        assert listed[family]["lines"] > 0, family
    assert "inspect-commitlog" in listed["store"]["from"]  # the offline readers' sheet
    assert "bench disk" in listed["bench"]["from"] and "recipe" in listed["bench"]["from"]
    table = rmqctl("examples")
    assert table.returncode == 0 and table.stdout.split()[:3] == ["sheet", "lines", "from"]


def test_sheet_names_complete():
    env = {**os.environ, "COMP_WORDS": "rmqctl examples st", "COMP_CWORD": "2",
           "_RMQCTL_COMPLETE": "bash_complete"}
    out = subprocess.run([RMQCTL], capture_output=True, text=True, timeout=60, env=env)
    assert out.stdout.split() == ["plain,store"]
    env["COMP_WORDS"], env["COMP_CWORD"] = "rmqctl examples store i", "3"
    out = subprocess.run([RMQCTL], capture_output=True, text=True, timeout=60, env=env)
    assert out.stdout.split() == []


def test_a_sheet_is_plain_shell_text_off_a_terminal():
    out = rmqctl("examples", "offset")
    assert out.returncode == 0, out.stderr
    assert "\x1b[" not in out.stdout
    assert "# rmqctl offset reset\n" in out.stdout
    assert "rmqctl offset reset -g audit -t Orders --earliest\n" in out.stdout
    assert "# recipe: replay an hour for a group, then put its offsets back\n" in out.stdout
    coloured = rmqctl("--color", "always", "examples", "offset")
    assert "\x1b[1m# rmqctl offset reset" in coloured.stdout
    one = rmqctl("examples", "topic", "create")
    assert one.returncode == 0
    assert one.stdout.splitlines()[0] == "# rmqctl topic create"
    assert all(line.startswith("rmqctl topic create") for line in one.stdout.splitlines()[1:])
    alias = rmqctl("-o", "json", "examples", "dump-consumequeue")  # its family's sheet
    assert {row["sheet"] for row in json.loads(alias.stdout)} == {"store"}


@pytest.mark.parametrize("words", [["nosuchsheet"], ["topic", "nosuchcommand"]])
def test_unknown_sheet_is_not_found_in_one_line(words):
    out = rmqctl("examples", *words)
    assert out.returncode == 3 and out.stdout == ""
    assert len(out.stderr.splitlines()) == 1 and "rmqctl examples" in out.stderr


def test_sheets_are_the_help_texts_examples():
    """One source: every Examples line of every --help is on its family's sheet, and every
    sheet line that is no recipe comes from a --help."""
    all_sheets = sheets(main)
    on_sheets = {line for entries in all_sheets.values() for e in entries if e.command
                 for line in e.lines}
    in_help = set()

    def walk(command: click.Command, path: list[str]) -> None:
        if path:
            in_help.update(examples_of(command.help))
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])
    walk(main, [])
    assert on_sheets == in_help
    helped = rmqctl("offset", "export", "--help").stdout
    assert "rmqctl offset export -g audit > audit.json" in helped
    assert "rmqctl offset export -g audit > audit.json" in rmqctl("examples", "offset").stdout


def invocations(line: str) -> list[list[str]]:
    """The rmqctl argument lists of a shell line: each command of a pipeline or list, and
    those inside $(...); redirections and leading VAR=value assignments left out."""
    found = []
    for inner in re.findall(r"\$\(([^()]*)\)", line):
        found += invocations(inner)
    lexer = shlex.shlex(re.sub(r"\$\([^()]*\)", "SUBST", line), posix=True,
                        punctuation_chars=True)
    lexer.whitespace_split = True
    words: list[str] = []
    for token in [*lexer, ";"]:
        if token in ("|", "||", "&&", ";", "&"):
            while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
                words.pop(0)
            if words and words[0] == "rmqctl":
                found.append(words[1:])
            words = []
        elif token in ("<", ">", ">>"):
            words.append(token)  # the file name after it goes with it below
        elif words and words[-1] in ("<", ">", ">>"):
            words.pop()
        else:
            words.append(token)
    return found


def parse(argv: list[str]) -> None:
    """argv resolved to a command and parsed with click's own parser: every word of the
    command path, every option and its value's type, the count of arguments. Callbacks
    do not run (they would read a context or a file that is not there)."""
    root = click.Context(main, info_name="rmqctl")
    args = hoist_global_options(main, root, list(argv))
    command, ctx = main, root
    while True:
        values, rest, _ = command.make_parser(ctx).parse_args(args=args)
        for param in command.params:
            value = values.get(param.name)
            if value in MISSING:
                assert not param.required, f"{param.name} missing"
            elif not isinstance(param.type, (click.Path, click.File)):
                param.type_cast_value(ctx, value)
        if not isinstance(command, click.Group):
            assert not rest, f"extra arguments {rest}"
            return
        assert rest and rest[0] in command.commands, f"no command {rest[:1]}"
        command = command.commands[rest[0]]
        ctx = click.Context(command, info_name=rest[0], parent=ctx)
        args = rest[1:]


def test_every_example_is_a_valid_rmqctl_invocation():
    checked = 0
    for name, entries in sheets(main).items():
        for entry in entries:
            calls = [argv for line in entry.lines for argv in invocations(line)]
            assert calls, f"{name}: {entry.heading} runs no rmqctl"
            for argv in calls:
                try:
                    parse(argv)
                except (click.ClickException, AssertionError) as exc:
                    pytest.fail(f"{name}: {entry.heading}: rmqctl {shlex.join(argv)}: {exc}")
                checked += 1
    assert checked > 120


def test_the_checker_rejects_what_rmqctl_rejects():
    assert invocations("A=1 rmqctl -o json topic list | jq . > x.json && rmqctl cluster list"
                       ) == [["-o", "json", "topic", "list"], ["cluster", "list"]]
    assert invocations('eval "$(rmqctl completion bash)"') == [["completion", "bash"]]
    for bad in (["topic", "craete", "Orders"], ["topic", "create", "Orders", "--queues-nope"],
                ["bench", "disk", "--size", "lots"], ["topic", "create"],
                ["-o", "yaml", "topic", "list"], ["tail", "Orders", "extra"]):
        with pytest.raises((click.ClickException, AssertionError)):
            parse(bad)

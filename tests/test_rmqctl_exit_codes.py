"""rmqctl's exit codes (0 ok, 1 error, 2 misuse, 3 not found, 4 timeout, 130/143
interrupted: see test_rmqctl_safety), and no Python traceback from any command, whatever
it is given."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import click

from rmqctl.cli import main
from test_rmqctl_messages import node, rmqctl  # noqa: F401 - node is a fixture

CODES = {0, 1, 2, 3, 4}


def test_each_exit_code(node):
    ns = node.namesrv
    assert rmqctl(ns, "topic", "list").returncode == 0
    refused = rmqctl(ns, "broker", "config", "broker-a", "--set", "noSuchKey=1")
    assert refused.returncode == 1
    assert rmqctl(ns, "topic", "create", "T", "-q", "0").returncode == 2
    for args, line in [(("topic", "delete", "NoSuchTopic"), "no topic NoSuchTopic"),
                       (("group", "progress", "NoSuchGroup"), "no consume progress of group "
                        "NoSuchGroup: no such group, or it never committed an offset"),
                       (("kv", "get", "NS", "nokey"), "no config item NS/nokey")]:
        out = rmqctl(ns, *args)
        assert (out.returncode, out.stdout, out.stderr) == (3, "", f"rmqctl: {line}\n"), args
    [sent] = json.loads(rmqctl(ns, "-o", "json", "send", "T", "x").stdout)
    missing = sent["offsetMsgId"][:-8] + "7FFFFFFF"
    out = rmqctl(ns, "message", "get", missing)
    assert out.returncode == 3 and out.stderr.count("\n") == 1
    assert rmqctl(ns, "topic", "delete", "T").returncode == 0


def test_a_name_server_that_never_answers_is_a_timeout():
    with socket.socket() as silent:  # accepts connections (the backlog), answers nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        addr = f"127.0.0.1:{silent.getsockname()[1]}"
        out = rmqctl(addr, "--timeout", "0.5", "topic", "list")
    assert out.returncode == 4 and out.stderr.count("\n") == 1, out.stderr


def _commands(group: click.Group, path: list[str]):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, path + [name])
        elif name != "shell":  # interactive
            yield path + [name], cmd


def _bad_args(cmd: click.Command) -> list[bytes]:
    """Every argument, every required option and every topic option: bytes that are not
    UTF-8."""
    bad = b"\xff\xfe"
    args: list[bytes] = []
    for param in cmd.params:
        if isinstance(param, click.Argument):
            args.append(bad)
        elif param.required or "--topic" in param.opts:
            args += [param.opts[0].encode(), bad]
    return args


def test_no_command_shows_a_traceback_whatever_it_is_given(node):
    runs = [(path, namesrv, args) for path, cmd in _commands(main, [])
            for namesrv, args in [(node.namesrv, _bad_args(cmd)),
                                  ("127.0.0.1:99999", _bad_args(cmd)),
                                  (node.namesrv, [b"--no-such-option"])]]

    def run(item):
        path, namesrv, args = item
        out = subprocess.run([sys.executable, "-m", "rmqctl.cli", "-n", namesrv,
                              "--timeout", "2", *path, *args], capture_output=True,
                             timeout=60, stdin=subprocess.DEVNULL)
        return path, args, out

    with ThreadPoolExecutor(4) as pool:
        for path, args, out in pool.map(run, runs):
            stderr = out.stderr.decode(errors="replace")
            assert "Traceback" not in stderr, (path, args, stderr)
            assert out.returncode in CODES, (path, args, out.returncode, stderr)
            assert out.returncode == 0 or stderr, (path, args)

"""The interactive shell, driven through prompt-toolkit's pipe input as a terminal would:
type a command and see its output, tab-complete a topic name, survive errors."""

from __future__ import annotations

import threading
import time

import pytest
from prompt_toolkit import PromptSession
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from rmqctl.cli import main
from rmqctl.context import Ctx
from rmqctl.shell import run_shell
from test_rmqctl_messages import rmqctl


def drive(ns: str, keys: list[str], capsys) -> str:
    """Type `keys` into the shell; returns what the commands printed."""
    with create_pipe_input() as pipe:
        session = PromptSession(input=pipe, output=DummyOutput())
        done = threading.Event()

        def typist():
            for chunk in keys:  # a pause between chunks, as a person types: Tab's completion
                pipe.send_text(chunk)  # runs asynchronously and is dropped if text follows
                time.sleep(0.3)
            done.set()
        threading.Thread(target=typist, daemon=True).start()
        run_shell(main, Ctx(ns, "raw", 5.0, False), session)
    return capsys.readouterr()


@pytest.fixture
def node(start_node):
    return start_node("--namesrv-port", "0", "--listen-port", "0")


def test_shell_runs_commands_completes_topics_and_survives_errors(node, capsys):
    rmqctl(node.namesrv, "topic", "create", "OrdersEU", "-q", "2")
    rmqctl(node.namesrv, "send", "OrdersEU", "hello-from-before")
    out = drive(node.namesrv, [
        "topic route OrdersEU\r",
        "topic route Nope\r",              # an error: one line, and the shell goes on
        "consume Ord", "\t", " -g sh --from first -e --format %b\r",  # Tab completes it
        "topic bogus\r",                   # misuse: click says why, the shell goes on
        "exit\r"], capsys)
    assert "broker-a" in out.out
    assert "TOPIC_NOT_EXIST" in out.err
    assert "hello-from-before" in out.out, out.err  # the completed command ran
    assert "No such command 'bogus'" in out.err


def test_completer_offers_commands_options_and_groups(node):
    from prompt_toolkit.document import Document

    from rmqctl.shell import ClusterNames, CommandCompleter
    rmqctl(node.namesrv, "send", "Comp", "x")
    rmqctl(node.namesrv, "consume", "Comp", "-g", "CompGroup", "--from", "first", "-e")
    completer = CommandCompleter(main, ClusterNames(node.namesrv))

    def offers(text: str) -> list[str]:
        return [c.text for c in completer.get_completions(Document(text), None)]
    assert "topic" in offers("to")
    assert offers("topic cr") == ["create"]
    assert "--exit-at-end" in offers("consume Comp --ex")
    assert offers("consume Comp -g CompG") == ["CompGroup"]
    assert offers("message query -t Com") == ["Comp"]
    assert "Comp" in offers("topic status ")

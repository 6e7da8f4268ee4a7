"""rmqctl's command line itself: global options anywhere, contexts in the user's config dir,
live-name completion through click's protocol (what the bash, zsh and fish scripts ask) and
in the interactive shell, and what `pip install .` puts beside the programs.

rmqctl runs as a subprocess with HOME and XDG_CONFIG_HOME in a temporary directory, so no test
reads or writes the real user's contexts."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from prompt_toolkit.document import Document

from conftest import REPO
from rmqctl.cli import main
from rmqctl.live_names import ClusterNames
from rmqctl.shell import CommandCompleter
from test_acl import RULES, USER, USER_SECRET, acl_node
from test_rmqctl_shell import drive

BIN = Path(sys.executable).parent
SECRET = "s3cr3t-Do-Not-Print"


@pytest.fixture
def node(start_node):
    return start_node("--namesrv-port", "0", "--listen-port", "0")


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NAMESRV_ADDR", "RMQ_CONTEXT", "RMQ_ACCESS_KEY", "RMQ_SECRET_KEY")}
    return env | {"HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
                  "PATH": f"{BIN}:{env.get('PATH', '')}"} | extra


def rmqctl(home: Path, *args: str, input: str | None = None,
           **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rmqctl.cli", *args], capture_output=True,
                          text=True, timeout=60, input=input, env=env_for(home, **env))


def complete(home: Path, line: str, shell: str = "bash", **env: str) -> list[str]:
    """What the installed rmqctl answers a shell's completion request for `line` (the
    last word is the one being completed), as the scripts from `rmqctl completion` ask."""
    words = line.split(" ")
    # bash and zsh send the index of the word being completed; fish sends the word
    cword = words[-1] if shell == "fish" else str(len(words) - 1)
    out = subprocess.run([str(BIN / "rmqctl")], capture_output=True, text=True, timeout=30,
                         env=env_for(home, _RMQCTL_COMPLETE=f"{shell}_complete",
                                     COMP_WORDS=line, COMP_CWORD=cword, **env))
    assert out.returncode == 0 and out.stderr == "", out.stderr
    if shell == "zsh":  # type, value, help: three lines each
        return out.stdout.splitlines()[1::3]
    return [item.split(",", 1)[1] for item in out.stdout.splitlines() if item]


# -- global options anywhere ------------------------------------------------------------------

def test_global_options_after_the_command(node, home):
    assert rmqctl(home, "-n", node.namesrv, "topic", "create", "Late", "-q", "2").returncode == 0
    for args in (["topic", "list", "-o", "json", "-n", node.namesrv],
                 ["topic", "list", "--output=json", f"--namesrv={node.namesrv}"],
                 ["topic", "-ojson", "list", "--timeout", "3", "-n", node.namesrv],
                 ["-o", "table", "topic", "list", "-n", node.namesrv, "-o", "json"]):
        out = rmqctl(home, *args)
        assert out.returncode == 0, (args, out.stderr)
        assert "Late" in [row["topic"] for row in json.loads(out.stdout)], args
    # A global option's value is not taken for a command, nor a command's value for a global
    # option: --format's value "-o" stays the format.
    rmqctl(home, "-n", node.namesrv, "send", "Late", "body")
    out = rmqctl(home, "consume", "Late", "-g", "G", "--from", "first", "-e", "--format", "-o",
                 "-n", node.namesrv)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["-o"]
    # nothing after -- moves: "-o" is the message body
    out = rmqctl(home, "send", "Late", "-n", node.namesrv, "-o", "ndjson", "--", "-o")
    assert out.returncode == 0 and json.loads(out.stdout)["status"] == "SEND_OK", out.stderr


def test_a_commands_own_option_wins_after_it(node, home):
    # tail's -n is its line count: the name server goes before the command
    out = rmqctl(home, "-n", node.namesrv, "tail", "NoSuchTopic", "-n", "5")
    assert out.returncode == 3 and "TOPIC_NOT_EXIST" in out.stderr
    out = rmqctl(home, "tail", "NoSuchTopic", "-n", node.namesrv)
    assert out.returncode == 2 and "'-n' / '--lines'" in out.stderr
    # misuse after the command is still misuse, in one line
    out = rmqctl(home, "topic", "list", "-o", "yaml")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    out = rmqctl(home, "topic", "list", "-o")
    assert out.returncode == 2 and "requires an argument" in out.stderr


def test_version_and_help_name_the_global_options(home):
    for prog in ("rmqctl", "rmqnode"):
        out = subprocess.run([str(BIN / prog), "--version"], capture_output=True, text=True,
                             timeout=30, env=env_for(home))
        assert out.returncode == 0 and out.stdout.startswith(f"{prog} "), out.stderr
    out = rmqctl(home, "--help")
    assert "--context NAME" in out.stdout and "RMQ_CONTEXT" in out.stdout
    assert "before or after the command" in out.stdout


# -- contexts ---------------------------------------------------------------------------------

def test_contexts_add_use_list_show_remove(node, home):
    out = rmqctl(home, "context", "add", "prod", "-n", node.namesrv, "-o", "json",
                 "--timeout", "7", "--access-key", "AK1", "--secret-key", SECRET)
    assert out.returncode == 0, out.stderr
    path = home / "config" / "rmqctl" / "contexts.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["contexts.json"]  # no temporary left
    assert json.loads(path.read_text())["contexts"]["prod"]["secret_key"] == SECRET
    # the secret comes from stdin when given as '-'
    out = rmqctl(home, "context", "add", "lab", "-n", "127.0.0.1:1", "--access-key", "AK2",
                 "--secret-key", "-", input="from-stdin\n")
    assert out.returncode == 0, out.stderr
    assert json.loads(path.read_text())["contexts"]["lab"]["secret_key"] == "from-stdin"

    listed = rmqctl(home, "context", "list")
    assert listed.returncode == 0 and SECRET not in listed.stdout + listed.stderr
    assert "from-stdin" not in listed.stdout and "AK1" in listed.stdout
    rows = {r["name"]: r for r in json.loads(rmqctl(home, "-o", "json", "context",
                                                    "list").stdout)}
    assert rows["prod"]["secret_key"] == "****" and rows["prod"]["current"] == ""

    assert rmqctl(home, "context", "use", "prod").returncode == 0
    out = rmqctl(home, "topic", "list")  # -n and -o from the current context
    assert out.returncode == 0, out.stderr
    assert isinstance(json.loads(out.stdout), list)
    shown = json.loads(rmqctl(home, "context", "show").stdout)
    assert shown["context"] == "prod" and shown["namesrv_addr"] == node.namesrv
    assert shown["timeout"] == 7.0 and shown["access_key"] == "AK1"
    assert shown["secret_key"] == "****" and SECRET not in json.dumps(shown)
    assert shown["sources"]["namesrv_addr"] == "context prod"

    # precedence: the command line, then the environment, then the context
    shown = json.loads(rmqctl(home, "context", "show", "--timeout", "2",
                              NAMESRV_ADDR="10.9.9.9:9876", RMQ_SECRET_KEY="env-secret").stdout)
    assert shown["timeout"] == 2.0 and shown["sources"]["timeout"] == "command line"
    assert shown["namesrv_addr"] == "10.9.9.9:9876"
    assert shown["sources"]["namesrv_addr"] == "$NAMESRV_ADDR"
    assert shown["sources"]["secret_key"] == "$RMQ_SECRET_KEY"
    assert shown["output"] == "json"
    out = rmqctl(home, "topic", "list", "-o", "raw")
    assert out.returncode == 0 and out.stdout.split()[0] != "[", out.stdout

    # another context for one command: --context, or RMQ_CONTEXT
    for how in (["--context", "lab"], []):
        shown = rmqctl(home, *how, "-o", "json", "context", "show",
                       **({} if how else {"RMQ_CONTEXT": "lab"}))
        data = json.loads(shown.stdout)
        assert data["context"] == "lab" and data["namesrv_addr"] == "127.0.0.1:1"
    out = rmqctl(home, "--context", "lab", "topic", "list", "--timeout", "1")
    assert out.returncode in (1, 4) and "127.0.0.1:1" in out.stderr, out

    # remove: the current one stops being current
    assert rmqctl(home, "context", "remove", "prod").returncode == 0
    assert json.loads(path.read_text())["current"] is None
    assert rmqctl(home, "context", "show", "prod").returncode == 3
    assert rmqctl(home, "context", "use", "--none").returncode == 0


def test_a_contexts_acl_keys_sign_requests(start_node, tmp_path, home):
    """The ACL account kept in a context signs every request; the environment's key still
    wins over it."""
    node = acl_node(start_node, tmp_path, RULES)
    assert rmqctl(home, "context", "add", "acl", "-n", node.namesrv, "--access-key", USER,
                  "--secret-key", "-", input=f"{USER_SECRET}\n").returncode == 0
    out = rmqctl(home, "--context", "acl", "send", "topicB", "signed")
    assert out.returncode == 0 and "SEND_OK" in out.stdout, out.stderr
    refused = rmqctl(home, "-n", node.namesrv, "send", "topicB", "unsigned")
    assert refused.returncode == 1 and "ACL" in refused.stderr, refused.stderr
    wrong = rmqctl(home, "--context", "acl", "send", "topicB", "x", RMQ_SECRET_KEY="wrong")
    assert wrong.returncode == 1 and "Check signature failed" in wrong.stderr, wrong.stderr
    assert USER_SECRET not in refused.stderr + wrong.stderr
    assert complete(home, "rmqctl --context acl consume topic") == ["topicB"]


def test_context_misuse_is_one_line_with_its_exit_code(home):
    cases = [(["context", "add", "bad/name", "-n", "127.0.0.1:9876"], 2),
             (["context", "add", "x"], 2),                                    # no -n
             (["context", "add", "x", "-n", "nohost"], 2),
             (["context", "add", "x", "-n", "127.0.0.1:9876", "--access-key", "A"], 2),
             (["context", "use", "nope"], 3),
             (["context", "remove", "nope"], 3),
             (["--context", "nope", "topic", "list"], 3)]
    for args, code in cases:
        out = rmqctl(home, *args)
        assert out.returncode == code, (args, out.stderr)
        assert "Traceback" not in out.stderr and out.stderr.strip(), args
    assert rmqctl(home, "context", "add", "x", "-n", "127.0.0.1:9876").returncode == 0
    out = rmqctl(home, "context", "add", "x", "-n", "127.0.0.1:9877")
    assert out.returncode == 2 and "--replace" in out.stderr
    assert rmqctl(home, "context", "add", "x", "-n", "127.0.0.1:9877", "--replace",
                  ).returncode == 0
    path = home / "config" / "rmqctl" / "contexts.json"
    path.write_text("{not json")
    out = rmqctl(home, "topic", "list")
    assert out.returncode == 1 and str(path) in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


# -- live completion --------------------------------------------------------------------------

def test_bash_zsh_fish_complete_live_names(node, home, tmp_path):
    ns = node.namesrv
    assert rmqctl(home, "-n", ns, "topic", "create", "OrdersEU", "-q", "2").returncode == 0
    assert rmqctl(home, "-n", ns, "group", "create", "billing").returncode == 0
    assert rmqctl(home, "-n", ns, "send", "OrdersEU", "x").returncode == 0
    env = {"NAMESRV_ADDR": ns}
    assert complete(home, "rmqctl consume Ord", **env) == ["OrdersEU"]
    assert complete(home, f"rmqctl -n {ns} consume Ord") == ["OrdersEU"]
    assert complete(home, "rmqctl message query -t Ord", **env) == ["OrdersEU"]
    assert complete(home, "rmqctl topic status Orders", **env) == ["OrdersEU"]
    assert complete(home, "rmqctl consume OrdersEU -g bil", **env) == ["billing"]
    assert complete(home, "rmqctl group progress bil", **env) == ["billing"]
    assert complete(home, "rmqctl broker status ", **env) == ["broker-a"]
    assert complete(home, "rmqctl topic create T -c Def", **env) == ["DefaultCluster"]
    assert complete(home, "rmqctl topic create T -b 127", **env) == [node.broker]
    assert {"first", "last", "@-1h"} <= set(complete(home, "rmqctl consume T --from ", **env))
    assert "json" in complete(home, "rmqctl topic list -o ")  # a global option after it
    assert "%RETRY%" not in " ".join(complete(home, "rmqctl consume ", **env))
    assert complete(home, "rmqctl consume %RETRY%bil", **env) == []  # asked for: shown if any
    # offline commands: the shell lists files
    out = subprocess.run([str(BIN / "rmqctl")], capture_output=True, text=True, timeout=30,
                         env=env_for(home, _RMQCTL_COMPLETE="bash_complete",
                                     COMP_WORDS="rmqctl inspect-commitlog /tm", COMP_CWORD="2"))
    assert out.stdout.splitlines() == ["file,/tm"]
    assert complete(home, "rmqctl consume Ord", "zsh", **env) == ["OrdersEU"]
    assert complete(home, "rmqctl consume Ord", "fish", **env) == ["OrdersEU"]
    # the current context's name server, with no -n
    assert rmqctl(home, "context", "add", "here", "-n", ns).returncode == 0
    assert rmqctl(home, "context", "use", "here").returncode == 0
    assert complete(home, "rmqctl consume Ord") == ["OrdersEU"]
    # nobody listening: nothing, silently, and the protocol still answers
    assert complete(home, "rmqctl consume Ord", NAMESRV_ADDR="127.0.0.1:1") == []
    assert complete(home, "rmqctl -n garbage consume Ord") == []


def test_the_bash_script_completes_live_topics(node, home):
    assert rmqctl(home, "-n", node.namesrv, "topic", "create", "Invoices").returncode == 0
    script = ('eval "$(rmqctl completion bash)"; COMP_WORDS=(rmqctl consume Inv); '
              'COMP_CWORD=2; _rmqctl_completion rmqctl; printf "%s\\n" "${COMPREPLY[@]}"')
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                         env=env_for(home, NAMESRV_ADDR=node.namesrv))
    assert out.stdout.split() == ["Invoices"], out.stderr


def test_shell_completes_the_same_names_and_paths(node, home, tmp_path):
    ns = node.namesrv
    assert rmqctl(home, "-n", ns, "topic", "create", "Shipments").returncode == 0
    assert rmqctl(home, "-n", ns, "group", "create", "shippers").returncode == 0
    (tmp_path / "store-copy").mkdir()
    completer = CommandCompleter(main, ClusterNames(ns))

    def offers(text: str) -> list[str]:
        """The last word as each completion would leave it."""
        return [(text[:len(text) + c.start_position] + c.text).split(" ")[-1]
                for c in completer.get_completions(Document(text), None)]
    assert offers("group progress ship") == ["shippers"]
    assert offers("consume Shipments -g shi") == ["shippers"]
    assert offers("broker status ") == ["broker-a"]
    assert offers("tail Ship") == ["Shipments"]
    assert "last" in offers("consume Shipments --from ")
    assert offers(f"inspect-commitlog {tmp_path}/store-c") == [f"{tmp_path}/store-copy"]
    assert "json" in offers("topic list -o ")  # a choice
    assert "context" in offers("con")


def test_shell_help_says_how_the_shell_works(node, capsys):
    out = drive(node.namesrv, ["help\r", "help topic\r", "exit\r"], capsys)
    assert "exit, quit, Ctrl-D" in out.out and "history" in out.out
    assert "Commands:" in out.out and "context" in out.out
    assert "Usage: rmqctl topic" in out.out  # help COMMAND


# -- packaging --------------------------------------------------------------------------------

def copy_sources(dest: Path) -> Path:
    """What a build reads, apart from the shared checkout (builds write build/ and egg-info
    beside the sources)."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, dest / name)
    for name in ("rmqnode", "rmqctl", "man", "completions", "packaging"):
        shutil.copytree(REPO / name, dest / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def test_wheel_installs_man_pages_and_completion_scripts(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    copy_sources(src)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                            str(tmp_path / "wheels"), str(src)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "wheels").glob("rmqnode-*.whl"))
    data = {n.split(".data/data/", 1)[1] for n in zipfile.ZipFile(wheel).namelist()
            if ".data/data/" in n}
    for prog in ("rmqctl", "rmqnode"):
        assert {f"share/man/man1/{prog}.1",
                f"share/bash-completion/completions/{prog}.bash",
                f"share/zsh/site-functions/_{prog}",
                f"share/fish/vendor_completions.d/{prog}.fish"} <= data
    # Into a venv of its own (pip --python): `--prefix` would uninstall the running one's.
    prefix = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(prefix)], check=True)
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(prefix / "bin/python"),
                                "install", "-q", "--no-deps", str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    assert (prefix / "share/man/man1/rmqctl.1").read_text().startswith(".TH RMQCTL 1")
    assert "#compdef rmqctl" in (prefix / "share/zsh/site-functions/_rmqctl").read_text()
    assert "_RMQCTL_COMPLETE" in (
        prefix / "share/bash-completion/completions/rmqctl.bash").read_text()

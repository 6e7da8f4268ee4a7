"""Completions and man pages are generated from the click definitions and must be current."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO


def test_completions_and_man_pages_are_current():
    out = subprocess.run([sys.executable, str(REPO / "completions" / "generate.py"), "--check"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_bash_completion_completes_commands_and_options():
    env = dict(os.environ, _RMQCTL_COMPLETE="bash_complete", COMP_WORDS="rmqctl top",
               COMP_CWORD="1")
    out = subprocess.run([sys.executable, "-c", "from rmqctl.cli import main; main(prog_name='rmqctl')"],
                         capture_output=True, text=True, env=env, timeout=30)
    assert "plain,topic" in out.stdout.splitlines()
    env |= {"COMP_WORDS": "rmqctl consume T --fr", "COMP_CWORD": "3"}
    out = subprocess.run([sys.executable, "-c", "from rmqctl.cli import main; main(prog_name='rmqctl')"],
                         capture_output=True, text=True, env=env, timeout=30)
    assert "plain,--from" in out.stdout.splitlines()
    script = (REPO / "completions" / "rmqctl.bash").read_text()
    assert "_RMQCTL_COMPLETE" in script and "complete" in script
    assert ".SH COMMANDS" in (REPO / "man" / "rmqctl.1").read_text()


def test_rmqctl_completion_prints_each_shells_script():
    """An installed rmqctl sets up completion without the repository: the script it prints is
    the one committed in completions/."""
    for shell, name in (("bash", "rmqctl.bash"), ("zsh", "_rmqctl"), ("fish", "rmqctl.fish")):
        out = subprocess.run([sys.executable, "-m", "rmqctl.cli", "completion", shell],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout == (REPO / "completions" / name).read_text()
    bad = subprocess.run([sys.executable, "-m", "rmqctl.cli", "completion", "tcsh"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr

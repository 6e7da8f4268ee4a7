"""The single-file executables: packaging/build-zipapps.sh builds dist/rmqnode.pyz and
dist/rmqctl.pyz, and the built files run a fresh node and talk to it on an interpreter that
sees none of this checkout's packages (-I -S: no site-packages, no PYTHONPATH), as on a host
the files were copied to."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rmqnode.launch import ServerProcess
from test_rmqctl_cli import copy_sources

# The interpreter under the venv: a host's Python, without our dependencies in reach.
BARE_PYTHON = [getattr(sys, "_base_executable", sys.executable), "-I", "-S"]


@pytest.fixture(scope="session")
def zipapps(tmp_path_factory) -> dict[str, Path]:
    """Both files, built once per session from a copy of the sources (the build writes
    build/ and dist/ beside them)."""
    src = copy_sources(tmp_path_factory.mktemp("zipapp-src"))
    env = dict(os.environ, PYTHON=sys.executable)
    built = subprocess.run(["sh", str(src / "packaging" / "build-zipapps.sh")], env=env,
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    return {prog: src / "dist" / f"{prog}.pyz" for prog in ("rmqnode", "rmqctl")}


@pytest.fixture
def bare_env(tmp_path) -> dict[str, str | None]:
    """A home and a shiv cache of the test's own; no variable pointing into the checkout."""
    return {"HOME": str(tmp_path), "SHIV_ROOT": str(tmp_path / "shiv"), "PYTHONPATH": None,
            "NAMESRV_ADDR": None, "VIRTUAL_ENV": None}


def run_zipapp(app: Path, env: dict[str, str | None], *args: str,
               input: str | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in env} | \
        {k: v for k, v in env.items() if v is not None}
    return subprocess.run([*BARE_PYTHON, str(app), *args], capture_output=True, text=True,
                          timeout=120, env=full, input=input)


def test_zipapps_run_a_fresh_node_and_send_and_consume(zipapps, bare_env, tmp_path):
    assert subprocess.run([*BARE_PYTHON, "-c", "import click"],
                          capture_output=True).returncode != 0  # nothing borrowed
    for prog, app in zipapps.items():
        out = run_zipapp(app, bare_env, "--version")
        assert out.returncode == 0 and out.stdout.startswith(f"{prog} "), out.stderr
    store = tmp_path / "node"
    store.mkdir()
    node = ServerProcess([*BARE_PYTHON, str(zipapps["rmqnode"]), "--namesrv-port", "0",
                          "--listen-port", "0", "-D", "grpcServerPort=0",
                          "-D", "mappedFileSizeCommitLog=1048576"], store, bare_env)
    try:
        node.wait_started(("namesrv", "broker"), timeout=60)
        ns = node.addrs["namesrv"]
        sent = run_zipapp(zipapps["rmqctl"], bare_env, "send", "Carried", "-n", ns,
                          input="one file, anywhere\n")
        assert sent.returncode == 0, sent.stderr
        got = run_zipapp(zipapps["rmqctl"], bare_env, "consume", "Carried", "-g", "carrier",
                         "--from", "first", "-e", "--format", "%b", "-n", ns)
        assert got.returncode == 0, got.stderr
        assert got.stdout.splitlines() == ["one file, anywhere"]
    finally:
        assert node.stop() == 0, "\n".join(node.lines)
    assert any(store.rglob("commitlog/0*")), "the node wrote its store under RMQNODE_HOME"

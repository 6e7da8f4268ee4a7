"""rmqctl and plain ACL: every request signed as Java's AclClientRPCHook signs it, the acl
commands, and secrets kept out of what rmqctl prints and stores.

The frame tests stand a socket server where a broker would be and check what rmqctl sent
with the broker's own check (rmqnode.acl.signature.verify); the rest run a real node with
aclEnable=true."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable

import pytest

from rmqnode.acl.signature import ACCESS_KEY, SIGNATURE, verify
from rmqnode.net.codec import FrameDecoder, RemotingCommand, encode
from rmqnode.net.codes import RequestCode, ResponseCode

AK, SK = "rmqctl-tester", "s3cret-Key-0001"
JAVA_REFUSAL = ("org.apache.rocketmq.acl.common.AclException: No default permission for "
                "topic=Orders, org.apache.rocketmq.acl.plain.PlainPermissionManager.checkPerm("
                "PlainPermissionManager.java:606)")


def rmqctl(ns: str, *args: str, env: dict[str, str] | None = None,
           input: str | None = None) -> subprocess.CompletedProcess:
    """rmqctl as a subprocess, with no account unless `env` gives one."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RMQ_")}
    return subprocess.run([sys.executable, "-m", "rmqctl.cli", "-n", ns, *args],
                          capture_output=True, text=True, timeout=120, input=input,
                          env={**clean, **(env or {})})


class FrameServer:
    """One listening socket that records every request and answers each with `answer`."""

    def __init__(self, answer: Callable[[RemotingCommand], RemotingCommand]) -> None:
        self.answer = answer
        self.requests: list[RemotingCommand] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.addr = f"127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        decoder = FrameDecoder()
        with conn:
            while data := conn.recv(65536):
                for cmd in decoder.feed(data):
                    self.requests.append(cmd)
                    if not cmd.is_oneway:
                        conn.sendall(encode(cmd.response(**self.answer(cmd)), 0))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def frames():
    servers = []

    def start(answer=lambda cmd: {}) -> FrameServer:
        servers.append(FrameServer(answer))
        return servers[-1]
    yield start
    for server in servers:
        server.close()


def test_every_request_is_signed_over_its_fields_and_body(frames):
    """A request without fields, one with fields, and one with a body: each carries the
    AccessKey and a Signature the broker's check accepts, and none carries the secret."""
    server = frames()
    env = {"RMQ_ACCESS_KEY": AK, "RMQ_SECRET_KEY": SK}
    whitelist = rmqctl(server.addr, "acl", "whitelist", "set", "10.1.*", "-b", server.addr,
                       env=env)
    assert whitelist.returncode == 0, whitelist.stderr
    config = rmqctl(server.addr, "broker", "config", server.addr, "--set", "k=v", env=env)
    assert config.returncode == 0, config.stderr
    codes = [cmd.code for cmd in server.requests]
    assert codes == [RequestCode.UPDATE_GLOBAL_WHITE_ADDRS_CONFIG,
                     RequestCode.UPDATE_BROKER_CONFIG, RequestCode.GET_BROKER_CONFIG]
    for cmd in server.requests:
        assert cmd.ext_fields[ACCESS_KEY] == AK
        assert verify(cmd.ext_fields, cmd.body, SK), cmd
        assert not verify(cmd.ext_fields, cmd.body, SK + "x")
        assert SK not in repr(cmd.ext_fields)
    assert server.requests[0].ext_fields["globalWhiteAddrs"] == "10.1.*"
    assert server.requests[1].body == b"k=v\n"


def test_without_credentials_nothing_is_signed(frames):
    server = frames()
    assert rmqctl(server.addr, "acl", "version", "-b", server.addr).returncode == 0
    [cmd] = server.requests
    assert SIGNATURE not in (cmd.ext_fields or {}) and ACCESS_KEY not in (cmd.ext_fields or {})


def test_half_an_account_is_misuse(frames):
    server = frames()
    out = rmqctl(server.addr, "--access-key", AK, "acl", "version", "-b", server.addr)
    assert out.returncode == 2 and "--secret-key" in out.stderr
    assert server.requests == []


def test_refusal_is_one_line_and_no_secret_is_printed(frames):
    """A broker that refuses (and one that echoes the secret back, as Java's remarks do for a
    refused secret key): one line naming what is missing, exit 1, the secret masked even in
    --debug's traceback."""
    refuse = frames(lambda cmd: {"code": ResponseCode.SYSTEM_ERROR, "remark": JAVA_REFUSAL})
    out = rmqctl(refuse.addr, "--debug", "acl", "version", "-b", refuse.addr,
                 env={"RMQ_ACCESS_KEY": AK, "RMQ_SECRET_KEY": SK})
    assert out.returncode == 1
    assert out.stderr.splitlines()[-1] == (
        f"rmqctl: SYSTEM_ERROR (1): {refuse.addr}: access denied by ACL: No default "
        "permission for topic=Orders")
    plain = rmqctl(refuse.addr, "acl", "version", "-b", refuse.addr,
                   env={"RMQ_ACCESS_KEY": AK, "RMQ_SECRET_KEY": SK})
    assert plain.returncode == 1 and len(plain.stderr.splitlines()) == 1

    def echo_secrets(cmd: RemotingCommand) -> dict:
        if cmd.code == RequestCode.GET_BROKER_CLUSTER_ACL_CONFIG:  # as a Java 4.9.8 broker
            return {"code": ResponseCode.REQUEST_CODE_NOT_SUPPORTED, "remark": "no"}
        return {"code": ResponseCode.SYSTEM_ERROR,
                "remark": f"The secretKey={SK} or {cmd.field('secretKey')} is bad"}
    echo = frames(echo_secrets)
    new_secret = "another-secret-9"
    out = rmqctl(echo.addr, "--debug", "--secret-key", SK, "--access-key", AK, "acl",
                 "update", "someone-else", "--secret-key", "-", "-b", echo.addr,
                 input=new_secret + "\n")
    assert out.returncode == 1 and "Traceback" in out.stderr
    assert SK not in out.stderr and new_secret not in out.stderr and "****" in out.stderr


# -- against a node with aclEnable=true ------------------------------------------------------

ADMIN, ADMIN_SK = "rmqctl-admin", "admin-secret-0001"
APP, APP_SK = "app-orders", "app-secret-00001"
PLAIN_ACL = f"""\
globalWhiteRemoteAddresses: []
accounts:
  - accessKey: {ADMIN}
    secretKey: {ADMIN_SK}
    admin: true
    defaultTopicPerm: PUB|SUB
    defaultGroupPerm: PUB|SUB
  - accessKey: {APP}
    secretKey: {APP_SK}
    admin: false
    defaultTopicPerm: DENY
    defaultGroupPerm: DENY
    topicPerms:
      - Orders=PUB|SUB
    groupPerms:
      - GID_orders=SUB
"""


def as_admin() -> dict[str, str]:
    return {"RMQ_ACCESS_KEY": ADMIN, "RMQ_SECRET_KEY": ADMIN_SK}


def as_app(secret: str = APP_SK) -> dict[str, str]:
    return {"RMQ_ACCESS_KEY": APP, "RMQ_SECRET_KEY": secret}


@pytest.fixture
def acl_node(start_node, tmp_path):
    home = tmp_path / "home"
    (home / "conf").mkdir(parents=True)
    (home / "conf" / "plain_acl.yml").write_text(PLAIN_ACL)
    # rmqctl speaks remoting only: the node serves no gRPC
    return start_node("--namesrv-port", "0", "--listen-port", "0", "-D", "aclEnable=true",
                      "--no-grpc", home=home)


def acl_file(node) -> str:
    return (node.home / "conf" / "plain_acl.yml").read_text()


def test_signed_send_and_consume_with_a_valid_account(acl_node):
    ns = acl_node.namesrv
    sent = rmqctl(ns, "send", "Orders", "order-1", env=as_app())
    assert sent.returncode == 0, sent.stderr
    got = rmqctl(ns, "-o", "raw", "consume", "Orders", "-g", "GID_orders", "--from", "first",
                 "-e", env=as_app())
    assert got.returncode == 0, got.stderr
    assert got.stdout.split() == ["order-1"]


@pytest.mark.parametrize("env, says", [
    (as_app("not-the-secret"), f"Check signature failed for accessKey={APP}"),
    ({}, "No accessKey is configured"),
    ({"RMQ_ACCESS_KEY": "nobody-here", "RMQ_SECRET_KEY": APP_SK}, "No acl config for nobody-here"),
])
def test_a_refused_account_is_one_line_and_exit_1(acl_node, env, says):
    out = rmqctl(acl_node.namesrv, "send", "Orders", "x", env=env)
    assert out.returncode == 1, out.stderr
    [line] = out.stderr.splitlines()
    assert line.startswith("rmqctl: ") and says in line, line
    assert "access denied by ACL" in line and "PlainPermissionManager" not in line
    assert APP_SK not in out.stderr + out.stdout


def test_a_missing_permission_is_named(acl_node):
    ns = acl_node.namesrv
    denied = rmqctl(ns, "send", "Payments", "x", env=as_app())
    assert denied.returncode == 1
    [line] = denied.stderr.splitlines()
    assert "No default permission for topic:Payments" in line, line
    admin = rmqctl(ns, "acl", "list", "-b", acl_node.broker, env=as_app())
    assert admin.returncode == 1
    [line] = admin.stderr.splitlines()
    assert ("Need admin permission for request code=54 (GET_BROKER_CLUSTER_ACL_CONFIG), but "
            f"accessKey={APP} is not") in line


def test_acl_commands_round_trip(acl_node):
    """update creates an account (secret from stdin), get and list show it with its secret
    masked, the yml holds it, the account works at once; a second update changes one topic
    and keeps the rest; whitelist and version; delete needs --yes and removes it."""
    ns, broker = acl_node.namesrv, acl_node.broker
    new, new_sk = "app-payments", "payments-secret-1"
    made = rmqctl(ns, "-o", "json", "acl", "update", new, "--secret-key", "-",
                  "--topic-perm", "Payments=PUB", "--topic-perm", "Refunds=SUB",
                  "--group-perm", "GID_pay=SUB", "--default-group-perm", "SUB",
                  env=as_admin(), input=new_sk + "\n")
    assert made.returncode == 0, made.stderr
    assert new_sk not in made.stdout + made.stderr
    text = acl_file(acl_node)
    assert new in text and new_sk in text and "Payments=PUB" in text
    assert rmqctl(ns, "send", "Payments", "p-1", env={"RMQ_ACCESS_KEY": new,
                                                      "RMQ_SECRET_KEY": new_sk}).returncode == 0

    got = rmqctl(ns, "-o", "json", "acl", "get", new, env=as_admin())
    assert got.returncode == 0, got.stderr
    [row] = json.loads(got.stdout)
    assert row["accessKey"] == new and row["secretKey"] == "****" and row["admin"] is False
    assert row["topicPerms"] == ["Payments=PUB", "Refunds=SUB"]
    assert row["groupPerms"] == ["GID_pay=SUB"] and row["defaultGroupPerm"] == "SUB"

    changed = rmqctl(ns, "acl", "update", new, "--secret-key", "-", "--topic-perm",
                     "Refunds=PUB|SUB", env=as_admin(), input=new_sk + "\n")
    assert changed.returncode == 0, changed.stderr
    [row] = json.loads(rmqctl(ns, "-o", "json", "acl", "get", new, env=as_admin()).stdout)
    assert row["topicPerms"] == ["Payments=PUB", "Refunds=PUB|SUB"]
    assert row["groupPerms"] == ["GID_pay=SUB"]

    listed = rmqctl(ns, "-o", "json", "acl", "list", env=as_admin())
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert {r["accessKey"] for r in rows} == {ADMIN, APP, new}
    assert {r["secretKey"] for r in rows} == {"****"} and {r["addr"] for r in rows} == {broker}
    assert ADMIN_SK not in listed.stdout and APP_SK not in listed.stdout

    before = json.loads(rmqctl(ns, "-o", "json", "acl", "version", env=as_admin()).stdout)
    braces = rmqctl(ns, "acl", "whitelist", "set", "192.168.7.{1,2}", env=as_admin())
    assert braces.returncode == 2 and "comma" in braces.stderr
    white = rmqctl(ns, "acl", "whitelist", "set", "10.9.9.*", "192.168.7.1-20",
                   env=as_admin())
    assert white.returncode == 0, white.stderr
    assert "10.9.9.*" in acl_file(acl_node)
    shown = json.loads(rmqctl(ns, "-o", "json", "acl", "whitelist", "show",
                              env=as_admin()).stdout)
    assert [r["globalWhiteAddr"] for r in shown] == ["10.9.9.*", "192.168.7.1-20"]
    after = json.loads(rmqctl(ns, "-o", "json", "acl", "version", env=as_admin()).stdout)
    assert after[0]["version"] == before[0]["version"] + 1
    assert after[0]["aclFilePath"].endswith("plain_acl.yml")

    unasked = rmqctl(ns, "acl", "delete", new, env=as_admin())
    assert unasked.returncode == 2 and "--yes" in unasked.stderr
    assert new in acl_file(acl_node)
    deleted = rmqctl(ns, "-o", "json", "acl", "delete", new, "--yes", env=as_admin())
    assert deleted.returncode == 0, deleted.stderr
    assert new not in acl_file(acl_node)
    assert rmqctl(ns, "acl", "get", new, env=as_admin()).returncode == 3
    assert rmqctl(ns, "acl", "delete", new, "--yes", env=as_admin()).returncode == 3
    gone = rmqctl(ns, "send", "Payments", "p-2", env={"RMQ_ACCESS_KEY": new,
                                                      "RMQ_SECRET_KEY": new_sk})
    assert gone.returncode == 1 and f"No acl config for {new}" in gone.stderr


def test_secrets_stay_out_of_debug_output(acl_node):
    """--debug on a command that works and on one refused (a non-admin account, and an
    update the broker refuses): tracebacks, but no secret."""
    ns = acl_node.namesrv
    fine = rmqctl(ns, "--debug", "-o", "json", "acl", "list", env=as_admin())
    assert fine.returncode == 0 and ADMIN_SK not in fine.stdout + fine.stderr
    refused = rmqctl(ns, "--debug", "--secret-key", APP_SK, "--access-key", APP, "acl",
                     "list")
    assert refused.returncode == 1 and "Traceback" in refused.stderr
    assert APP_SK not in refused.stdout + refused.stderr
    bad = rmqctl(ns, "--debug", "acl", "update", APP, "--secret-key", "-",
                 "--white-address", "300.1.1.1", env=as_admin(), input="fresh-secret-22\n")
    assert bad.returncode == 1, bad.stderr
    assert "fresh-secret-22" not in bad.stdout + bad.stderr
    assert ADMIN_SK not in bad.stdout + bad.stderr


def test_shell_keeps_secrets_out_of_its_history(acl_node, tmp_path, capsys):
    """The shell runs commands signed with its account, and the history file it writes
    has every --secret-key value masked."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from rmqctl.cli import main
    from rmqctl.context import Ctx
    from rmqctl.shell import MaskedFileHistory, run_shell

    history = tmp_path / "history"
    ctx = Ctx(acl_node.namesrv, "raw", 5.0, False, access_key=ADMIN, secret_key=ADMIN_SK)
    with create_pipe_input() as pipe:
        session = PromptSession(input=pipe, output=DummyOutput(),
                                history=MaskedFileHistory(str(history)))
        pipe.send_text(f"acl update app-shell-1 --secret-key shell-secret-77 --topic-perm "
                       f"T=PUB\r--secret-key={ADMIN_SK} acl list\rexit\r")
        run_shell(main, ctx, session)
    out = capsys.readouterr()
    assert out.err == "" and out.out.count("broker-a") == 1 + 3  # raw: the first column
    assert "app-shell-1" in acl_file(acl_node)
    stored = history.read_text()
    assert "acl update app-shell-1 --secret-key **** --topic-perm T=PUB" in stored
    assert "--secret-key=**** acl list" in stored
    assert "shell-secret-77" not in stored and ADMIN_SK not in stored

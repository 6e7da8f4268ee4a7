"""rmqctl and plain ACL: every request signed as Java's AclClientRPCHook signs it, the acl
commands, and secrets kept out of what rmqctl prints and stores.

The frame tests stand a socket server where a broker would be and check what rmqctl sent
with the broker's own check (rmqnode.acl.signature.verify); the rest run a real node with
aclEnable=true."""

from __future__ import annotations

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

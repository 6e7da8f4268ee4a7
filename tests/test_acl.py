"""Plain ACL (aclEnable=true) on a real node, with raw signed frames (tests/remoting.py, signed
by rmqnode.acl.signature as Java's AclClientRPCHook signs): who gets through, what a refusal
looks like (Java 4.9.8's SYSTEM_ERROR and AclException remark, the connection kept), the ACL
admin codes and the file they write, a reload of the file, a broken file, address patterns.
The real clients are in test_acl_peers.py."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import yaml

from remoting import call
from rmqnode.acl.addresses import matcher
from rmqnode.acl.signature import sign
from rmqnode.net import fastjson
from rmqnode.net.client import RemotingClient
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import AclResponseCode, RequestCode, ResponseCode

ADMIN, ADMIN_SECRET = "rocketmq2", "12345678"
USER, USER_SECRET = "RocketMQ", "12345678"
RULES = """\
globalWhiteRemoteAddresses:
  - 10.10.103.*
  - 192.168.0.*
accounts:
  - accessKey: RocketMQ
    secretKey: 12345678
    whiteRemoteAddress:
    admin: false
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - topicA=DENY
      - topicB=PUB|SUB
      - topicC=SUB
    groupPerms:
      - groupA=DENY
      - groupB=PUB|SUB
  - accessKey: rocketmq2
    secretKey: 12345678
    whiteRemoteAddress: 192.168.1.*
    admin: true
"""
EXCEPTION = "org.apache.rocketmq.acl.common.AclException: "
AT = "org.apache.rocketmq.acl.plain.PlainPermissionManager."


def acl_node(start_node, tmp_path: Path, rules: str = RULES, *extra: str):
    home = tmp_path / "home"
    (home / "conf").mkdir(parents=True)
    (home / "conf" / "plain_acl.yml").write_text(rules)
    return start_node("--namesrv-port", "0", "--listen-port", "0", "-D", "aclEnable=true",
                      *extra, home=home)


def signed(code: int, fields: dict[str, object], body: bytes = b"", key: str = USER,
           secret: str = USER_SECRET) -> RemotingCommand:
    ext = {k: str(v) for k, v in fields.items()}
    sign(ext, body, key, secret)
    return RemotingCommand(code=code, ext_fields=ext, body=body)


def invoke(addr: str, *commands: RemotingCommand) -> list[RemotingCommand]:
    """The commands in turn on one connection: a refusal must leave it usable."""
    async def run() -> list[RemotingCommand]:
        client = RemotingClient()
        try:
            return [await client.invoke(addr, c, 5.0) for c in commands]
        finally:
            await client.close()
    return asyncio.run(run())


def send_fields(topic: str, group: str = "PG") -> dict[str, object]:
    return {"a": group, "b": topic, "c": "TBW102", "d": 4, "e": 0, "f": 0, "g": 0, "h": 0,
            "i": ""}


def pull_fields(topic: str, group: str) -> dict[str, object]:
    return {"consumerGroup": group, "topic": topic, "queueId": 0, "queueOffset": 0,
            "maxMsgNums": 32, "sysFlag": 4, "commitOffset": 0, "suspendTimeoutMillis": 0,
            "subscription": "*", "subVersion": 0}


def refused(resp: RemotingCommand, message: str, where: str) -> None:
    assert resp.code == ResponseCode.SYSTEM_ERROR, (resp.code, resp.remark)
    assert resp.remark == f"{EXCEPTION}{message}, {AT}{where}", resp.remark


def test_signed_requests_pass_and_refusals_are_javas(start_node, tmp_path):
    node = acl_node(start_node, tmp_path)
    body = b"hello acl"
    ok, unsigned, wrong_secret, unknown, denied, default_denied, sent_again = invoke(
        node.broker,
        signed(RequestCode.SEND_MESSAGE_V2, send_fields("topicB"), body),
        RemotingCommand.request(RequestCode.SEND_MESSAGE_V2, send_fields("topicB"), body),
        signed(RequestCode.SEND_MESSAGE_V2, send_fields("topicB"), body, secret="wrong-secret"),
        signed(RequestCode.SEND_MESSAGE_V2, send_fields("topicB"), body, key="nobody-at-all"),
        signed(RequestCode.SEND_MESSAGE_V2, send_fields("topicA"), body),
        signed(RequestCode.SEND_MESSAGE_V2, send_fields("otherTopic"), body),
        signed(RequestCode.SEND_MESSAGE_V2, send_fields("topicB"), body))
    assert ok.code == ResponseCode.SUCCESS, ok.remark
    refused(unsigned, "No accessKey is configured", "validate(PlainPermissionManager.java:664)")
    refused(wrong_secret, f"Check signature failed for accessKey={USER}",
            "validate(PlainPermissionManager.java:684)")
    refused(unknown, "No acl config for nobody-at-all",
            "validate(PlainPermissionManager.java:668)")
    refused(denied, "No default permission for topic:topicA",
            "checkPerm(PlainPermissionManager.java:611)")
    refused(default_denied, "No default permission for topic:otherTopic",
            "checkPerm(PlainPermissionManager.java:606)")
    assert sent_again.code == ResponseCode.SUCCESS, "the connection stays usable"
    # a body changed after signing is a bad signature
    tampered = signed(RequestCode.SEND_MESSAGE_V2, send_fields("topicB"), body)
    tampered.body = b"hello ACL"
    refused(invoke(node.broker, tampered)[0], f"Check signature failed for accessKey={USER}",
            "validate(PlainPermissionManager.java:684)")


def test_consuming_needs_sub_on_topic_and_group(start_node, tmp_path):
    node = acl_node(start_node, tmp_path)
    assert invoke(node.broker, signed(RequestCode.SEND_MESSAGE_V2, send_fields("topicC"), b"m",
                                      key=ADMIN, secret=ADMIN_SECRET))[0].code == 0
    pulled, group_denied, topic_denied, offset = invoke(
        node.broker,
        signed(RequestCode.PULL_MESSAGE, pull_fields("topicC", "groupB")),
        signed(RequestCode.PULL_MESSAGE, pull_fields("topicC", "groupA")),
        signed(RequestCode.PULL_MESSAGE, pull_fields("topicA", "groupB")),
        signed(RequestCode.UPDATE_CONSUMER_OFFSET, {"consumerGroup": "groupA", "topic": "topicC",
                                                    "queueId": 0, "commitOffset": 1}))
    assert pulled.code == ResponseCode.SUCCESS, pulled.remark
    refused(group_denied, "No default permission for group:groupA",
            "checkPerm(PlainPermissionManager.java:611)")
    refused(topic_denied, "No default permission for topic:topicA",
            "checkPerm(PlainPermissionManager.java:611)")
    refused(offset, "No default permission for group:groupA",
            "checkPerm(PlainPermissionManager.java:611)")
    # a send to a retry topic needs SUB on its group (retry topics follow group permissions)
    retry_ok, retry_denied = invoke(
        node.broker, signed(RequestCode.SEND_MESSAGE_V2, send_fields("%RETRY%groupB", "groupB"),
                            b"r"),
        signed(RequestCode.SEND_MESSAGE_V2, send_fields("%RETRY%groupA", "groupA"), b"r"))
    assert retry_ok.code == ResponseCode.SUCCESS, retry_ok.remark
    refused(retry_denied, "No default permission for group:groupA",
            "checkPerm(PlainPermissionManager.java:611)")
    # a heartbeat names groups and topics in its body
    heartbeat = fastjson.dumpb({"clientID": "c1", "producerDataSet": [], "consumerDataSet": [{
        "groupName": "groupA", "consumeType": "CONSUME_PASSIVELY", "messageModel": "CLUSTERING",
        "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET", "unitMode": False,
        "subscriptionDataSet": [{"topic": "topicC", "subString": "*", "classFilterMode": False,
                                 "tagsSet": [], "codeSet": [], "subVersion": 0,
                                 "expressionType": "TAG"}]}]})
    refused(invoke(node.broker, signed(RequestCode.HEART_BEAT, {}, heartbeat))[0],
            "No default permission for group:groupA",
            "checkPerm(PlainPermissionManager.java:611)")


def test_admin_codes_need_an_admin_account(start_node, tmp_path):
    node = acl_node(start_node, tmp_path)
    topic = {"topic": "Made", "defaultTopic": "TBW102", "readQueueNums": 4, "writeQueueNums": 4,
             "perm": 6, "topicFilterType": "SINGLE_TAG", "topicSysFlag": 0, "order": "false"}
    user, admin = invoke(node.broker, signed(RequestCode.UPDATE_AND_CREATE_TOPIC, topic),
                         signed(RequestCode.UPDATE_AND_CREATE_TOPIC, topic, key=ADMIN,
                                secret=ADMIN_SECRET))
    refused(user, f"Need admin permission for request code=17, but accessKey={USER} is not",
            "checkPerm(PlainPermissionManager.java:581)")
    assert admin.code == ResponseCode.SUCCESS, admin.remark
    # ours beyond 4.9.8: the ACL admin codes need admin too (Java lets anyone grant admin)
    grant = {"accessKey": USER, "secretKey": USER_SECRET, "admin": "true"}
    refused(invoke(node.broker, signed(RequestCode.UPDATE_AND_CREATE_ACL_CONFIG, grant))[0],
            f"Need admin permission for request code=50, but accessKey={USER} is not",
            "checkPerm(PlainPermissionManager.java:581)")


def test_white_addresses_let_unsigned_requests_through(start_node, tmp_path):
    """127.0.0.1 is outside the global white list: refused unsigned. An account whose
    whiteRemoteAddress holds it needs no valid signature (as in Java); a global white list
    that holds it lets anyone through."""
    node = acl_node(start_node, tmp_path, RULES.replace("192.168.1.*", "127.0.0.{1,2}"))
    outside = RemotingCommand.request(RequestCode.SEND_MESSAGE_V2, send_fields("topicB"), b"x")
    refused(invoke(node.broker, outside)[0], "No accessKey is configured",
            "validate(PlainPermissionManager.java:664)")
    badly_signed = signed(RequestCode.SEND_MESSAGE_V2, send_fields("anyTopic"), b"x", key=ADMIN,
                          secret="not-the-secret")
    assert invoke(node.broker, badly_signed)[0].code == ResponseCode.SUCCESS
    home = Path(node.home)
    acl = home / "conf" / "plain_acl.yml"
    acl.write_text(RULES.replace("10.10.103.*", "127.0.0.*"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        resp = invoke(node.broker, RemotingCommand.request(
            RequestCode.SEND_MESSAGE_V2, send_fields("topicA"), b"x"))[0]
        if resp.code == ResponseCode.SUCCESS:
            break
        time.sleep(0.2)
    assert resp.code == ResponseCode.SUCCESS, resp.remark


def test_reload_takes_effect_and_a_broken_file_keeps_the_rules(start_node, tmp_path):
    node = acl_node(start_node, tmp_path)
    acl = Path(node.home) / "conf" / "plain_acl.yml"

    def send_a() -> RemotingCommand:
        return invoke(node.broker, signed(RequestCode.SEND_MESSAGE_V2, send_fields("topicA"),
                                          b"x"))[0]

    def until(pred) -> RemotingCommand:
        deadline = time.monotonic() + 10
        while True:
            resp = send_a()
            if pred(resp) or time.monotonic() > deadline:
                return resp
            time.sleep(0.2)

    assert send_a().code == ResponseCode.SYSTEM_ERROR
    acl.write_text(RULES.replace("topicA=DENY", "topicA=PUB"))
    assert until(lambda r: r.code == ResponseCode.SUCCESS).code == ResponseCode.SUCCESS
    acl.write_text("accounts: [ {accessKey: short, secretKey: x} ]\n")  # Java refuses it
    node.wait_line("acl.reload_failed")
    time.sleep(2.5)  # more polls of the unchanged broken file: still one line
    lines = [line for line in node.lines if "acl.reload_failed" in line]
    assert len(lines) == 1 and "The accessKey=short" in lines[0], lines
    assert send_a().code == ResponseCode.SUCCESS, "the rules before the broken file stay"
    acl.write_text(RULES)
    assert until(lambda r: r.code != ResponseCode.SUCCESS).code == ResponseCode.SYSTEM_ERROR


def test_acl_admin_codes_write_the_file(start_node, tmp_path):
    node = acl_node(start_node, tmp_path)
    acl = Path(node.home) / "conf" / "plain_acl.yml"
    new = {"accessKey": "newUser01", "secretKey": "newSecret01", "whiteRemoteAddress": "",
           "admin": "false", "defaultTopicPerm": "DENY", "defaultGroupPerm": "SUB",
           "topicPerms": "orders=PUB|SUB,audit=SUB", "groupPerms": "billing=SUB"}

    def admin(code: int, fields: dict[str, object]) -> RemotingCommand:
        return invoke(node.broker, signed(code, fields, key=ADMIN, secret=ADMIN_SECRET))[0]

    assert admin(RequestCode.UPDATE_AND_CREATE_ACL_CONFIG, new).code == ResponseCode.SUCCESS
    data = yaml.safe_load(acl.read_text())
    entry = data["accounts"][-1]
    assert entry["accessKey"] == "newUser01" and entry["topicPerms"] == ["orders=PUB|SUB",
                                                                         "audit=SUB"]
    assert data["dataVersion"][0]["counter"] == 1
    assert not list(acl.parent.glob("*.tmp"))
    # the new account works at once
    sent = invoke(node.broker, signed(RequestCode.SEND_MESSAGE_V2, send_fields("orders"), b"o",
                                      key="newUser01", secret="newSecret01"))[0]
    assert sent.code == ResponseCode.SUCCESS, sent.remark
    # bad changes are Java's failures and write nothing
    short = admin(RequestCode.UPDATE_AND_CREATE_ACL_CONFIG, {**new, "secretKey": "short"})
    assert short.code == AclResponseCode.UPDATE_AND_CREATE_ACL_CONFIG_FAILED
    assert "length should longer than 6" in short.remark and "short" not in short.remark
    bad_perm = admin(RequestCode.UPDATE_AND_CREATE_ACL_CONFIG, {**new, "topicPerms": "orders"})
    assert bad_perm.code == AclResponseCode.UPDATE_AND_CREATE_ACL_CONFIG_FAILED
    assert bad_perm.remark.startswith("Parse Resource format error for orders.")
    bad_addr = admin(RequestCode.UPDATE_AND_CREATE_ACL_CONFIG,
                     {**new, "whiteRemoteAddress": "10.0.0.300"})
    assert bad_addr.code == AclResponseCode.UPDATE_AND_CREATE_ACL_CONFIG_FAILED
    assert yaml.safe_load(acl.read_text())["dataVersion"][0]["counter"] == 1
    # versions, listing (no secrets), white addresses, delete
    info = admin(RequestCode.GET_BROKER_CLUSTER_ACL_INFO, {})
    assert info.code == ResponseCode.SUCCESS
    assert fastjson.loads(info.ext_fields["version"])["counter"] == 1
    assert info.ext_fields["brokerName"] == "broker-a"
    assert str(acl) in fastjson.loads(info.ext_fields["allAclFileVersion"])
    listed = admin(RequestCode.GET_BROKER_CLUSTER_ACL_CONFIG, {})
    body = fastjson.loads(listed.body)
    assert [a["accessKey"] for a in body["plainAccessConfigs"]] == [USER, ADMIN, "newUser01"]
    assert all("secretKey" not in a for a in body["plainAccessConfigs"])
    assert body["globalWhiteAddrs"] == ["10.10.103.*", "192.168.0.*"]
    white = admin(RequestCode.UPDATE_GLOBAL_WHITE_ADDRS_CONFIG, {"globalWhiteAddrs": "127.0.0.1"})
    assert white.code == ResponseCode.SUCCESS, white.remark
    assert yaml.safe_load(acl.read_text())["globalWhiteRemoteAddresses"] == ["127.0.0.1"]
    unsigned = RemotingCommand.request(RequestCode.SEND_MESSAGE_V2, send_fields("x"), b"x")
    assert invoke(node.broker, unsigned)[0].code == ResponseCode.SUCCESS
    assert admin(RequestCode.DELETE_ACL_CONFIG, {"accessKey": "newUser01"}).code == 0
    gone = admin(RequestCode.DELETE_ACL_CONFIG, {"accessKey": "newUser01"})
    assert gone.code == AclResponseCode.DELETE_ACL_CONFIG_FAILED
    assert gone.remark == ("The accesskey[newUser01] corresponding to accessConfig has been "
                           "deleted failed.")
    assert [a["accessKey"] for a in yaml.safe_load(acl.read_text())["accounts"]] == [USER, ADMIN]


def test_missing_file_is_created_and_broken_file_stops_the_node(start_node, tmp_path):
    home = tmp_path / "empty"
    home.mkdir()
    node = start_node("--namesrv-port", "0", "--listen-port", "0", "-D", "aclEnable=true",
                      home=home)
    assert (home / "conf" / "plain_acl.yml").exists()
    resp = invoke(node.broker, signed(RequestCode.SEND_MESSAGE_V2, send_fields("T"), b"x"))[0]
    assert resp.remark.startswith(f"{EXCEPTION}No acl config for {USER}")
    broken = tmp_path / "broken.yml"
    broken.write_text("accounts:\n  - accessKey: RocketMQ\n    secretKey: [1, 2\n")
    with pytest.raises(Exception) as failed:
        start_node("--namesrv-port", "0", "--listen-port", "0", "-D", "aclEnable=true",
                   "-D", f"aclFilePath={broken}", home=tmp_path)
    assert str(broken) in str(failed.value)


def test_acl_off_changes_nothing(start_node, tmp_path):
    home = tmp_path / "home"
    (home / "conf").mkdir(parents=True)
    (home / "conf" / "plain_acl.yml").write_text("accounts: []\n")
    node = start_node("--namesrv-port", "0", "--listen-port", "0", home=home)
    resp = call(node.broker, RequestCode.SEND_MESSAGE_V2, send_fields("AnyTopic"), b"x")
    assert resp.code == ResponseCode.SUCCESS, resp.remark
    info = call(node.broker, RequestCode.GET_BROKER_CLUSTER_ACL_INFO)
    assert info.code == ResponseCode.SYSTEM_ERROR and "aclEnable=false" in info.remark
    config = call(node.broker, RequestCode.GET_BROKER_CONFIG).body.decode()
    assert "aclEnable=false\n" in config and config.count("aclEnable=") == 1


@pytest.mark.parametrize("pattern, inside, outside", [
    ("*", ["1.2.3.4", "::1"], []),
    ("", [], ["127.0.0.1"]),
    ("192.168.0.*", ["192.168.0.1", "192.168.0.255"], ["192.168.1.1", "10.0.0.1"]),
    ("192.168.*.*", ["192.168.7.1"], ["192.169.0.1"]),
    ("192.168.0.{1,2}", ["192.168.0.1", "192.168.0.2"], ["192.168.0.3"]),
    ("192.168.0.1-100", ["192.168.0.1", "192.168.0.100"], ["192.168.0.101"]),
    ("10.0.0.1,10.0.0.9", ["10.0.0.9"], ["10.0.0.2"]),
    ("127.0.0.1", ["127.0.0.1"], ["127.0.0.2"]),
    ("::1", ["::1", "0:0:0:0:0:0:0:1"], ["::2"]),
    ("1050::0005:0600:300c:{1,2}", ["1050:0:0:0:5:600:300c:1"], ["1050::5:600:300c:3"]),
    ("1050:0005:0600:300c:*", ["1050:5:600:300c:1::"], ["1050:5:600:300d::1"]),
    ("1050::0005:0600:300c:1-ff", ["1050::5:600:300c:ff"], ["1050::5:600:300c:100"]),
])
def test_address_patterns_match_as_java(pattern, inside, outside):
    match = matcher(pattern)
    assert all(match(a) for a in inside) and not any(match(a) for a in outside)


@pytest.mark.parametrize("pattern", ["10.0.0.300", "10.*", "192.168.0.{1,256}", "1-2.3.4.5",
                                     "192.168.0.200-100", "2001:db8::*:1"])
def test_address_patterns_java_refuses(pattern):
    with pytest.raises(ValueError):
        matcher(pattern)


def test_signatures_of_ever_new_field_names_keep_the_order_cache_bounded():
    """The broker remembers each set of field names in its signed order (a client repeats
    its own); requests that invent new names each time, or huge ones, cannot grow that
    memory past its bound, and every signature still checks."""
    from rmqnode.acl import signature
    for i in range(3000):
        fields = {f"name{i}": "v", "topic": "T", "x" * (5000 if i % 7 == 0 else 1): "y"}
        sign(fields, b"body", "ak", "sk")
        assert signature.verify(fields, b"body", "sk")
        assert not signature.verify(fields, b"other", "sk")
        assert len(signature._orders) <= signature._CACHED_SETS
    assert all(sum(map(len, names)) <= signature._CACHED_SET_CHARS
               for names in signature._orders)

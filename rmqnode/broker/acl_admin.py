"""The plain ACL admin codes (AdminBrokerProcessor of 4.9.8), as mqadmin's updateAclConfig,
deleteAclConfig, updateGlobalWhiteAddr and clusterAclConfigVersion send them, and
GET_BROKER_CLUSTER_ACL_CONFIG (54), which brokers up to 4.9.7 answered and 4.9.8 dropped.

Each change is checked whole (the file it would leave must load) before plain_acl.yml is
replaced, atomically, with the next dataVersion; the rules in force change at once, without
waiting for the file watch. Failures answer Java's codes (209, 210, 211) with its remarks.

Differences from Java, for safety: 54 lists accounts without their secret keys; the
changing codes and 54 need an admin account (validator.ADMIN_CODES); with aclEnable=false
every code answers that ACL is off (Java's broker throws a NullPointerException, or does
not answer at all); the one ACL file is plain_acl.yml (or aclFilePath), so an
aclFileFullPath naming another file is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmqnode import log, validation
from rmqnode.acl import rules as acl_rules
from rmqnode.acl.rules import ACCOUNT_FIELDS, ACCOUNTS, GLOBAL_WHITE, AclConfigError
from rmqnode.net import fastjson
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import AclResponseCode, RequestCode, ResponseCode
from rmqnode.net.connection import Connection, Handler

if TYPE_CHECKING:
    from rmqnode.acl.validator import PlainAccessValidator
    from rmqnode.broker.controller import BrokerController

_log = log.get("rmqnode.broker")

ACL_OFF = "ACL is not enabled on this broker (aclEnable=false)"


def _same_file(named: str, path: Path) -> bool:
    """Whether a peer's path names the ACL file; a path no file can have (a NUL byte, too
    long) names none."""
    try:
        return Path(named).resolve() == path.resolve()
    except (OSError, ValueError):
        return False


def _split(value: str | None) -> list[str] | None:
    """UtilAll.split: Java's String.split(","), trailing empty pieces dropped."""
    if value is None:
        return None
    pieces = value.split(",")
    while len(pieces) > 1 and not pieces[-1]:
        pieces.pop()
    return pieces


def _version_json(version: tuple[int, int]) -> dict[str, int]:
    return {"counter": version[0], "stateVersion": 0, "timestamp": version[1]}


def _updated(existing: dict[str, Any] | None, cmd: RemotingCommand) -> dict[str, Any]:
    """createAclAccessConfigMap: the account's entry with what the request gives (absent
    fields keep their value; admin is always written)."""
    entry: dict[str, Any] = dict(existing) if existing else {}
    entry["accessKey"] = cmd.field("accessKey")
    secret = cmd.field("secretKey")
    if secret:
        entry["secretKey"] = secret
    if cmd.field("whiteRemoteAddress") is not None:
        entry["whiteRemoteAddress"] = cmd.field("whiteRemoteAddress")
    entry["admin"] = cmd.bool_field("admin")
    for name in ("defaultTopicPerm", "defaultGroupPerm"):
        if cmd.field(name):
            entry[name] = cmd.field(name)
    for name in ("topicPerms", "groupPerms"):
        perms = _split(cmd.field(name))
        if perms is not None:
            entry[name] = perms
    return entry


class AclAdminProcessor:
    def __init__(self, broker: BrokerController) -> None:
        self.broker = broker

    def table(self) -> dict[int, Handler]:
        rc = RequestCode
        return {rc.UPDATE_AND_CREATE_ACL_CONFIG: self.update_account,
                rc.DELETE_ACL_CONFIG: self.delete_account,
                rc.GET_BROKER_CLUSTER_ACL_INFO: self.versions,
                rc.UPDATE_GLOBAL_WHITE_ADDRS_CONFIG: self.update_white,
                rc.GET_BROKER_CLUSTER_ACL_CONFIG: self.accounts}

    def _change(self, cmd: RemotingCommand, conn: Connection, failed: int, failure: str,
                change: Any) -> RemotingCommand:
        """Write the change, or answer `failed` with the reason (nothing written)."""
        acl: PlainAccessValidator | None = self.broker.acl
        if acl is None:
            return cmd.response(failed, ACL_OFF)
        try:
            new = acl_rules.write(acl.path, acl.rules, change)
        except AclConfigError as exc:
            return cmd.response(failed, str(exc))
        except LookupError:
            return cmd.response(failed, failure)
        except OSError as exc:
            return cmd.response(failed, f"cannot write {acl.path}: {exc.strerror or exc}")
        acl.replace(new)
        _log.info("acl.changed", code=cmd.code, peer=conn.peer, accounts=len(new.accounts))
        return cmd.response(ResponseCode.SUCCESS)

    def update_account(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        """UPDATE_AND_CREATE_ACL_CONFIG: an account replaced (it moves last, as in Java) or
        added."""
        key, secret = cmd.field("accessKey"), cmd.field("secretKey")
        try:
            acl_rules.check_keys(key, secret)
            acl_rules.check_resource_perms(_split(cmd.field("topicPerms")))
            acl_rules.check_resource_perms(_split(cmd.field("groupPerms")))
        except AclConfigError as exc:
            return cmd.response(AclResponseCode.UPDATE_AND_CREATE_ACL_CONFIG_FAILED, str(exc))

        def change(data: dict[str, Any]) -> dict[str, Any]:
            entries = [e for e in data.get(ACCOUNTS) or [] if isinstance(e, dict)]
            existing = next((e for e in entries if str(e.get("accessKey")) == key), None)
            kept = [e for e in entries if e is not existing]
            data[ACCOUNTS] = kept + [_updated(existing, cmd)]
            return data
        return self._change(cmd, conn, AclResponseCode.UPDATE_AND_CREATE_ACL_CONFIG_FAILED,
                            f"The accesskey[{key}] corresponding to accessConfig has been "
                            "updated failed.", change)

    def delete_account(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        key = cmd.field("accessKey")

        def change(data: dict[str, Any]) -> dict[str, Any]:
            entries = data.get(ACCOUNTS) or []
            kept = [e for e in entries if not (isinstance(e, dict)
                                                and str(e.get("accessKey")) == key)]
            if not key or len(kept) == len(entries):
                raise LookupError(key)
            data[ACCOUNTS] = kept
            return data
        return self._change(cmd, conn, AclResponseCode.DELETE_ACL_CONFIG_FAILED,
                            f"The accesskey[{key}] corresponding to accessConfig has been "
                            "deleted failed.", change)

    def update_white(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        addrs = _split(cmd.field("globalWhiteAddrs"))
        failed = AclResponseCode.UPDATE_GLOBAL_WHITE_ADDRS_CONFIG_FAILED
        acl = self.broker.acl
        named = cmd.field("aclFileFullPath")
        if acl is not None and named and not _same_file(named, acl.path):
            return cmd.response(failed, f"{validation.quote(named)} is not this broker's ACL "
                                f"file ({acl.path})")

        def change(data: dict[str, Any]) -> dict[str, Any]:
            if addrs is None:
                raise LookupError("globalWhiteAddrs")
            data[GLOBAL_WHITE] = addrs
            return data
        text = cmd.field("globalWhiteAddrs")
        return self._change(cmd, conn, failed, f"The globalWhiteAddresses[{text}] has been "
                            "updated failed.", change)

    def versions(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        """GET_BROKER_CLUSTER_ACL_INFO: the file's dataVersion, per file and the default's."""
        acl = self.broker.acl
        if acl is None:
            return cmd.response(ResponseCode.SYSTEM_ERROR, ACL_OFF)
        version = _version_json(acl.rules.version)
        config = self.broker.config
        return cmd.response(ResponseCode.SUCCESS, fields={
            "version": fastjson.dumps(version),
            "allAclFileVersion": fastjson.dumps({str(acl.path): version}),
            "brokerName": config.brokerName, "brokerAddr": self.broker.addr,
            "clusterName": config.brokerClusterName})

    def accounts(self, cmd: RemotingCommand, conn: Connection) -> RemotingCommand:
        """GET_BROKER_CLUSTER_ACL_CONFIG as 4.9.7 answered it (GetBrokerClusterAclConfigResponse
        Body), without the secret keys."""
        acl = self.broker.acl
        if acl is None:
            return cmd.response(ResponseCode.SYSTEM_ERROR, ACL_OFF)
        data = acl.rules.data
        configs = []
        for raw in data.get(ACCOUNTS) or []:
            account = acl_rules.account_config(raw)
            configs.append({k: account[k] for k in ACCOUNT_FIELDS
                            if k != "secretKey" and account[k] is not None})
        return cmd.response(ResponseCode.SUCCESS, body=fastjson.dumpb({
            "globalWhiteAddrs": [str(w) for w in data.get(GLOBAL_WHITE) or []],
            "plainAccessConfigs": configs}))

"""plain_acl.yml: its accounts and global white addresses, read into the rules the broker
checks requests against, and changed as the ACL admin codes change it.

The file is Java's (distribution/conf/plain_acl.yml): `globalWhiteRemoteAddresses`, `accounts`
(`accessKey`, `secretKey`, `whiteRemoteAddress`, `admin`, `defaultTopicPerm`,
`defaultGroupPerm`, `topicPerms`, `groupPerms`) and the `dataVersion` the admin codes bump.
Values are read as Java's fastjson binds them into PlainAccessConfig (a number where a string
is expected is its text: `secretKey: 12345678`). A file Java would refuse (a key of six
characters or less, a perm entry without `=`, an address pattern it cannot parse, a value of
the wrong type) raises AclConfigError naming the account and what is wrong.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rmqnode.acl.addresses import Matcher, matcher
from rmqnode.atomicfile import write_atomic

# Permission's bits
DENY, ANY, PUB, SUB = 1, 2, 4, 8
_PERMS = {"PUB": PUB, "SUB": SUB, "PUB|SUB": PUB | SUB, "SUB|PUB": PUB | SUB, "DENY": DENY}
RETRY_PREFIX = "%RETRY%"
KEY_MIN_LENGTH = 6  # AclConstants: keys must be longer than this

GLOBAL_WHITE = "globalWhiteRemoteAddresses"
ACCOUNTS = "accounts"
DATA_VERSION = "dataVersion"
# PlainAccessConfig's fields, in the order Java writes a new account
ACCOUNT_FIELDS = ("accessKey", "secretKey", "whiteRemoteAddress", "admin", "defaultTopicPerm",
                  "defaultGroupPerm", "topicPerms", "groupPerms")


class AclConfigError(ValueError):
    """An ACL file or change Java's PlainPermissionManager would refuse; the message is its."""


def parse_perm(text: str | None) -> int:
    """Permission.parsePermFromString: anything unknown (or absent) is DENY."""
    return DENY if text is None else _PERMS.get(text.strip(), DENY)


def allowed(needed: int, owned: int) -> bool:
    """Permission.checkPermission."""
    if owned & DENY:
        return False
    if needed & ANY:
        return bool(owned & (PUB | SUB))
    return bool(needed & owned)


def retry_topic(group: str) -> str:
    return RETRY_PREFIX + group


def check_resource_perms(entries: list[str] | None) -> None:
    """Permission.checkResourcePerms: each entry `Resource=PUB|SUB|PUB|SUB|SUB|PUB|DENY`."""
    for entry in entries or ():
        items = [i for i in entry.split("=") if i]
        if len(items) != 2:
            raise AclConfigError(f"Parse Resource format error for {entry}.\nThe expected "
                                 "resource format is 'Res=Perm'. For example: topicA=SUB")
        if items[1].strip() != "DENY" and parse_perm(items[1]) == DENY:
            raise AclConfigError(f"Parse resource permission error for {entry}.\nThe expected "
                                 "permissions are 'SUB' or 'PUB' or 'SUB|PUB' or 'PUB|SUB'.")


@dataclass(frozen=True)
class Account:
    """One account as the broker checks it (PlainAccessResource built from the config):
    `perms` maps topics, and groups as their retry topics, to Permission bits; None when the
    account lists neither."""

    access_key: str
    secret_key: str = field(repr=False)
    white: Matcher
    admin: bool
    default_topic_perm: int
    default_group_perm: int
    perms: dict[str, int] | None


@dataclass(frozen=True)
class Rules:
    """What one plain_acl.yml holds: `data` is the file as read (written back, changed, by
    the admin codes), `version` its dataVersion (counter, timestamp)."""

    global_white: tuple[Matcher, ...]
    accounts: dict[str, Account]
    data: dict[str, Any]
    version: tuple[int, int]


def _text(value: object, what: str) -> str | None:
    """A scalar as fastjson turns it into a String field (None stays None)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise AclConfigError(f"{what} must be a string, not {type(value).__name__}")


def _text_list(value: object, what: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise AclConfigError(f"{what} must be a list")
    return [_text(v, what) or "" for v in value]


def _flag(value: object, what: str) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise AclConfigError(f"{what} must be true or false")


def check_keys(access_key: str | None, secret_key: str | None) -> None:
    """PlainPermissionManager.checkPlainAccessConfig (the secret is not repeated back)."""
    if access_key is None or secret_key is None or len(access_key) <= KEY_MIN_LENGTH \
            or len(secret_key) <= KEY_MIN_LENGTH:
        raise AclConfigError(f"The accessKey={access_key} and secretKey=*** cannot be null and "
                             "length should longer than 6")


def account_config(raw: object) -> dict[str, Any]:
    """One `accounts` entry as PlainAccessConfig binds it: every field of its Java type."""
    if not isinstance(raw, dict):
        raise AclConfigError("each entry of accounts must be a mapping")
    key = _text(raw.get("accessKey"), "accessKey")
    where = f"account {key}"
    return {"accessKey": key, "secretKey": _text(raw.get("secretKey"), f"{where}: secretKey"),
            "whiteRemoteAddress": _text(raw.get("whiteRemoteAddress"),
                                        f"{where}: whiteRemoteAddress"),
            "admin": _flag(raw.get("admin"), f"{where}: admin"),
            "defaultTopicPerm": _text(raw.get("defaultTopicPerm"), f"{where}: defaultTopicPerm"),
            "defaultGroupPerm": _text(raw.get("defaultGroupPerm"), f"{where}: defaultGroupPerm"),
            "topicPerms": _text_list(raw.get("topicPerms"), f"{where}: topicPerms"),
            "groupPerms": _text_list(raw.get("groupPerms"), f"{where}: groupPerms")}


def _resource_perms(entries: list[str] | None, topics: bool, perms: dict[str, int]) -> None:
    """Permission.parseResourcePerms: groups are held as their retry topics."""
    for entry in entries or ():
        items = [i for i in entry.split("=") if i]
        if len(items) != 2:
            raise AclConfigError(f"Parse resource permission failed for "
                                 f"{'topic' if topics else 'group'}:{entry}")
        name = items[0].strip()
        perms[name if topics else retry_topic(name)] = parse_perm(items[1])


def build_account(config: dict[str, Any]) -> Account:
    """PlainPermissionManager.buildPlainAccessResource."""
    check_keys(config["accessKey"], config["secretKey"])
    perms: dict[str, int] = {}
    _resource_perms(config["groupPerms"], False, perms)
    _resource_perms(config["topicPerms"], True, perms)
    try:
        white = matcher(config["whiteRemoteAddress"])
    except ValueError as exc:
        raise AclConfigError(f"account {config['accessKey']}: {exc}") from None
    return Account(config["accessKey"], config["secretKey"], white, config["admin"],
                   parse_perm(config["defaultTopicPerm"]), parse_perm(config["defaultGroupPerm"]),
                   perms or None)


def _version(data: dict[str, Any]) -> tuple[int, int]:
    """The first `dataVersion` entry's counter and timestamp; a fresh one (0, now) without."""
    entries = data.get(DATA_VERSION)
    if isinstance(entries, list) and entries and isinstance(entries[0], dict):
        try:
            return int(entries[0].get("counter", 0)), int(entries[0].get("timestamp", 0))
        except (TypeError, ValueError):
            raise AclConfigError("dataVersion must hold numbers") from None
    return 0, int(time.time() * 1000)


def rules(data: dict[str, Any]) -> Rules:
    """The rules a file's content gives (PlainPermissionManager.load, for one file). An
    access key listed twice keeps its first entry, as Java keeps it."""
    whites = _text_list(data.get(GLOBAL_WHITE), GLOBAL_WHITE) or []
    try:
        global_white = tuple(matcher(w) for w in whites)
    except ValueError as exc:
        raise AclConfigError(f"{GLOBAL_WHITE}: {exc}") from None
    entries = data.get(ACCOUNTS) or []
    if not isinstance(entries, list):
        raise AclConfigError(f"{ACCOUNTS} must be a list")
    accounts: dict[str, Account] = {}
    for raw in entries:
        account = build_account(account_config(raw))
        accounts.setdefault(account.access_key, account)
    return Rules(global_white, accounts, data, _version(data))


def parse(text: str) -> dict[str, Any]:
    """A file's content as a mapping (an empty file is an empty mapping)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AclConfigError(" ".join(str(exc).split())) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AclConfigError("the file must hold a mapping (globalWhiteRemoteAddresses, "
                             "accounts)")
    return data


def load(path: Path) -> Rules:
    """The rules in the file; AclConfigError when it cannot be used, OSError when it cannot
    be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise AclConfigError("the file is not UTF-8") from None
    return rules(parse(text))


def _next_version(data: dict[str, Any], version: tuple[int, int]) -> dict[str, Any]:
    """updateAclConfigFileVersion: counter + 1, timestamp now."""
    out = dict(data)
    out[DATA_VERSION] = [{"counter": version[0] + 1, "timestamp": int(time.time() * 1000)}]
    return out


def write(path: Path, current: Rules, change: Callable[[dict[str, Any]], dict[str, Any]]
          ) -> Rules:
    """Apply `change` to the file's data, check the whole result as a load would, and only
    then replace the file (atomically) with it and its next dataVersion: a change that would
    leave a file the broker cannot read is refused, with nothing written."""
    data = _next_version(change(dict(current.data)), current.version)
    new = rules(data)
    text = yaml.safe_dump(data, default_flow_style=False, sort_keys=False, allow_unicode=True)
    write_atomic(path, text.encode("utf-8"), keep_bak=False)
    return new

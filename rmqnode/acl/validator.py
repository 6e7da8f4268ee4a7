"""The broker's plain ACL check (PlainAccessValidator + PlainPermissionManager of 4.9.8).

Every request, before its handler, is checked in Java's order: a host in
`globalWhiteRemoteAddresses` passes unsigned; otherwise the request must name a known
AccessKey; a host in that account's `whiteRemoteAddress` then passes; otherwise the
Signature must be the account's, and the account must hold the permissions the request needs
(admin codes: `admin: true`; topics and groups as `resources` lists them). A refusal is
Java's: SYSTEM_ERROR, the remark `RemotingHelper.exceptionSimpleDesc` of the AclException
(its text and the source line that threw it), and the connection stays open.

Beyond 4.9.8, where a request would otherwise bypass the check: batch sends (5.x checks them
as sends), reply sends, lite pulls and POP (as pulls), and the ACL admin codes themselves
(Java lets any signed account grant itself admin: here they need admin).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

from rmqnode import log
from rmqnode.acl import rules as acl_rules
from rmqnode.acl.addresses import remote_host
from rmqnode.acl.rules import ANY, PUB, RETRY_PREFIX, SUB, AclConfigError, Rules, retry_topic
from rmqnode.acl.signature import ACCESS_KEY, SIGNATURE, verify
from rmqnode.atomicfile import BrokenFileError
from rmqnode.errors import RemotingError
from rmqnode.net import fastjson
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import RequestCode, ResponseCode
from rmqnode.net.connection import Connection, Dispatcher, Handler, HandlerResult
from rmqnode.storage.javamap import java_order

_log = log.get("rmqnode.acl")

TRACE_TOPIC = "RMQ_SYS_TRACE_TOPIC"  # TopicValidator.RMQ_SYS_TRACE_TOPIC: traces go through
POLL_SECONDS = 1.0  # how often the file's stat is looked at (Java's watcher: 5 s)

_rc = RequestCode
# Permission.ADMIN_CODE, and the ACL admin codes (ours)
ADMIN_CODES = frozenset({
    _rc.UPDATE_AND_CREATE_TOPIC, _rc.UPDATE_BROKER_CONFIG, _rc.DELETE_TOPIC_IN_BROKER,
    _rc.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, _rc.DELETE_SUBSCRIPTIONGROUP,
    _rc.UPDATE_AND_CREATE_ACL_CONFIG, _rc.DELETE_ACL_CONFIG,
    _rc.UPDATE_GLOBAL_WHITE_ADDRS_CONFIG, _rc.GET_BROKER_CLUSTER_ACL_CONFIG})

_EXCEPTION = "org.apache.rocketmq.acl.common.AclException"
_MANAGER = "org.apache.rocketmq.acl.plain.PlainPermissionManager"
_VALIDATOR = "org.apache.rocketmq.acl.plain.PlainAccessValidator"


class AclError(RemotingError):
    """A refused request. `message` is the AclException's; `authenticated` says whether the
    caller was known (False: no key, unknown key, bad signature; True: a missing permission),
    which the gRPC endpoint answers as 40100 or 40300."""

    def __init__(self, message: str, thrown_at: str, authenticated: bool) -> None:
        super().__init__(ResponseCode.SYSTEM_ERROR, f"{_EXCEPTION}: {message}, {thrown_at}")
        self.message = message
        self.authenticated = authenticated


def _at(method: str, line: int, cls: str = _MANAGER) -> str:
    file = cls.rpartition(".")[2]
    return f"{cls}.{method}({file}.java:{line})"


def _parse_error(message: str) -> AclError:
    return AclError(message, _at("parse", 134, _VALIDATOR), False)


def _required(cmd: RemotingCommand, name: str) -> str:
    value = cmd.field(name)
    if value is None:
        raise _parse_error(f"the custom field <{name}> is null")
    return value


def _heartbeat(cmd: RemotingCommand, needed: dict[str, int]) -> None:
    """HEART_BEAT: SUB on each consumer group and each topic it subscribes."""
    try:
        data = fastjson.loads(cmd.body) if cmd.body else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise _parse_error(f"heartbeat body is not JSON: {exc}") from None
    consumers = data.get("consumerDataSet") if isinstance(data, dict) else None
    for consumer in consumers if isinstance(consumers, list) else ():
        if not isinstance(consumer, dict):
            continue
        if isinstance(consumer.get("groupName"), str):
            needed[retry_topic(consumer["groupName"])] = SUB
        subscriptions = consumer.get("subscriptionDataSet")
        for sub in subscriptions if isinstance(subscriptions, list) else ():
            if isinstance(sub, dict) and isinstance(sub.get("topic"), str):
                needed[sub["topic"]] = SUB


def _send(needed: dict[str, int], topic: str | None, group: str | None) -> None:
    """A send needs PUB on its topic; one to a retry topic needs SUB on the group."""
    if topic is not None and topic.startswith(RETRY_PREFIX):
        if group is not None:
            needed[retry_topic(group)] = SUB
    elif topic is not None:
        needed[topic] = PUB


def _consume(needed: dict[str, int], topic: str | None, group: str | None) -> None:
    if topic is not None:
        needed[topic] = SUB
    if group is not None:
        needed[retry_topic(group)] = SUB


def resources(cmd: RemotingCommand) -> dict[str, int] | None:
    """PlainAccessResource.parse: the topics (groups as their retry topics) and permissions a
    request needs; None when it names none."""
    code, field = cmd.code, cmd.field
    needed: dict[str, int] = {}
    if code == _rc.SEND_MESSAGE:
        _send(needed, field("topic"), field("group"))
    elif code in (_rc.SEND_MESSAGE_V2, _rc.SEND_BATCH_MESSAGE, _rc.SEND_REPLY_MESSAGE_V2):
        _send(needed, field("b"), field("a"))
    elif code == _rc.SEND_REPLY_MESSAGE:
        _send(needed, field("topic"), field("producerGroup"))
    elif code == _rc.CONSUMER_SEND_MSG_BACK:
        _consume(needed, None, field("group"))
    elif code in (_rc.PULL_MESSAGE, _rc.LITE_PULL_MESSAGE, _rc.POP_MESSAGE, _rc.ACK_MESSAGE,
                  _rc.CHANGE_MESSAGE_INVISIBLETIME):
        _consume(needed, field("topic"), field("consumerGroup"))
    elif code == _rc.QUERY_MESSAGE:
        _consume(needed, field("topic"), None)
    elif code == _rc.HEART_BEAT:
        _heartbeat(cmd, needed)
    elif code == _rc.UNREGISTER_CLIENT:
        _required(cmd, "clientID")
        _consume(needed, None, field("consumerGroup"))
    elif code == _rc.GET_CONSUMER_LIST_BY_GROUP:
        _consume(needed, None, _required(cmd, "consumerGroup"))
    elif code == _rc.UPDATE_CONSUMER_OFFSET:
        group, topic = _required(cmd, "consumerGroup"), _required(cmd, "topic")
        _consume(needed, topic, group)
    return needed or None


def acl_file(home: str, configured: str) -> Path:
    """Where the broker reads its rules: aclFilePath (relative paths from the node's home),
    else <home>/conf/plain_acl.yml, where Java's PlainPermissionManager looks."""
    path = Path(configured or "conf/plain_acl.yml").expanduser()
    return path if path.is_absolute() else Path(home) / path


def _print(resource: str) -> str:
    """PlainAccessResource.printStr."""
    if resource.startswith(RETRY_PREFIX):
        return f"group:{resource[len(RETRY_PREFIX):]}"
    return f"topic:{resource}"


class PlainAccessValidator:
    """The rules of one plain_acl.yml, reloaded when the file changes (`watch`), and the
    check of requests against them. A file that breaks after start is logged in one line and
    the rules it replaced stay in force."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rules = self._first_load()
        self._stat = self._file_stat()
        self._white: dict[str, bool] = {}  # host -> globally white, for the current rules
        self._hosts: dict[str, str] = {}  # connection peer (host:port) -> host

    def _first_load(self) -> Rules:
        """The rules at start. A missing file is created empty, as Java creates it (every
        request is then refused until accounts are added); one that cannot be used stops
        the node (BrokenFileError), as it stops Java's broker."""
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
            _log.warning("acl.file_created", file=self.path,
                         note="no accounts: every request is refused until some are added")
        try:
            return acl_rules.load(self.path)
        except AclConfigError as exc:
            raise BrokenFileError(f"{self.path}: {' '.join(str(exc).split())} (fix the file, "
                                  "or start with aclEnable=false)") from None

    def _file_stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def replace(self, new: Rules) -> None:
        self.rules = new
        self._white = {}
        self._stat = self._file_stat()

    def reload_if_changed(self) -> None:
        stat = self._file_stat()
        if stat == self._stat:
            return
        self._stat = stat
        try:
            new = acl_rules.load(self.path)
        except (AclConfigError, OSError) as exc:
            _log.error("acl.reload_failed", file=self.path, error=" ".join(str(exc).split()),
                       kept="the rules loaded before")
            return
        self.rules, self._white = new, {}
        _log.info("acl.reloaded", file=self.path, accounts=len(new.accounts))

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            self.reload_if_changed()

    # -- checking ------------------------------------------------------------------------

    def _globally_white(self, host: str) -> bool:
        white = self._white.get(host)
        if white is None:
            white = any(m(host) for m in self.rules.global_white)
            if len(self._white) < 4096:
                self._white[host] = white
        return white

    def validate(self, host: str, access_key: str | None, signed_by: Callable[[str], bool],
                 code: int, needed: dict[str, int] | None) -> None:
        """PlainPermissionManager.validate; `signed_by(secret)` says whether the request's
        signature is the one that secret gives. Raises AclError."""
        if self._globally_white(host):
            return
        if access_key is None:
            raise AclError("No accessKey is configured", _at("validate", 664), False)
        account = self.rules.accounts.get(access_key)
        if account is None:
            raise AclError(f"No acl config for {access_key}", _at("validate", 668), False)
        if account.white(host):
            return
        if not signed_by(account.secret_key):
            raise AclError(f"Check signature failed for accessKey={access_key}",
                           _at("validate", 684), False)
        if needed is not None and needed.get(TRACE_TOPIC) == PUB:
            return
        if code in ADMIN_CODES and not account.admin:
            raise AclError(f"Need admin permission for request code={code}, but accessKey="
                           f"{access_key} is not", _at("checkPerm", 581), True)
        if needed is None or (account.perms is None and account.admin):
            return
        owned = account.perms or {}
        # in Java's HashMap order: the first resource refused is the one Java names
        for resource, perm in (java_order(needed) if len(needed) > 1 else needed).items():
            is_group = resource.startswith(RETRY_PREFIX)
            if resource in owned:
                if not acl_rules.allowed(perm, owned[resource]):
                    raise AclError(f"No default permission for {_print(resource)}",
                                   _at("checkPerm", 611), True)
            elif not acl_rules.allowed(perm, account.default_group_perm if is_group
                                       else account.default_topic_perm):
                raise AclError(f"No default permission for {_print(resource)}",
                               _at("checkPerm", 606), True)

    def check(self, cmd: RemotingCommand, peer: str) -> None:
        """The RPC hook: validate(parse(request, remoteAddr))."""
        fields = cmd.ext_fields
        host = self._hosts.get(peer)
        if host is None:
            if len(self._hosts) >= 4096:
                self._hosts.clear()
            host = self._hosts[peer] = remote_host(peer)
        if fields is None:
            self.validate(host, None, lambda secret: False, cmd.code, None)
            return
        needed = resources(cmd)
        self.validate(host, fields.get(ACCESS_KEY), lambda secret: bool(
            fields.get(SIGNATURE) is not None and verify(fields, cmd.body, secret)),
            cmd.code, needed)

    def guard(self, dispatcher: Dispatcher) -> Dispatcher:
        """The dispatcher the broker's server runs when ACL is on: each handler of
        `dispatcher` behind the check (the broker's own calls to its handlers, such as the
        gRPC endpoint's, use `dispatcher` itself and are checked where they enter)."""
        guarded = Dispatcher()
        for code, handler in dispatcher.handlers.items():
            guarded.register(code, self._behind_check(handler))
        guarded.around_read = dispatcher.around_read
        return guarded

    def _behind_check(self, handler: Handler) -> Handler:
        check = self.check

        def checked(cmd: RemotingCommand, conn: Connection) -> HandlerResult:
            check(cmd, conn.peer)
            return handler(cmd, conn)
        return checked


__all__ = ["PlainAccessValidator", "AclError", "acl_file", "resources", "ADMIN_CODES", "ANY",
           "PUB", "SUB"]

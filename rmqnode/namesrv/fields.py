"""The name server's request fields, parsed and checked before any table is touched.

Java's name server takes what a peer sends: a registration that fails half-way leaves broker
and cluster entries nobody removes, and a few thousand of them make the cluster info larger
than any client reads. Every field a handler uses comes through here and is either a clean
value or a RemotingError (SYSTEM_ERROR, one short line, the peer's value quoted), which the
transport answers with.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import NoReturn

from rmqnode import validation
from rmqnode.errors import RemotingError
from rmqnode.net import fastjson
from rmqnode.net.codec import RemotingCommand
from rmqnode.net.codes import ResponseCode
from rmqnode.validation import INT32, INT64, LABEL_PATTERN, TOPIC_MAX_LENGTH, quote

# Broker and cluster names (validation.LABEL_PATTERN), and the topics named after them, may
# hold dots here.
LABEL_MAX_LENGTH = 255  # host names are at most 253
_HOST = re.compile(r"[0-9A-Za-z._%:\[\]-]{1,253}")  # a name, IPv4 or IPv6 (bracketed or not)
KV_KEY_MAX_LENGTH = 255
KV_VALUE_MAX_LENGTH = 64 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# DataVersion is a few long fields (timestamp, counter; stateVersion from 5.0).
_VERSION_KEY = re.compile(r"[A-Za-z]{1,64}")
# Version ordinal: the first whose REGISTER_BROKER body is a RegisterBrokerBody (older brokers
# send the bare TopicConfigSerializeWrapper).
V3_0_11 = 37


def _refuse(remark: str) -> NoReturn:
    raise RemotingError(ResponseCode.SYSTEM_ERROR, remark)


def _null(field: str) -> NoReturn:
    _refuse(f"the custom field <{field}> is null")


def label(value: str | None, field: str) -> str:
    """A broker or cluster name: a topic's characters, dots too, at most 255 of them."""
    if not value:
        _null(field)
    if len(value) > LABEL_MAX_LENGTH or not LABEL_PATTERN.fullmatch(value):
        _refuse(f"<{field}> is not a valid name: {quote(value)}")
    return value


def topic(value: str | None) -> str:
    """validation.topic's rules, except that dots pass (see LABEL_PATTERN)."""
    if value and "." in value and len(value) <= TOPIC_MAX_LENGTH \
            and LABEL_PATTERN.fullmatch(value):
        return value
    return validation.topic(value)


def address(value: str | None, field: str) -> str:
    """host:port as RemotingHelper.string2SocketAddress splits it (at the last colon), with a
    port 0..65535: clients are told this address and connect to it."""
    if not value:
        _null(field)
    host, _, port = value.rpartition(":")
    if not (_HOST.fullmatch(host) and port.isascii() and port.isdigit() and len(port) <= 5
            and int(port) <= 65535):
        _refuse(f"<{field}> is not host:port: {quote(value)}")
    return value


def kv_string(value: str | None, field: str, limit: int = KV_KEY_MAX_LENGTH,
              one_line: bool = True) -> str:
    """A KV namespace or key (one line, at most 255 characters) or value (up to 64 KiB):
    Java takes any string; bounded here so that kvConfig.json and its log lines stay small and
    can be written."""
    if not value:
        _null(field)
    if len(value) > limit:
        _refuse(f"<{field}> is longer than {limit} characters: {quote(value)}")
    if validation.has_lone_surrogate(value) or (one_line and _CONTROL.search(value)):
        _refuse(f"<{field}> holds a control character or a lone surrogate: {quote(value)}")
    return value


def json_body(cmd: RemotingCommand, what: str) -> dict:
    """The request body as a JSON object ({} when there is none)."""
    if not cmd.body:
        return {}
    try:
        body = fastjson.loads(cmd.body)
    except (ValueError, RecursionError) as exc:
        _refuse(f"{what} is not valid JSON: {quote(exc)}")
    if not isinstance(body, dict):
        _refuse(f"{what} is not a JSON object")
    return body


def data_version(value: object) -> dict[str, int]:
    """A DataVersion: kept per broker and sent back on QUERY_DATA_VERSION."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
            type(k) is str and _VERSION_KEY.fullmatch(k) and type(v) is int
            and INT64[0] <= v <= INT64[1] for k, v in value.items()):
        _refuse(f"dataVersion is not an object of longs: {quote(value)}")
    return value


def _int32(cfg: dict, topic_name: str, key: str, lo: int, hi: int) -> None:
    value = cfg.get(key)
    if value is not None and not (type(value) is int and lo <= value <= hi):
        _refuse(f"topic {topic_name}: {key} must be an integer in [{lo}, {hi}], "
                f"not {quote(value)}")


def topic_configs(value: object) -> dict[str, dict[str, object]] | None:
    """A topicConfigTable: topic -> TopicConfig with int32 fields, queue counts 0..1024."""
    if value is None:
        return None
    if not isinstance(value, dict):
        _refuse("topicConfigTable is not a JSON object")
    for name, cfg in value.items():
        topic(name if type(name) is str else None)
        if not isinstance(cfg, dict):
            _refuse(f"topic {name}: its config is not a JSON object")
        for key in ("readQueueNums", "writeQueueNums"):
            _int32(cfg, name, key, 0, validation.QUEUE_NUMS_MAX)
        for key in ("perm", "topicSysFlag"):
            _int32(cfg, name, key, *INT32)
    return value


@dataclass(frozen=True)
class Registration:
    """A REGISTER_BROKER request, every field checked: applying it cannot fail half-way."""

    cluster: str
    broker_name: str
    broker_addr: str
    broker_id: int
    ha_server_addr: str
    data_version: dict[str, int]
    topic_configs: dict[str, dict[str, object]] | None  # None: no table, keep the queues
    timeout: float | None  # the broker's own heartbeat timeout (5.x), seconds


def registration(cmd: RemotingCommand) -> Registration:
    """Parse and check a whole REGISTER_BROKER (header and RegisterBrokerBody)."""
    crc = cmd.int_field("bodyCrc32", 0, *INT32)
    if crc and crc != zlib.crc32(cmd.body) & 0x7FFFFFFF:  # UtilAll.crc32
        _refuse("crc32 not match")
    if cmd.bool_field("compressed"):
        _refuse("compressed RegisterBrokerBody is not supported; "
                "set compressedRegister=false on the broker")
    body = json_body(cmd, "register body")
    wrapper = body.get("topicConfigSerializeWrapper") if cmd.version >= V3_0_11 else body
    if wrapper is None:
        wrapper = {}
    elif not isinstance(wrapper, dict):
        _refuse("topicConfigSerializeWrapper is not a JSON object")
    ha_addr = cmd.field("haServerAddr")
    timeout = cmd.int_field("heartbeatTimeoutMillis", 0, 0)
    return Registration(
        cluster=label(cmd.field("clusterName"), "clusterName"),
        broker_name=label(cmd.field("brokerName"), "brokerName"),
        broker_addr=address(cmd.field("brokerAddr"), "brokerAddr"),
        broker_id=cmd.int_field("brokerId"),
        ha_server_addr=address(ha_addr, "haServerAddr") if ha_addr else "",
        data_version=data_version(wrapper.get("dataVersion")),
        topic_configs=topic_configs(wrapper.get("topicConfigTable")),
        timeout=timeout / 1000.0 or None)

"""Who is connected (ProducerManager + ConsumerManager): groups, their channels and
subscriptions, as heartbeats describe them. Plain state; the processors talk to sockets."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rmqnode.broker.sql92 import FilterError, Selector, compile_selector
from rmqnode.errors import RemotingError
from rmqnode.message import tags_code
from rmqnode.net.codes import ResponseCode
from rmqnode.validation import has_lone_surrogate, is_name, quote

CONSUME_TYPES = ("CONSUME_ACTIVELY", "CONSUME_PASSIVELY", "CONSUME_POP")
MESSAGE_MODELS = ("BROADCASTING", "CLUSTERING")
CONSUME_FROM = ("CONSUME_FROM_LAST_OFFSET", "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
                "CONSUME_FROM_MIN_OFFSET", "CONSUME_FROM_MAX_OFFSET", "CONSUME_FROM_FIRST_OFFSET",
                "CONSUME_FROM_TIMESTAMP")
SUB_ALL = "*"
TAG, SQL92 = "TAG", "SQL92"
PARSE_FAILED = "parse the consumer's subscription failed"


def is_tag_type(kind: str | None) -> bool:
    """ExpressionType.isTagType: no type, an empty one, or TAG; anything else is a property
    filter (SQL92 the only one Java has)."""
    return not kind or kind == TAG


def compile_filter(kind: str | None, expression: str | None) -> Selector:
    """FilterFactory.get(kind).compile(expression). Java has a filter for SQL92 only; another
    kind, or no text, fails with an exception that has no message (a NullPointerException):
    a FilterError whose text is empty."""
    if kind != SQL92 or expression is None:
        raise FilterError("")
    return compile_selector(expression)


def check_filter(sub: Subscription, enabled: bool, registered: bool) -> None:
    """PullMessageProcessor's checks of a property filter, in Java's order. A heartbeat's
    (`registered`) expression that did not compile has no ConsumerFilterData; a broker without
    enablePropertyFilter refuses any; an expression sent with the pull that is empty or does
    not compile fails to parse. (4.9.8 only `assert`s the latter, which production JVMs skip,
    and then delivers every message; 5.x answers SUBSCRIPTION_PARSE_FAILED, as here.)"""
    if is_tag_type(sub.expression_type):
        return
    if registered and sub.selector is None:
        raise RemotingError(ResponseCode.FILTER_DATA_NOT_EXIST, "The broker's consumer filter "
                            "data is not exist!Your expression may be wrong!")
    if not registered and not sub.sub_string:
        raise RemotingError(ResponseCode.SUBSCRIPTION_PARSE_FAILED, PARSE_FAILED)
    if not enabled:
        raise RemotingError(ResponseCode.SYSTEM_ERROR, unsupported(sub.expression_type))
    if sub.selector is None:
        raise RemotingError(ResponseCode.SUBSCRIPTION_PARSE_FAILED, PARSE_FAILED)


def unsupported(kind: str) -> str:
    """The remark of a broker without enablePropertyFilter; a kind that is no plain name is
    quoted (it is the client's text)."""
    shown = kind if is_name(kind, 32) else quote(kind)
    return f"The broker does not support consumer to filter message by {shown}"


def enum_name(value: Any, names: tuple[str, ...], default: str) -> str:
    """C++ clients send enum ordinals, Java and JS their names; we keep names."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return names[value] if 0 <= value < len(names) else default
    if isinstance(value, str) and value:
        # isdecimal, not isdigit: int() refuses "²", and a short string is never a huge int
        small = value.isdecimal() and len(value) <= 2
        return names[int(value)] if small and int(value) < len(names) else value
    return default


@dataclass
class Subscription:
    """SubscriptionData: for TAG, `*` or tags separated by `||`; for SQL92, the expression
    and, when it compiles, its Selector (Java's ConsumerFilterData), compiled here once."""
    topic: str
    sub_string: str = SUB_ALL
    tags: list[str] = field(default_factory=list)
    codes: set[int] = field(default_factory=set)
    sub_version: int = 0
    expression_type: str = TAG
    selector: Selector | None = None

    @classmethod
    def parse(cls, topic: str, expression: str | None, version: int = 0,
              expression_type: str | None = None) -> Subscription:
        """Tags are hashed as Java hashes them (UTF-16), which a lone surrogate cannot be:
        such an expression is refused as Java refuses one it cannot parse. A property
        filter is kept even when it does not compile (its selector is then None), as a Java
        heartbeat registers it: what to answer is the pull's business (check_filter)."""
        kind = expression_type or TAG
        if kind != TAG:
            try:
                selector: Selector | None = compile_filter(kind, expression)
            except FilterError:
                selector = None
            return cls(topic, expression or "", [], set(), version, kind, selector)
        text = (expression or "").strip()
        if has_lone_surrogate(text):
            raise RemotingError(ResponseCode.SUBSCRIPTION_PARSE_FAILED,
                                "parse the consumer's subscription failed")
        if not text or text == SUB_ALL:
            return cls(topic, SUB_ALL, [], set(), version, kind)
        tags = [t.strip() for t in text.split("||") if t.strip()]
        return cls(topic, text, tags, {tags_code(t) for t in tags}, version, kind)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Subscription:
        return cls.parse(str(data.get("topic", "")), data.get("subString"),
                         int(data.get("subVersion") or 0), data.get("expressionType"))

    def matches(self, code: int) -> bool:
        return self.sub_string == SUB_ALL or code in self.codes

    def to_json(self) -> dict[str, Any]:
        return {"classFilterMode": False, "codeSet": sorted(self.codes),
                "expressionType": self.expression_type, "subString": self.sub_string,
                "subVersion": self.sub_version, "tagsSet": self.tags, "topic": self.topic}


@dataclass
class ClientChannel:
    conn: Any
    client_id: str
    language: str
    version: int
    last_update: float = field(default_factory=time.monotonic)

    def to_json(self) -> dict[str, Any]:
        return {"clientAddr": self.conn.peer, "clientId": self.client_id,
                "language": self.language, "version": self.version}


@dataclass
class ConsumerGroupInfo:
    group: str
    consume_type: str = "CONSUME_PASSIVELY"
    message_model: str = "CLUSTERING"
    consume_from_where: str = "CONSUME_FROM_LAST_OFFSET"
    channels: dict[Any, ClientChannel] = field(default_factory=dict)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)

    def client_ids(self) -> list[str]:
        return [c.client_id for c in self.channels.values()]


class ClientManager:
    def __init__(self, channel_timeout: float = 120.0) -> None:
        self.channel_timeout = channel_timeout
        self.producers: dict[str, dict[Any, ClientChannel]] = {}
        self.consumers: dict[str, ConsumerGroupInfo] = {}

    def register_producer(self, group: str, channel: ClientChannel) -> None:
        channels = self.producers.setdefault(group, {})
        old = channels.get(channel.conn)
        if old is not None:
            old.last_update = time.monotonic()
        else:
            channels[channel.conn] = channel

    def register_consumer(self, group: str, channel: ClientChannel, consume_type: str,
                          message_model: str, consume_from_where: str,
                          subscriptions: list[Subscription]) -> bool:
        """Returns True when the group's members or subscriptions changed (notify them)."""
        info = self.consumers.get(group)
        if info is None:
            info = self.consumers[group] = ConsumerGroupInfo(group)
        info.consume_type, info.message_model = consume_type, message_model
        info.consume_from_where = consume_from_where
        changed = False
        old = info.channels.get(channel.conn)
        if old is None:
            info.channels[channel.conn] = channel
            changed = True
        else:
            old.last_update = time.monotonic()
        new_subs = {s.topic: s for s in subscriptions}
        for topic, sub in new_subs.items():
            prev = info.subscriptions.get(topic)
            same = prev is not None and prev.sub_string == sub.sub_string and \
                prev.expression_type == sub.expression_type
            changed = changed or not same
            if not same or prev.sub_version < sub.sub_version:  # type: ignore[union-attr]
                info.subscriptions[topic] = sub
        for topic in [t for t in info.subscriptions if t not in new_subs]:
            del info.subscriptions[topic]
            changed = True
        return changed

    def unregister(self, conn: Any, producer_group: str | None = None,
                   consumer_group: str | None = None) -> list[str]:
        """Remove this connection from the named groups; returns consumer groups that changed."""
        if producer_group:
            self.producers.get(producer_group, {}).pop(conn, None)
        changed = []
        if consumer_group:
            info = self.consumers.get(consumer_group)
            if info is not None and info.channels.pop(conn, None) is not None:
                changed.append(consumer_group)
                if not info.channels:
                    del self.consumers[consumer_group]
        return changed

    def channel_closed(self, conn: Any) -> list[str]:
        """Forget a connection everywhere; returns the consumer groups that lost a member."""
        for channels in self.producers.values():
            channels.pop(conn, None)
        changed = []
        for group, info in list(self.consumers.items()):
            if info.channels.pop(conn, None) is not None:
                changed.append(group)
                if not info.channels:
                    del self.consumers[group]
        return changed

    def expired(self, now: float) -> list[Any]:
        """Connections silent longer than the channel timeout (no heartbeat for 120 s)."""
        cutoff = now - self.channel_timeout
        stale = {c.conn for g in self.producers.values() for c in g.values()
                 if c.last_update < cutoff}
        stale |= {c.conn for info in self.consumers.values() for c in info.channels.values()
                  if c.last_update < cutoff}
        return list(stale)

    def producer_channel(self, group: str) -> ClientChannel | None:
        for channel in self.producers.get(group, {}).values():
            if channel.conn.is_open:
                return channel
        return None

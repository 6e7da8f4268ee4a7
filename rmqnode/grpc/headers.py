"""Request metadata of the gRPC protocol (spec §1.4), read once per call.

Every unary call and every Telemetry stream carries the same `x-mq-*` headers. Only the client
id matters to the server (it names the client's settings, its Telemetry stream and its
registrations); the rest is informational and accepted as sent. The service wrapper reads the
headers before a handler runs, so a call without a client id is answered 40017 in one place,
and leaves them in a context variable for the handler (`current()`).
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

import grpc

from rmqnode.grpc.status import Code, GrpcError
from rmqnode.net.codec import LANGUAGE_CODES

CLIENT_ID = "x-mq-client-id"
LANGUAGE = "x-mq-language"
PROTOCOL = "x-mq-protocol"
CLIENT_VERSION = "x-mq-client-version"
NAMESPACE = "x-mq-namespace"
REQUEST_ID = "x-mq-request-id"
DATE_TIME = "x-mq-date-time"
AUTHORIZATION = "authorization"  # the ACL's signature (auth.py)
AUTHORIZATION_MAX_LENGTH = 1024
# Ours: a client id is hostname@pid@index@base36 (some 30 characters); this bounds what a
# peer can make the registry and the log lines hold.
CLIENT_ID_MAX_LENGTH = 256
VALUE_MAX_LENGTH = 256


@dataclass(frozen=True)
class ClientHeaders:
    """What a call says about its client. `language` is as sent (Node says HTTP)."""

    client_id: str
    language: str = ""
    protocol: str = ""
    version: str = ""
    namespace: str = ""
    request_id: str = ""
    peer: str = ""  # the gRPC peer, "ipv4:127.0.0.1:50000"
    date_time: str = ""
    authorization: str | None = None  # None: not sent

    @property
    def remoting_language(self) -> str:
        """The remoting LanguageCode name admin views show; unknown languages are OTHER."""
        return self.language if self.language in LANGUAGE_CODES else "OTHER"

    @property
    def peer_address(self) -> str:
        """The peer as host:port (the form remoting connections give), without the scheme."""
        scheme, sep, rest = self.peer.partition(":")
        return rest if sep and scheme in ("ipv4", "ipv6", "unix") else self.peer


_current: contextvars.ContextVar[ClientHeaders] = contextvars.ContextVar("grpc_client_headers")


def _printable(value: str) -> bool:
    return value.isprintable() and value == value.strip()


def read(context: grpc.aio.ServicerContext) -> ClientHeaders:
    """The call's headers, checked: a missing, blank or unprintable client id is 40017
    CLIENT_ID_REQUIRED (the id keys every table, so it must be a plain short string); other
    values longer than VALUE_MAX_LENGTH are cut, never refused (clients only log errors)."""
    values: dict[str, str] = {}
    authorization = None
    for key, value in context.invocation_metadata() or ():
        if isinstance(value, str) and key.startswith("x-mq-"):
            values[key] = value[:VALUE_MAX_LENGTH]
        elif key == AUTHORIZATION and isinstance(value, str):
            authorization = value[:AUTHORIZATION_MAX_LENGTH]
    client_id = values.get(CLIENT_ID, "")
    if not client_id or len(client_id) > CLIENT_ID_MAX_LENGTH or not _printable(client_id):
        raise GrpcError(Code.CLIENT_ID_REQUIRED,
                        "x-mq-client-id is required: a non-blank printable string of at most "
                        f"{CLIENT_ID_MAX_LENGTH} characters")
    return ClientHeaders(client_id=client_id, language=values.get(LANGUAGE, ""),
                         protocol=values.get(PROTOCOL, ""),
                         version=values.get(CLIENT_VERSION, ""),
                         namespace=values.get(NAMESPACE, ""),
                         request_id=values.get(REQUEST_ID, ""), peer=context.peer() or "",
                         date_time=values.get(DATE_TIME, ""), authorization=authorization)


def enter(context: grpc.aio.ServicerContext) -> ClientHeaders:
    """read(), and remember the result for the handler of this call (current())."""
    headers = read(context)
    _current.set(headers)
    return headers


def current() -> ClientHeaders:
    """The headers of the call being handled (set by the service wrapper before every
    handler; each gRPC call runs in its own task, hence its own context)."""
    return _current.get()

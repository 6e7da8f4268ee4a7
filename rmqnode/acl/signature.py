"""The request signature of RocketMQ's plain ACL, as AclClientRPCHook computes it and
PlainAccessValidator checks it: one definition for the broker's check and rmqctl's signing.

The signed content is the values of every ext field except `Signature` (and
`_UNIQUE_KEY_QUERY`, which Java clients add outside the signed header and the broker leaves
out), concatenated in the order of their names (Java's TreeMap, i.e. String.compareTo: UTF-16
code units), then the body; the signature is Base64(HMAC-SHA1(secretKey, content)), keys and
values in UTF-8.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

ACCESS_KEY = "AccessKey"
SECRET_KEY = "SecretKey"
SIGNATURE = "Signature"
SECURITY_TOKEN = "SecurityToken"
UNIQUE_MSG_QUERY_FLAG = "_UNIQUE_KEY_QUERY"  # MixAll.UNIQUE_MSG_QUERY_FLAG
_UNSIGNED = (SIGNATURE, UNIQUE_MSG_QUERY_FLAG)


def _java_order(name: str) -> bytes:
    """Sorting key equal to Java's String.compareTo (code units, not code points)."""
    return name.encode("utf-16-be", "surrogatepass")


# Field name sets remembered in their signed order: at most this many, of at most this many
# characters in all (so that hostile headers cannot make the cache hold much).
_CACHED_SETS = 1024
_CACHED_SET_CHARS = 4096
_orders: dict[tuple[str, ...], tuple[str, ...]] = {}


def _order(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(n for n in sorted(names, key=_java_order) if n not in _UNSIGNED)


def _signed_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """The names whose values are signed, in Java's order. Cached: a client sends the same
    field names request after request (a send's hot path on the broker), so a known set is
    one dict lookup; a full cache is emptied (new sets beyond it are rare: a client's
    request kinds)."""
    order = _orders.get(names)
    if order is None:
        order = _order(names)
        if sum(map(len, names)) <= _CACHED_SET_CHARS:
            if len(_orders) >= _CACHED_SETS:
                _orders.clear()
            _orders[names] = order
    return order


def _signed_fields(fields: Mapping[str, str]) -> bytes:
    return "".join([fields[name] for name in _signed_names(tuple(fields))]).encode(
        "utf-8", "surrogatepass")


def signed_content(fields: Mapping[str, str], body: bytes | None) -> bytes:
    """The bytes AclUtils.combineRequestContent builds for a request's ext fields and body
    (PlainAccessValidator.parse leaves out Signature and _UNIQUE_KEY_QUERY)."""
    return _signed_fields(fields) + (body or b"")


# HMAC (RFC 2104) with each key's padded inner and outer SHA-1 states kept: a signature is
# then two hash copies and updates (1.3 us), where hmac.digest re-keys each time (3.4 us), a
# good part of the broker's cost of a signed send.
_BLOCK = 64
_KEYS = 256


@lru_cache(maxsize=_KEYS)
def _keyed(secret_key: str) -> tuple[Any, Any]:
    key = secret_key.encode("utf-8", "surrogatepass")
    if len(key) > _BLOCK:
        key = hashlib.sha1(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return (hashlib.sha1(bytes(b ^ 0x36 for b in key)),
            hashlib.sha1(bytes(b ^ 0x5C for b in key)))


def _hmac_sha1(secret_key: str, *parts: bytes) -> bytes:
    inner_start, outer_start = _keyed(secret_key)
    inner = inner_start.copy()
    for part in parts:
        inner.update(part)
    outer = outer_start.copy()
    outer.update(inner.digest())
    return outer.digest()


def signature(content: bytes, secret_key: str) -> str:
    """AclSigner.calSignature: Base64 of HMAC-SHA1 over content with the secret key."""
    return base64.b64encode(_hmac_sha1(secret_key, content)).decode("ascii")


def sign(fields: dict[str, str], body: bytes | None, access_key: str, secret_key: str,
         security_token: str | None = None) -> None:
    """Add AccessKey (and SecurityToken) and the Signature to a request's ext fields, as
    AclClientRPCHook.doBeforeRequest does."""
    fields[ACCESS_KEY] = access_key
    if security_token is not None:
        fields[SECURITY_TOKEN] = security_token
    fields[SIGNATURE] = signature(signed_content(fields, body), secret_key)


def verify(fields: Mapping[str, str], body: bytes | None, secret_key: str) -> bool:
    """True when the request's Signature is the one its fields and body give under the key
    (compared in constant time)."""
    mac = _hmac_sha1(secret_key, _signed_fields(fields), body or b"")
    return hmac.compare_digest(binascii.b2a_base64(mac, newline=False),
                               str(fields.get(SIGNATURE, "")).encode())

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
import hashlib
import hmac
from collections.abc import Mapping
from functools import lru_cache

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


def _order(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(n for n in sorted(names, key=_java_order) if n not in _UNSIGNED)


_cached_order = lru_cache(maxsize=_CACHED_SETS)(_order)


def _signed_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """The names whose values are signed, in Java's order. Cached: a client sends the same
    field names request after request (a send's hot path on the broker)."""
    if sum(map(len, names)) > _CACHED_SET_CHARS:
        return _order(names)
    return _cached_order(names)


def signed_content(fields: Mapping[str, str], body: bytes | None) -> bytes:
    """The bytes AclUtils.combineRequestContent builds for a request's ext fields and body
    (PlainAccessValidator.parse leaves out Signature and _UNIQUE_KEY_QUERY)."""
    text = "".join([fields[name] for name in _signed_names(tuple(fields))])
    return text.encode("utf-8", "surrogatepass") + (body or b"")


def signature(content: bytes, secret_key: str) -> str:
    """AclSigner.calSignature: Base64 of HMAC-SHA1 over content with the secret key."""
    mac = hmac.new(secret_key.encode("utf-8", "surrogatepass"), content, hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


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
    expected = signature(signed_content(fields, body), secret_key)
    return hmac.compare_digest(expected.encode(), str(fields.get(SIGNATURE, "")).encode())

"""The order in which a Java 4.9.8 broker writes a message's properties.

The broker keeps properties in a java.util.HashMap and stores
MessageDecoder.messageProperties2String(map), which walks the map's table: bucket by bucket,
and in a bucket in the order the keys went in. The stored bytes are therefore Java's only if
the properties are written in that order, whatever order the client sent them in. A dict here
holds the keys in the order Java put them (a put of a present key keeps its place, a remove and
put moves it last), and `java_order` lays them out as the HashMap's table would.
"""

from __future__ import annotations

from functools import lru_cache

from rmqnode.message import encode_properties, java_hash
from rmqnode.speedups import accelerate

_LOAD_FACTOR = 0.75
_INITIAL_CAPACITY = 16
_TREEIFY_THRESHOLD = 8  # a bucket this long (plus one) resizes a table under 64 instead


@lru_cache(maxsize=1024)
def _spread(key: str) -> int:
    """HashMap.hash: the hash code's high half folded into the low half. Cached: property
    names repeat from message to message."""
    h = java_hash(key) & 0xFFFFFFFF
    return h ^ (h >> 16)


def _capacity(hashes: list[int], peak: int) -> int:
    """The table size after `peak` entries went in: doubled each time the count passed
    0.75 of it, and (below 64) each time one bucket grew past eight entries."""
    capacity = _INITIAL_CAPACITY
    while peak > capacity * _LOAD_FACTOR:
        capacity *= 2
    while capacity < 64:
        counts: dict[int, int] = {}
        for h in hashes:
            counts[h & capacity - 1] = counts.get(h & capacity - 1, 0) + 1
        if max(counts.values(), default=0) <= _TREEIFY_THRESHOLD:
            break
        capacity *= 2
    return capacity


@lru_cache(maxsize=256)  # bounded: a client may send 32 KB of property names
def _walk(keys: tuple[str, ...], peak: int) -> tuple[str, ...]:
    """The keys in the order the HashMap's table holds them. Cached: a producer sends the same
    property names message after message, only their values change (a send's hot path)."""
    hashes = [_spread(k) for k in keys]
    mask = _capacity(hashes, max(peak, len(keys))) - 1
    order = sorted(range(len(keys)), key=lambda i: hashes[i] & mask)  # stable: in-bucket order
    return tuple(keys[i] for i in order)


def java_order(props: dict[str, str], peak: int = 0) -> dict[str, str]:
    """`props` in Java HashMap iteration order. `peak` is the most entries the map ever held,
    when more than it holds now (the table never shrinks: a send's WAIT, removed before the
    properties are written, still counted when the table grew)."""
    return {k: props[k] for k in _walk(tuple(props), peak)}


def properties_string(props: dict[str, str], peak: int = 0) -> str:
    """messageProperties2String of the HashMap holding `props`: what the CommitLog keeps."""
    return encode_properties(props, _walk(tuple(props), peak))


properties_string = accelerate(properties_string)  # per send: csrc/send.c

"""What the accelerator's tests (tests/test_speedups*.py) share: both implementations of a
function called on the same input and held to the same outcome, and the inputs several of
them draw on (the Java 4.9.8 store's records, random text, mutated bytes)."""

from __future__ import annotations

import os
import random
import struct
from contextlib import contextmanager

from rmqnode import speedups
from rmqnode.storage.records import Blank, decode_record
from wire import flows, frames

ALL_FRAMES = [f for flow in flows() for f in frames(flow)]


def outcome(fn, *args, **kwargs):
    """What a call gives: its result with the result's type, or its exception's type and text."""
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - every exception is compared
        return "raised", type(exc), str(exc)
    return "returned", type(result), result


def same(name: str, *args, **kwargs):
    """Both implementations of `name` on the same input: equal outcomes; the outcome."""
    pure = outcome(speedups.PURE[name], *args, **kwargs)
    native = outcome(speedups.NATIVE[name], *args, **kwargs)
    assert native == pure, (name, args, kwargs)
    return pure


@contextmanager
def counted_fallbacks(name: str):
    """The pure `name`, bound as its twin's fallback, counting its calls (their arguments):
    a test that the compiled path, not the fallback, did the common case."""
    calls = []

    def counting(*args):
        calls.append(args)
        return speedups.PURE[name](*args)

    speedups.native.bind(name, counting)
    try:
        yield calls
    finally:
        speedups.native.bind(name, speedups.PURE[name])


def same_with_odd_arguments(name: str, base, odd: dict) -> None:
    """`same` on `base()` (the arguments of a good call, fresh for each) with one argument
    at a time replaced by each odd value of odd[position], then with one argument too few
    and one too many."""
    for at, values in odd.items():
        for value in values:
            args = list(base())
            args[at] = value
            same(name, *args)
    good = list(base())
    same(name, *good[:-1])
    same(name, *good, 1)


def same_in_place(name: str, buf: bytearray, *args):
    """`same` for a function that writes into `buf`: each implementation gets its own copy,
    and both copies must end equal; the outcome and the written bytes."""
    mine = bytearray(buf)
    pure = outcome(speedups.PURE[name], mine, *args)
    theirs = bytearray(buf)
    native = outcome(speedups.NATIVE[name], theirs, *args)
    assert (native, theirs) == (pure, mine), (name, args)
    return pure, mine


def java_records(root):
    for name in sorted(os.listdir(root / "commitlog")):
        data = (root / "commitlog" / name).read_bytes()
        pos = 0
        while (rec := decode_record(data, pos, int(name))) is not None \
                and not isinstance(rec, Blank):
            yield data[pos:pos + rec.store_size], rec
            pos += rec.store_size


ALPHABET = ["a", "Z", "\x01", "\x02", "\x00", '"', "\\", "\n", "\x1f", "\x7f", "\u00e9",
            "\u65e5", "\U0001f600", "\ud800", "\udfff"]


def random_text(rng: random.Random, n: int = 12) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(n)))


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    choice = rng.randrange(4)
    if choice == 0 and out:
        for _ in range(rng.randrange(1, 4)):
            out[rng.randrange(min(len(out), 64))] = rng.randrange(256)
    elif choice == 1:
        del out[rng.randrange(len(out) + 1):]
    elif choice == 2 and len(out) >= 4:
        at = rng.randrange(0, min(len(out), 40) - 3)
        out[at:at + 4] = struct.pack(">i", rng.choice([-1, 0, 3, 0x7FFFFFFF, -2**31, 0x1000000,
                                                       len(out), len(out) + 1]))
    else:
        out[rng.randrange(len(out) + 1):] = bytes(rng.randrange(256) for _ in range(8))
    return bytes(out)

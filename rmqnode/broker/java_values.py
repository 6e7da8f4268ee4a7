"""Java's value semantics as SQL92 selectors meet them (module `filter` of 4.9.8): Integer,
Long and Double parsed from property strings as Integer.valueOf, Long.valueOf and
Double.valueOf do, ComparisonExpression's conversions between the two sides, Double's total
order, and constants shown as Java's toString shows them. Kept apart from the parser
(broker/sql92.py), which only builds the tree these evaluate with.
"""

from __future__ import annotations

import re
import struct
from decimal import Decimal

NUMBER_FORMAT = "java.lang.NumberFormatException"


class EvalError(Exception):
    """What Java throws while evaluating (a failed number conversion): the message is not
    selected."""


class Long(int):
    """A Java Long: Integer and Long convert strings within different ranges."""


_INT_TEXT = re.compile(r"[+-]?(\d+)")
_DOUBLE_TEXT = re.compile(r"[+-]?(?:NaN|Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)[fFdD]?",
                          re.ASCII)
_HEX_DOUBLE_TEXT = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)"
                              r"[pP][+-]?\d+[fFdD]?")
_INT_BITS = {int: 31, Long: 63}


def _parse_int(text: str, kind: type[int]) -> int:
    """Integer.valueOf / Long.valueOf: a sign and decimal digits, within 32 or 64 bits."""
    match = _INT_TEXT.fullmatch(text)
    # leading zeros are legal; more than 19 other digits never fit (and int() refuses 4300)
    if match and len(match.group(1).lstrip("0")) <= 19:
        value = int(text)
        bound = 1 << _INT_BITS[kind]
        if -bound <= value < bound:
            return kind(value)
    raise EvalError(f'{NUMBER_FORMAT}: For input string: "{text}"')


def parse_double(text: str) -> float:
    """Double.valueOf: trimmed, NaN, Infinity, decimal or hex notation, a d/f suffix."""
    trimmed = text.strip("".join(map(chr, range(33))))
    if _DOUBLE_TEXT.fullmatch(trimmed):
        return float(trimmed.rstrip("fFdD"))
    if _HEX_DOUBLE_TEXT.fullmatch(trimmed):
        return float.fromhex(trimmed.rstrip("fFdD"))
    raise EvalError(f'{NUMBER_FORMAT}: For input string: "{text}"')


def _double_bits(value: float) -> int:
    """Double.doubleToLongBits: one NaN, and -0.0 below 0.0."""
    if value != value:
        return 0x7FF8000000000000
    return int(struct.unpack(">q", struct.pack(">d", value))[0])


def _sign(a: object, b: object) -> int:
    if type(a) is float:
        if a < b:  # type: ignore[operator]
            return -1
        if a > b:  # type: ignore[operator]
            return 1
        # Double.compareTo: -0.0 < 0.0, NaN equals NaN and is above everything
        x, y = _double_bits(a), _double_bits(b)  # type: ignore[arg-type]
        return (x > y) - (x < y)
    return (a > b) - (a < b)  # type: ignore[operator]


def java_compare(lv: object, rv: object) -> int:
    """ComparisonExpression.__compare with convertStringExpressions (the parser always sets
    it): the right side converted to the left's type or widened, a string converted to the
    other side's type; pairs Java does not convert compare as -1."""
    lc, rc = type(lv), type(rv)
    if lc is not rc:
        if lc is str:
            if rc is bool:
                lv = lv.lower() == "true"  # type: ignore[union-attr]
            elif rc is float:
                lv = parse_double(lv)  # type: ignore[arg-type]
            else:
                lv = _parse_int(lv, rc)  # type: ignore[arg-type]
        elif rc is str:
            if lc is bool:  # Java casts the Boolean itself to String: ClassCastException
                raise EvalError("java.lang.ClassCastException")
            rv = parse_double(rv) if lc is float else _parse_int(rv, lc)  # type: ignore
        elif lc is bool or rc is bool:
            return -1
        elif lc is float or rc is float:
            lv, rv = float(lv), float(rv)  # type: ignore[arg-type]
    return _sign(lv, rv)


def java_text(value: object) -> str:
    """A constant as Java's toString shows it in a message (Double.toString's notation)."""
    if value is None:
        return "NULL"
    if type(value) is bool:
        return "TRUE" if value else "FALSE"
    if type(value) is str:
        return "'" + value.replace("'", "''") + "'"
    if type(value) is float and (1e-3 > abs(value) or abs(value) >= 1e7):
        # literals are finite and positive; Java writes these as 1.0E7, 1.5E-5
        _, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
        shown = "".join(map(str, digits))
        return f"{shown[0]}.{shown[1:] or '0'}E{len(shown) - 1 + int(exponent)}"
    return str(value)

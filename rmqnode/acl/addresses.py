"""Remote address patterns of plain_acl.yml (`globalWhiteRemoteAddresses`, an account's
`whiteRemoteAddress`), matched as RemoteAddressStrategyFactory matches them in 4.9.8.

Patterns: blank (matches nothing), `*` / `*.*.*.*` / `*:*:*:*:*:*:*:*` (everything), one
address, `a,b,c` and `a.b.c.{1,2}` (a set), `a.b.c.*`, `a.b.*.*`, `a.b.c.1-100` (a range in
the first part that holds `*` or `-`), and the IPv6 forms of each (`2001:db8::{1,2}`,
`2001:db8::1-ff`, `2001:db8:1:*`). IPv6 addresses are compared in Java's expanded upper-case
form (`0000:...:0001`). A pattern Java refuses raises ValueError with Java's reason.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

Matcher = Callable[[str], bool]
_ANYWHERE = ("*", "*.*.*.*", "*:*:*:*:*:*:*:*")


def is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def expand_ip(address: str, parts: int) -> str:
    """AclUtils.expandIP: `::` widened to fill `parts` groups, each group padded to 4
    digits, upper case (an IPv4 address comes back as it was, upper-cased)."""
    address = address.upper()
    pad = parts - address.count(":")
    if pad > 0:
        address = address.replace("::", ":" * (pad + 1))
    return ":".join(group.rjust(4, "0") for group in address.split(":"))


def remote_host(peer: str) -> str:
    """The host of a connection's `host:port`, as PlainAccessValidator takes it (up to the
    last colon); an IPv4-mapped IPv6 host is its IPv4 address, as Java's InetAddress has it."""
    host = peer.rpartition(":")[0] if ":" in peer else peer
    if host.lower().startswith("::ffff:") and is_ipv4(host[7:]):
        return host[7:]
    return host


def _tokens(text: str, sep: str) -> list[str]:
    """StringUtils.split: the pieces between separators, empty ones dropped."""
    return [t for t in text.split(sep) if t]


def _one(address: str) -> Matcher:
    if not (is_ipv4(address) or is_ipv6(address)):
        raise ValueError(f"Netaddress examine Exception netaddress is {address}")
    wanted = expand_ip(address, 8)
    return lambda host: expand_ip(host, 8) == wanted


def _set(addresses: list[str]) -> Matcher:
    members = set()
    for address in addresses:
        if is_ipv4(address):
            members.add(address)
        elif is_ipv6(address):
            members.add(expand_ip(address, 8))
        else:
            raise ValueError(f"Netaddress examine Exception netaddress is {address}")
    return lambda host: (expand_ip(host, 8) if is_ipv6(host) else host) in members


def _braces(pattern: str) -> Matcher:
    """`a.b.c.{1,2}` or `2001:db8::{1,2}`: the prefix with each listed last part."""
    sep = ":" if ":" in pattern else "."
    parts = _tokens(pattern, sep)
    if sep == "." and len(parts) < 4:
        raise ValueError(f"MultipleRemoteAddressStrategy has got a/some wrong format IP(s) "
                         f"{pattern}")
    if not parts[-1].startswith("{"):
        raise ValueError(f"MultipleRemoteAddressStrategy netaddress examine scope Exception "
                         f"netaddress {pattern}")
    prefix = pattern[:pattern.index("{")]
    return _set([prefix + last for last in _tokens(parts[-1][1:-1], ",")])


def _bounds(value: str, base: int, top: int, pattern: str) -> tuple[int, int] | None:
    """A part's range: `*` is all of it, `lo-hi` those; None for a plain number."""
    if value == "*":
        return 0, top
    if "-" not in value:
        return None
    if value.startswith("-"):
        raise ValueError(f"RangeRemoteAddressStrategy netaddress examine scope Exception value "
                         f"{value}")
    lo_text, hi_text = (_tokens(value, "-") + ["", ""])[:2]
    try:
        lo, hi = int(lo_text, base), int(hi_text, base)
    except ValueError:
        raise ValueError(f"Netaddress examine scope Exception netaddress is {pattern}") from None
    if not (0 <= lo <= hi <= top):
        raise ValueError(f"RangeRemoteAddressStrategy netaddress examine scope Exception start "
                         f"is {lo} , end is {hi}")
    return lo, hi


def _range_v4(pattern: str) -> Matcher:
    parts = [p.strip() for p in _tokens(pattern, ".")]
    for index in (1, 2, 3):
        found = _bounds(parts[index], 10, 255, pattern) if index < len(parts) else None
        if found is not None and found[1] > 0:
            break
    else:
        raise ValueError(f"Netaddress examine scope Exception netaddress is {pattern}")
    if len(parts) != 4 or not all(p.isdigit() and int(p) <= 255 for p in parts[:index]):
        raise ValueError(f"Netaddress examine scope Exception netaddress is {pattern}")
    head, (lo, hi) = ".".join(parts[:index]) + ".", found

    def match(host: str) -> bool:
        if not (is_ipv4(host) and host.startswith(head)):
            return False
        return lo <= int(host.split(".")[index]) <= hi
    return match


def _range_v6(pattern: str) -> Matcher:
    star, minus = pattern.find("*"), pattern.find("-")
    bad = ValueError(f"Netaddress examine scope Exception netaddress is {pattern}")
    if star > -1 and star != len(pattern) - 1:
        raise bad
    last = pattern.rfind(":")
    if minus > -1 and minus <= (last if star == -1 else pattern.rfind(":", 0, last)):
        raise bad
    parts = _tokens(pattern, ":")
    for index in range(1, len(parts)):
        found = _bounds(parts[index].strip(), 16, 0xFFFF, pattern)
        if found is not None and found[1] > 0:
            break
    else:
        raise bad
    try:
        if not all(0 <= int(p, 16) <= 0xFFFF for p in expand_ip(pattern, 8).split(":")[:index - 1]):
            raise bad
    except ValueError:
        raise bad from None
    # AclUtils.v6ipProcess: the groups before the ranged one(s), expanded
    if star > -1 and minus > -1:
        head = expand_ip(pattern[:pattern.rfind(":", 0, last)], 6)
    elif star > -1 or minus > -1:
        head = expand_ip(pattern[:last], 7)
    else:
        head = expand_ip(pattern, 8)
    position = len(head.split(":"))
    lo, hi = found

    def match(host: str) -> bool:
        if not is_ipv6(host):
            return False
        full = expand_ip(host, 8)
        if not full.startswith(head):
            return False
        return lo <= int(full[5 * position:5 * position + 4], 16) <= hi
    return match


def matcher(pattern: str | None) -> Matcher:
    """RemoteAddressStrategyFactory.getRemoteAddressStrategy: what a pattern lets through."""
    if pattern is None or not pattern.strip():
        return lambda host: False
    if pattern in _ANYWHERE:
        return lambda host: True
    if pattern.endswith("}"):
        return _braces(pattern)
    if "," in pattern:
        return _set(_tokens(pattern, ","))
    if "*" in pattern or "-" in pattern:
        return _range_v6(pattern) if ":" in pattern else _range_v4(pattern)
    return _one(pattern)

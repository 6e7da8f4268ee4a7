"""LZ4 frames, the format RocketMQ 5.x producers write when compressType is LZ4 (lz4-java's
LZ4FrameOutputStream). Pure Python: the broker stores bodies as sent and never inflates them;
rmqctl inflates one to show it and compresses one for `send --compress lz4`, so a C
dependency for the rare LZ4 body is not worth it. Checksums are verified on the way in, so a
damaged body is an error, not garbage.

Format: https://github.com/lz4/lz4/blob/dev/doc/lz4_Frame_format.md (frame) and
lz4_Block_format.md (sequences of literals and back references).
"""

from __future__ import annotations

import struct

MAGIC = 0x184D2204
_SKIPPABLE = range(0x184D2A50, 0x184D2A60)
_U32 = struct.Struct("<I")

_BLOCK = 64 * 1024  # block maximum size written (BD 4); readers accept all sizes
_MIN_MATCH, _LAST_LITERALS, _MATCH_LIMIT = 4, 5, 12  # the block format's end-of-block rules
_P1, _P2, _P3, _P4, _P5 = 2654435761, 2246822519, 3266489917, 668265263, 374761393
_M32 = 0xFFFFFFFF


class LZ4Error(ValueError):
    """Not a valid LZ4 frame; the message says what is wrong and where."""


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _M32


def xxh32(data: bytes | bytearray | memoryview, seed: int = 0) -> int:
    """XXH32, the checksum the LZ4 frame format uses for headers, blocks and content."""
    n = len(data)
    pos = 0
    if n >= 16:
        v = [(seed + _P1 + _P2) & _M32, (seed + _P2) & _M32, seed, (seed - _P1) & _M32]
        words = struct.unpack_from(f"<{(n // 16) * 4}I", data)
        for i in range(0, len(words), 4):
            for lane in range(4):
                v[lane] = (_rotl((v[lane] + words[i + lane] * _P2) & _M32, 13) * _P1) & _M32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _M32
        pos = (n // 16) * 16
    else:
        h = (seed + _P5) & _M32
    h = (h + n) & _M32
    while pos + 4 <= n:
        h = (_rotl((h + _U32.unpack_from(data, pos)[0] * _P3) & _M32, 17) * _P4) & _M32
        pos += 4
    while pos < n:
        h = (_rotl((h + data[pos] * _P5) & _M32, 11) * _P1) & _M32
        pos += 1
    h = ((h ^ (h >> 15)) * _P2) & _M32
    h = ((h ^ (h >> 13)) * _P3) & _M32
    return h ^ (h >> 16)


def _length(src: memoryview, pos: int, base: int, where: int) -> tuple[int, int]:
    """A literal or match length: 15 in the token means more bytes follow, each added, until
    one is not 255."""
    if base != 15:
        return base, pos
    while True:
        if pos >= len(src):
            raise LZ4Error(f"block at {where}: length runs past the end")
        byte = src[pos]
        pos += 1
        base += byte
        if byte != 255:
            return base, pos


def decompress_block(src: memoryview, out: bytearray, where: int) -> None:
    """Append one LZ4 block's bytes to `out`; back references may reach into what `out`
    already holds (linked blocks)."""
    pos, end = 0, len(src)
    while pos < end:
        token = src[pos]
        pos += 1
        literals, pos = _length(src, pos, token >> 4, where)
        if pos + literals > end:
            raise LZ4Error(f"block at {where}: literals run past the end")
        out += src[pos:pos + literals]
        pos += literals
        if pos == end:
            return  # the last sequence has literals only
        if pos + 2 > end:
            raise LZ4Error(f"block at {where}: match offset cut off")
        offset = src[pos] | src[pos + 1] << 8
        pos += 2
        length, pos = _length(src, pos, token & 15, where)
        length += 4
        if offset == 0 or offset > len(out):
            raise LZ4Error(f"block at {where}: match offset {offset} is outside the output")
        start = len(out) - offset
        if length <= offset:
            out += out[start:start + length]
        else:  # overlapping: the last `offset` bytes repeat
            pattern = out[start:]
            out += (pattern * (length // offset + 1))[:length]


def decompress(data: bytes | bytearray | memoryview) -> bytes:
    """The content of one or more concatenated LZ4 frames (skippable frames are skipped)."""
    src = memoryview(data)
    out = bytearray()
    pos = 0
    while pos < len(src):
        if pos + 4 > len(src):
            raise LZ4Error(f"frame at {pos}: truncated magic number")
        magic = _U32.unpack_from(src, pos)[0]
        if magic in _SKIPPABLE:
            if pos + 8 > len(src):
                raise LZ4Error(f"skippable frame at {pos}: truncated size")
            pos += 8 + _U32.unpack_from(src, pos + 4)[0]
            continue
        if magic != MAGIC:
            raise LZ4Error(f"frame at {pos}: magic {magic:#010x} is not LZ4's {MAGIC:#010x}")
        pos = _frame(src, pos, out)
    return bytes(out)


def _frame(src: memoryview, start: int, out: bytearray) -> int:
    """Inflate the frame at `start` into `out`; returns where the next frame begins."""
    pos = start + 4
    if pos + 3 > len(src):
        raise LZ4Error(f"frame at {start}: truncated descriptor")
    flg = src[pos]
    if flg >> 6 != 1:
        raise LZ4Error(f"frame at {start}: version {flg >> 6} is not 1")
    block_checksum, has_size, content_checksum, has_dict = \
        flg & 0x10, flg & 0x08, flg & 0x04, flg & 0x01
    descriptor_end = pos + 2 + (8 if has_size else 0) + (4 if has_dict else 0)
    if descriptor_end + 1 > len(src):
        raise LZ4Error(f"frame at {start}: truncated descriptor")
    if has_dict:
        raise LZ4Error(f"frame at {start}: needs a dictionary, which RocketMQ never uses")
    if (xxh32(src[pos:descriptor_end]) >> 8) & 0xFF != src[descriptor_end]:
        raise LZ4Error(f"frame at {start}: header checksum does not match")
    content_size = struct.unpack_from("<Q", src, pos + 2)[0] if has_size else None
    pos = descriptor_end + 1
    began = len(out)
    while True:
        if pos + 4 > len(src):
            raise LZ4Error(f"frame at {start}: block at {pos} is cut off")
        word = _U32.unpack_from(src, pos)[0]
        pos += 4
        if word == 0:
            break  # end mark
        size = word & 0x7FFFFFFF
        if pos + size + (4 if block_checksum else 0) > len(src):
            raise LZ4Error(f"frame at {start}: block at {pos - 4} runs past the end")
        block = src[pos:pos + size]
        if block_checksum and xxh32(block) != _U32.unpack_from(src, pos + size)[0]:
            raise LZ4Error(f"frame at {start}: checksum of block at {pos - 4} does not match")
        if word & 0x80000000:
            out += block  # stored uncompressed
        else:
            decompress_block(block, out, pos - 4)
        pos += size + (4 if block_checksum else 0)
    if content_checksum:
        if pos + 4 > len(src):
            raise LZ4Error(f"frame at {start}: content checksum is cut off")
        if xxh32(memoryview(out)[began:]) != _U32.unpack_from(src, pos)[0]:
            raise LZ4Error(f"frame at {start}: content checksum does not match")
        pos += 4
    if content_size is not None and len(out) - began != content_size:
        raise LZ4Error(f"frame at {start}: {len(out) - began} bytes inflated, header says "
                       f"{content_size}")
    return pos


def _put_length(out: bytearray, extra: int) -> None:
    out += b"\xff" * (extra // 255)
    out.append(extra % 255)


def _sequence(out: bytearray, literals: memoryview, offset: int, match: int) -> None:
    """One sequence: token, literal length, literals, then (unless last) offset and length."""
    lit = len(literals)
    code = match - _MIN_MATCH if offset else 0
    out.append((min(lit, 15) << 4) | min(code, 15))
    if lit >= 15:
        _put_length(out, lit - 15)
    out += literals
    if offset:
        out += offset.to_bytes(2, "little")
        if code >= 15:
            _put_length(out, code - 15)


def compress_block(src: bytes) -> bytes:
    """A greedy LZ4 block: each 4-byte sequence seen is remembered, the latest earlier one
    within reach (64 KiB) is extended as far as it matches. Not lz4's ratio, but valid and
    readable by any LZ4 reader."""
    n = len(src)
    view = memoryview(src)
    out = bytearray()
    seen: dict[bytes, int] = {}
    anchor = pos = 0
    while pos < n - _MATCH_LIMIT:
        key = src[pos:pos + 4]
        candidate = seen.get(key)
        seen[key] = pos
        if candidate is None or pos - candidate > 0xFFFF:
            pos += 1
            continue
        longest = n - _LAST_LITERALS - pos
        length = _MIN_MATCH
        while length + 32 <= longest and (src[candidate + length:candidate + length + 32]
                                          == src[pos + length:pos + length + 32]):
            length += 32  # a slice compare runs in C: long matches are common in bodies
        while length < longest and src[candidate + length] == src[pos + length]:
            length += 1
        _sequence(out, view[anchor:pos], pos - candidate, length)
        pos += length
        anchor = pos
    _sequence(out, view[anchor:], 0, 0)
    return bytes(out)


def compress(data: bytes | bytearray | memoryview) -> bytes:
    """One LZ4 frame: independent 64 KiB blocks (stored raw where LZ4 would not shrink
    them) and a content checksum."""
    data = bytes(data)  # block slices become dict keys
    descriptor = bytes((0x64, 0x40))  # version 1, independent blocks, content checksum; 64 KiB
    out = bytearray(_U32.pack(MAGIC) + descriptor)
    out.append((xxh32(descriptor) >> 8) & 0xFF)
    for start in range(0, len(data), _BLOCK):
        raw = data[start:start + _BLOCK]
        packed = compress_block(raw)
        if len(packed) < len(raw):
            out += _U32.pack(len(packed)) + packed
        else:
            out += _U32.pack(len(raw) | 0x80000000) + raw
    out += _U32.pack(0)
    out += _U32.pack(xxh32(data))
    return bytes(out)

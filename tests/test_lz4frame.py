"""LZ4 frames (RocketMQ 5.x compressType LZ4) against the reference implementation: PyPI lz4,
the Python binding of the lz4 C library, inflates what we write and we inflate what it writes,
whatever frame options it used."""

from __future__ import annotations

import os
import random

import lz4.frame
import pytest

from rmqnode import lz4frame
from rmqnode.message import (COMPRESSED_FLAG, COMPRESSION_LZ4, CompressionError, compress,
                             decompress)

rng = random.Random(7)
SAMPLES = {
    "empty": b"",
    "one byte": b"a",
    "short": b"abcdefghijklm",
    "repeated line": b"hello world " * 1000,
    "random": os.urandom(70_000),
    "long run": b"a" * 100_000,
    "small alphabet, 2 blocks": bytes(rng.choice(b"abcde") for _ in range(130_000)),
    "json": b'{"orderId":%d,"status":"PAID","amount":12.5}' * 2000,
}
OPTIONS = {
    "defaults": {},
    "checksums": {"block_checksum": True, "content_checksum": True},
    "content size": {"store_size": True},
    "linked 64 KiB blocks": {"block_linked": True, "block_size": lz4.frame.BLOCKSIZE_MAX64KB},
    "independent blocks, HC": {"block_linked": False, "compression_level": 12},
    "4 MiB blocks": {"block_size": lz4.frame.BLOCKSIZE_MAX4MB},
}


@pytest.mark.parametrize("name", SAMPLES)
def test_the_reference_reads_what_we_write(name):
    data = SAMPLES[name]
    frame = lz4frame.compress(data)
    assert lz4.frame.decompress(frame) == data
    assert lz4frame.decompress(frame) == data


@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("name", SAMPLES)
def test_we_read_what_the_reference_writes(name, option):
    data = SAMPLES[name]
    assert lz4frame.decompress(lz4.frame.compress(data, **OPTIONS[option])) == data


def test_we_compress_what_compresses():
    data = SAMPLES["json"]
    assert len(lz4frame.compress(data)) < len(data) // 20
    assert len(lz4frame.compress(SAMPLES["random"])) < len(SAMPLES["random"]) + 64  # raw blocks


def test_xxh32_known_values():
    assert lz4frame.xxh32(b"") == 0x02CC5D05
    assert lz4frame.xxh32(b"abc") == 0x32D153FF
    assert lz4frame.xxh32(b"Nobody inspects the spammish repetition") == 0xE2293B2F


def test_damage_is_reported_with_its_place():
    frame = bytearray(lz4.frame.compress(SAMPLES["json"], content_checksum=True))
    with pytest.raises(lz4frame.LZ4Error, match="frame at 0: magic 0x00000000"):
        lz4frame.decompress(bytes(4) + frame[4:])
    with pytest.raises(lz4frame.LZ4Error, match="cut off|runs past"):
        lz4frame.decompress(frame[:len(frame) // 2])
    flipped = bytearray(frame)
    flipped[-5] ^= 0x01  # inside the last block: a different byte comes out
    with pytest.raises(lz4frame.LZ4Error):
        lz4frame.decompress(bytes(flipped))
    header = bytearray(frame)
    header[5] ^= 0x10  # the block-size byte: the header checksum no longer fits
    with pytest.raises(lz4frame.LZ4Error, match="header checksum"):
        lz4frame.decompress(bytes(header))
    # a back reference before the start of the output
    bad_block = bytes((0x10, ord("x"), 0x09, 0x00))
    with pytest.raises(lz4frame.LZ4Error, match="offset 9 is outside"):
        lz4frame.decompress_block(memoryview(bad_block), bytearray(), 7)


def test_message_bodies_with_the_lz4_flag():
    body, flags = compress(b"body " * 500, "lz4")
    assert flags == COMPRESSED_FLAG | COMPRESSION_LZ4
    assert lz4.frame.decompress(body) == b"body " * 500
    assert decompress(body, flags) == b"body " * 500
    with pytest.raises(CompressionError, match="does not inflate"):
        decompress(body[:-6], flags)

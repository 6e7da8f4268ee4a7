"""The HA stream between a master and a slave (Java 4.9.8's HAConnection / HAClient), without
IO: bytes in, values out, and back.

Two one-way byte streams share one TCP connection:
- slave to master: reports, each the slave's CommitLog max offset as 8 big-endian bytes (on
  connect, after each append, every haSendHeartbeatInterval);
- master to slave: chunks, each an 8-byte CommitLog offset, a 4-byte size and that many bytes
  of the master's CommitLog from that offset; size 0 is a heartbeat.

There is no framing beyond that and no version, so a reader must not trust sizes: a chunk
bigger than a Java slave could ever buffer, or a negative size or offset, is a broken peer.
"""

from __future__ import annotations

import struct

REPORT = struct.Struct(">q")
HEADER = struct.Struct(">qi")  # offset, size
HEADER_SIZE = HEADER.size  # 12
# HAClient.READ_MAX_BUFFER_SIZE: a Java slave cannot take a chunk past its 4 MiB buffer.
MAX_CHUNK = 4 * 1024 * 1024 - HEADER_SIZE


class ProtocolError(ValueError):
    """The peer sent something no HA peer sends: the connection is closed."""


def encode_report(offset: int) -> bytes:
    return REPORT.pack(offset)


def encode_header(offset: int, size: int) -> bytes:
    """The 12 bytes before a chunk's data (or alone: a heartbeat, size 0)."""
    return HEADER.pack(offset, size)


class ReportReader:
    """The master's side: the slave's latest reported offset. Reports are fixed-size, so only
    the last complete one of what arrived matters (as HAConnection reads them)."""

    __slots__ = ("_partial",)

    def __init__(self) -> None:
        self._partial = b""

    def feed(self, data: bytes) -> int | None:
        """The last offset completed by `data`, or None if no report completed."""
        buf = self._partial + data if self._partial else data
        whole = len(buf) - len(buf) % REPORT.size
        self._partial = bytes(buf[whole:])
        if whole == 0:
            return None
        (offset,) = REPORT.unpack_from(buf, whole - REPORT.size)
        if offset < 0:
            raise ProtocolError(f"slave reported a negative offset {offset}")
        return offset


class ChunkReader:
    """The slave's side: complete chunks (offset, data) out of the bytes that arrived.

    The bytes land in one fixed buffer that holds the largest legal chunk, received into
    directly (`buffer()` then `received(n)`, for asyncio's BufferedProtocol), so a chunk is
    copied once, from this buffer into the CommitLog. The buffer never changes size, so a
    chunk's data is a view valid until the next `received`."""

    __slots__ = ("_buf", "_view", "_pos", "_end")

    CAPACITY = HEADER_SIZE + MAX_CHUNK

    def __init__(self) -> None:
        self._buf = bytearray(self.CAPACITY)
        self._view = memoryview(self._buf)
        self._pos = 0  # first byte not yet handed out
        self._end = 0  # end of what arrived

    def buffer(self) -> memoryview:
        """Where the next bytes go: never empty."""
        if self._end == self.CAPACITY or self._pos > self.CAPACITY // 2:
            # Move the incomplete chunk to the front (same-size slice assignment: the
            # buffer is never resized, so views handed out stay valid).
            held = self._end - self._pos
            self._buf[:held] = self._view[self._pos:self._end]
            self._pos, self._end = 0, held
        return self._view[self._end:]

    def received(self, count: int) -> list[tuple[int, memoryview]]:
        """`count` bytes were written into `buffer()`: the chunks they complete."""
        self._end += count
        chunks = []
        buf, pos, end = self._buf, self._pos, self._end
        while end - pos >= HEADER_SIZE:
            offset, size = HEADER.unpack_from(buf, pos)
            if offset < 0 or not 0 <= size <= MAX_CHUNK:
                raise ProtocolError(f"master sent a chunk header with offset {offset} "
                                    f"and size {size}")
            if end - pos - HEADER_SIZE < size:
                break
            pos += HEADER_SIZE
            chunks.append((offset, self._view[pos:pos + size]))
            pos += size
        self._pos = pos
        return chunks

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """The chunks `data` completes, copied (for callers that do not receive into the
        buffer)."""
        out: list[tuple[int, bytes]] = []
        data = memoryview(data)
        while data:
            room = self.buffer()
            n = min(len(room), len(data))
            room[:n] = data[:n]
            data = data[n:]
            out += [(offset, bytes(chunk)) for offset, chunk in self.received(n)]
        return out

    @property
    def buffered(self) -> int:
        """Bytes held that are not a complete chunk yet."""
        return self._end - self._pos

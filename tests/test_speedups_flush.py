"""The flush service's native thread (csrc/flush.c) against its Python worker thread: over real
files that roll over, both answer the same waiters in the same order with the same outcome
(on disk, or FLUSH_DISK_TIMEOUT), leave the same flushed offsets, and fail the same way when
an fdatasync fails.

That an answer never comes before the fdatasync covering it cannot be seen from outside
short of pulling the power; what is held here is that both run the same rounds (one
definition, mapped_file.flush_round) and answer from the same offsets."""

from __future__ import annotations

import asyncio
import os

import pytest

from rmqnode import speedups
from rmqnode.storage.flush import GROUP_WAIT, FlushService
from rmqnode.storage.mapped_file import MappedFileQueue

FILE = 16 * 1024
pytestmark = pytest.mark.skipif(speedups.native is None, reason="the accelerator is not built")


def append(files: MappedFileQueue, size: int) -> int:
    """`size` bytes written at the end of the log, a new file started when the last is full;
    the offset just after them."""
    while size:
        mf = files.last_for_append()
        step = min(size, mf.remaining)
        mf.append(bytes([size % 251 + 1]) * step)
        size -= step
    return files.max_offset


def waiters_and_rollover(root, native: bool) -> list:
    """Senders waiting one at a time and in groups, across two file rollovers, one with no
    time to wait; a periodic round with nobody waiting; a crowd of senders; stop with bytes
    left unflushed."""
    async def go():
        files = MappedFileQueue(root, FILE)
        flusher = FlushService(files.flush_round, interval=0.05, native=native)
        flusher.start()
        events = []

        def wait(name, size, timeout=5.0):
            needed = append(files, size)
            flusher.when_flushed(needed, timeout, lambda ok: events.append(
                (name, ok, ok and flusher.flushed_offset >= needed)))

        async def settle():
            while flusher._waiters or flusher._running is not None:
                await asyncio.sleep(0.001)

        wait("one", 100)
        await settle()
        for i in range(3):
            wait(f"group{i}", 5000)
        wait("rolled", 9000)
        wait("hasty", 40, timeout=0.0)  # (answered when its timer fires: before or after)
        await settle()
        events.sort(key=lambda e: e[0] == "hasty")
        events.append(("files", [(mf.file_from_offset, mf.flushed_position)
                                 for mf in files.files]))
        end = append(files, 3000)
        while flusher.flushed_offset < end:  # the periodic round, nobody waiting
            await asyncio.sleep(0.01)
        events.append(("periodic", flusher.flushed_offset))
        for i in range(GROUP_WAIT + 4):  # a crowd: the loop waits for the native round
            wait(f"crowd{i}", 100)
        await settle()
        end = append(files, 20000)
        await flusher.stop()
        events.append(("stopped", end, flusher.flushed_offset, files.flushed_offset))
        files.close()
        return events
    return asyncio.run(go())


def test_native_and_pure_rounds_answer_alike(tmp_path):
    native = waiters_and_rollover(tmp_path / "native", True)
    pure = waiters_and_rollover(tmp_path / "pure", False)
    assert native == pure
    assert native[:5] == [("one", True, True), ("group0", True, True), ("group1", True, True),
                          ("group2", True, True), ("rolled", True, True)]
    assert native[5] == ("hasty", False, False)
    end = 100 + 3 * 5000 + 9000 + 40
    assert native[6:8] == [("files", [(0, FILE), (FILE, end - FILE)]), ("periodic", end + 3000)]
    crowd = [(f"crowd{i}", True, True) for i in range(GROUP_WAIT + 4)]
    assert native[8:] == crowd + [("stopped",) + (end + 3000 + 100 * len(crowd) + 20000,) * 3]


def failing_fdatasync(native: bool) -> list:
    """A round whose fdatasync fails (a pipe has nothing to sync): its waiter times out, the
    next rounds fail alike, and stop says why."""
    async def go():
        read, write = os.pipe()

        def broken():
            yield [read]
            return 1000

        flusher = FlushService(broken, interval=0.02, native=native)
        flusher.start()
        events = []
        flusher.when_flushed(10, 0.2, lambda ok: events.append(("waiter", ok)))
        while not events:
            await asyncio.sleep(0.01)
        events.append(("flushed", flusher.flushed_offset))
        try:
            await flusher.stop()
        except OSError as exc:
            events.append(("stop", type(exc), exc.errno))
        os.close(read)
        os.close(write)
        return events
    return asyncio.run(go())


def test_native_and_pure_fail_alike():
    native = failing_fdatasync(True)
    assert native == failing_fdatasync(False)
    assert native[:2] == [("waiter", False), ("flushed", 0)]
    assert native[2][:2] == ("stop", OSError)


def test_a_closed_flusher_refuses_rounds():
    """The thread is gone after close(): submit says so instead of queueing a round nobody
    runs; a second submit while one is under way is refused."""
    flusher = speedups.native.Flusher()
    read, write = os.pipe()
    try:
        flusher.submit([])
        with pytest.raises(RuntimeError):
            flusher.submit([])
        assert flusher.wait(5.0) is True
        assert isinstance(flusher.result(), float)
        assert flusher.result() is None
        with pytest.raises(OSError):
            flusher.submit([read, -1])
        flusher.submit([read])
        assert flusher.wait(5.0)
        with pytest.raises(OSError):
            flusher.result()
        flusher.close()
        with pytest.raises(ValueError):
            flusher.submit([])
    finally:
        os.close(read)
        os.close(write)

"""Store append throughput against raw sequential writes of the same bytes, in the same run.

    python benchmarks/bench_store.py [--messages 50000] [--dir /tmp]

For 128 B and 1 KiB bodies:
  baseline write()    the encoded records written with os.write, one call per record
  baseline write+sync the same, with fdatasync after every 64 records (what group commit does)
  store async         MessageStore.put_nowait: encode, assign offsets, pwrite into the file,
                      dispatch to the consume queue (ASYNC_FLUSH acks here)
  store sync x64      put_messages under SYNC_FLUSH from 64 concurrent senders (group commit)
Ratios are against the matching baseline; above 1.0 means faster than the plain syscall loop.
"disk/rec" (synced cases, Linux) is what the run made the kernel write to disk per record,
from /proc/self/io: it shows write amplification, such as whole large folios rewritten by
every group commit when a mapping is written without MADV_RANDOM (see MappedFile).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time

from rmqnode.config import BrokerConfig
from rmqnode.message import host_bytes
from rmqnode.storage.records import encode_record
from rmqnode.storage.store import Message, MessageStore

PROPS = {"KEYS": "order-1", "TAGS": "TagA", "UNIQ_KEY": "7F0000011F9C18B4AAC27C4E2A5B0000",
         "WAIT": "true"}


def message(size: int) -> Message:
    return Message(topic="BenchTopic", queue_id=0, body=b"x" * size, properties=dict(PROPS),
                   born_timestamp=int(time.time() * 1000), born_host=host_bytes("127.0.0.1:5555"))


def encoded(size: int) -> bytes:
    m = message(size)
    text = "\x02".join(f"{k}\x01{v}" for k, v in m.properties.items())
    return bytes(encode_record(topic=m.topic, queue_id=0, flag=0, body=m.body, properties=text,
                               sys_flag=0, born_timestamp=m.born_timestamp,
                               born_host=m.born_host, store_timestamp=0,
                               store_host=host_bytes("127.0.0.1:10911")))


def raw_write(path: str, record: bytes, n: int, sync_every: int = 0) -> float:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    start = time.perf_counter()
    for i in range(n):
        os.write(fd, record)
        if sync_every and i % sync_every == sync_every - 1:
            os.fdatasync(fd)
    if sync_every:
        os.fdatasync(fd)
    elapsed = time.perf_counter() - start
    os.close(fd)
    return elapsed


def disk_written() -> int | None:
    """Bytes this process has caused to be written to storage (Linux), or None."""
    try:
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def on_disk(run):
    """(run's result, bytes written to disk meanwhile or None)."""
    before = disk_written()
    result = run()
    after = disk_written()
    return result, (None if before is None or after is None else after - before)


def store_config(root: str, sync: bool) -> BrokerConfig:
    return BrokerConfig(storePathRootDir=root, mappedFileSizeCommitLog=256 * 1024 * 1024,
                        flushDiskType="SYNC_FLUSH" if sync else "ASYNC_FLUSH")


async def store_async(root: str, size: int, n: int) -> float:
    store = MessageStore(store_config(root, False))
    store.open()
    store.start()
    m = message(size)
    start = time.perf_counter()
    for i in range(n):
        store.put_nowait([m])
        if i % 256 == 255:
            await asyncio.sleep(0)  # let the reput step run, as it would between requests
    await asyncio.sleep(0)
    elapsed = time.perf_counter() - start
    await store.close()
    return elapsed


async def store_sync(root: str, size: int, n: int, senders: int = 64) -> float:
    store = MessageStore(store_config(root, True))
    store.open()
    store.start()
    m = message(size)

    async def sender(count: int) -> None:
        for _ in range(count):
            result = await store.put_messages([m])
            assert result.status == "PUT_OK", result.status

    start = time.perf_counter()
    await asyncio.gather(*(sender(n // senders) for _ in range(senders)))
    elapsed = time.perf_counter() - start
    await store.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args()
    n = args.messages
    print(f"{'case':22} {'body':>6} {'msgs/s':>10} {'MB/s':>8} {'vs baseline':>12} "
          f"{'disk/rec':>9}")
    for size in (128, 1024):
        record = encoded(size)
        work = tempfile.mkdtemp(dir=args.dir, prefix="rmq-bench-")
        try:
            base = n / raw_write(os.path.join(work, "raw"), record, n)
            elapsed, base_disk = on_disk(
                lambda: raw_write(os.path.join(work, "raw-sync"), record, n, 64))
            base_sync = n / elapsed
            ours = n / asyncio.run(store_async(os.path.join(work, "a"), size, n))
            elapsed, ours_disk = on_disk(
                lambda: asyncio.run(store_sync(os.path.join(work, "s"), size, n)))
            ours_sync = n / elapsed
        finally:
            shutil.rmtree(work, ignore_errors=True)
        mb = len(record) / 1e6
        for name, rate, ref, disk in (
                ("baseline write()", base, base, None),
                ("baseline write+sync", base_sync, base_sync, base_disk),
                ("store async", ours, base, None),
                ("store sync x64", ours_sync, base_sync, ours_disk)):
            per_record = "" if disk is None else f"{disk / n:,.0f} B"
            print(f"{name:22} {size:>5}B {rate:10,.0f} {rate * mb:8.1f} {rate / ref:11.2f}x "
                  f"{per_record:>9}")


if __name__ == "__main__":
    main()

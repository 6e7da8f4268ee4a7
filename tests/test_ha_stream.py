"""The HA stream: its codec byte for byte as Java's HAConnection/HAClient write it, and two
real rmqnode processes replicating over it (identical CommitLog bytes, catch-up after a slave
restart, an empty slave starting at the master's last file, a slave ahead of its master
refused, SYNC_MASTER's answers)."""

from __future__ import annotations

import os
import re
import signal
import struct
import time
from pathlib import Path

import pytest

from rmqnode.config import BrokerConfig
from rmqnode.ha.protocol import (HEADER_SIZE, MAX_CHUNK, ChunkReader, ProtocolError,
                                 ReportReader, encode_header, encode_report)
from rmqnode.net.codes import RequestCode, ResponseCode
from rmqnode.storage.store import MessageStore
from tests.remoting import call

FILE = 65536  # small CommitLog files: a few hundred messages roll several


# -- codec -------------------------------------------------------------------------------

def test_report_and_header_bytes_are_javas():
    # ByteBuffer.putLong / putInt: big-endian, 8 + 4 bytes
    assert encode_report(0x0102030405060708) == bytes.fromhex("0102030405060708")
    assert encode_header(1 << 33, 7) == bytes.fromhex("0000000200000000" "00000007")
    assert encode_header(5, 0) == struct.pack(">qi", 5, 0) and HEADER_SIZE == 12


def test_report_reader_keeps_the_last_whole_report():
    reader = ReportReader()
    stream = encode_report(10) + encode_report(20) + encode_report(30)
    assert reader.feed(stream[:5]) is None
    assert reader.feed(stream[5:19]) == 20  # 19 bytes: two whole reports, the later wins
    assert reader.feed(stream[19:]) == 30
    with pytest.raises(ProtocolError):
        reader.feed(encode_report(-1))


def test_chunk_reader_any_split():
    data = bytes(range(256)) * 40
    stream = (encode_header(100, 0) + encode_header(100, len(data)) + data
              + encode_header(100 + len(data), 3) + b"xyz")
    whole = ChunkReader().feed(stream)
    assert whole == [(100, b""), (100, data), (100 + len(data), b"xyz")]
    for cut in (1, 11, 12, 13, 500, len(stream) - 1):
        reader = ChunkReader()
        assert reader.feed(stream[:cut]) + reader.feed(stream[cut:]) == whole
        assert reader.buffered == 0
    reader = ChunkReader()  # a byte at a time
    assert [c for i in range(len(stream)) for c in reader.feed(stream[i:i + 1])] == whole


def test_chunk_reader_largest_chunks_back_to_back():
    big = b"\x07" * MAX_CHUNK
    stream = b"".join(encode_header(i * MAX_CHUNK, MAX_CHUNK) + big for i in range(3))
    reader = ChunkReader()
    got = []
    for i in range(0, len(stream), 1 << 20):  # the buffer is compacted as it fills
        got += reader.feed(stream[i:i + (1 << 20)])
    assert [(o, len(d)) for o, d in got] == [(i * MAX_CHUNK, MAX_CHUNK) for i in range(3)]


@pytest.mark.parametrize("header", [struct.pack(">qi", 0, MAX_CHUNK + 1),
                                    struct.pack(">qi", 0, -1), struct.pack(">qi", -8, 0)])
def test_chunk_reader_refuses_what_no_master_sends(header):
    with pytest.raises(ProtocolError):
        ChunkReader().feed(header)


# -- two real nodes ----------------------------------------------------------------------

def commitlog_files(node) -> dict[str, bytes]:
    root = Path(node.home) / "store" / "commitlog"
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())} if root.is_dir() else {}


def wait_for(what: str, ready, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.1)


def same_log(master, slave) -> bool:
    """The slave's files are the master's, byte for byte, from the slave's first file on."""
    mine, theirs = commitlog_files(slave), commitlog_files(master)
    return bool(mine) and all(theirs.get(name) == data for name, data in mine.items()) \
        and max(mine) == max(theirs)


def master_args(*extra: str) -> list[str]:
    return ["-v", "--namesrv-port", "0", "--listen-port", "0", "--store", "store",
            "-D", f"mappedFileSizeCommitLog={FILE}", *extra]


def start_slave(start_node, master, home: Path | None = None, ha: str | None = None):
    if home is not None:
        home.mkdir(exist_ok=True)
    return start_node("-v", "--role", "broker", "-n", master.namesrv, "--listen-port", "0",
                      "--store", "store", "-D", f"mappedFileSizeCommitLog={FILE}",
                      "-D", "brokerRole=SLAVE", "-D", "brokerId=1",
                      "-D", f"haMasterAddress={ha or master.addrs['ha']}",
                      roles=("broker", "ha"), home=home)


def fill(node, count: int, topic: str = "HaT") -> list[tuple[int, dict]]:
    """`count` sends as a Java producer makes them: (response code, fields) of each."""
    out = []
    for i in range(count):
        resp = call(node.broker, RequestCode.SEND_MESSAGE_V2, {
            "a": "PG", "b": topic, "c": "TBW102", "d": 4, "e": i % 4, "f": 0, "g": 0, "h": 0,
            "i": ""}, f"message {i} ".encode() * 20)
        out.append((resp.code, resp.ext_fields or {}))
    return out


@pytest.fixture
def create_topic():
    def create(node, topic: str = "HaT") -> None:
        cmd = call(node.broker, RequestCode.UPDATE_AND_CREATE_TOPIC, {
            "topic": topic, "defaultTopic": "TBW102", "readQueueNums": 4,
            "writeQueueNums": 4, "perm": 6, "topicFilterType": "SINGLE_TAG"})
        assert cmd.code == ResponseCode.SUCCESS, cmd.remark
    return create


def test_sync_master_answers_only_with_a_slave_and_slave_bytes_match(start_node, tmp_path,
                                                                     create_topic):
    master = start_node(*master_args("-D", "brokerRole=SYNC_MASTER", "-D", "slaveTimeout=500"),
                        roles=("namesrv", "broker", "ha"))
    create_topic(master)
    alone = fill(master, 3)
    # No slave: stored all the same, answered SLAVE_NOT_AVAILABLE with the send's fields.
    assert {code for code, _ in alone} == {ResponseCode.SLAVE_NOT_AVAILABLE}
    assert all(fields["msgId"] for _, fields in alone)
    slave = start_slave(start_node, master, home=tmp_path / "slave")
    slave.wait_line(r"ha\.master_connected")
    master.wait_line(r"ha\.transfer_from .*offset=0 requested=0")
    paired = fill(master, 600)  # rolls several 64 KiB files while the slave follows
    assert {code for code, _ in paired} == {ResponseCode.SUCCESS}
    wait_for("the slave's CommitLog is the master's", lambda: same_log(master, slave))
    assert len(commitlog_files(slave)) > 3 and commitlog_files(slave) == commitlog_files(master)
    # A slave that stops acking (frozen, its connection open): FLUSH_SLAVE_TIMEOUT after
    # slaveTimeout, the message stored; once it runs again it catches up.
    os.kill(slave.pid, signal.SIGSTOP)
    try:
        [(code, fields)] = fill(master, 1)
    finally:
        os.kill(slave.pid, signal.SIGCONT)
    assert code == ResponseCode.FLUSH_SLAVE_TIMEOUT and fields["msgId"]
    wait_for("the thawed slave caught up", lambda: same_log(master, slave))


def test_empty_slave_starts_at_last_file_then_catches_up_after_restart(start_node, tmp_path,
                                                                       create_topic):
    master = start_node(*master_args(), roles=("namesrv", "broker", "ha"))
    create_topic(master)
    fill(master, 500)
    files = sorted(commitlog_files(master))
    assert len(files) > 2
    home = tmp_path / "slave"
    slave = start_slave(start_node, master, home=home)
    wait_for("the slave has the master's last file",
             lambda: same_log(master, slave))
    assert sorted(commitlog_files(slave)) == files[-1:]  # as Java: only from the last file
    slave.stop()
    fill(master, 400)  # written while the slave is down
    slave = start_slave(start_node, master, home=home)
    wait_for("the restarted slave caught up", lambda: same_log(master, slave))
    assert sorted(commitlog_files(slave)) == [f for f in sorted(commitlog_files(master))
                                              if f >= files[-1]]
    # its consume queues and index were built from the replicated records
    slave.stop()
    store = MessageStore(BrokerConfig(storePathRootDir=str(home / "store"),
                                      mappedFileSizeCommitLog=FILE), readonly=True)
    store.open()
    try:
        got = store.get_messages("HaT", 0, 224, 8)  # queue 0: every 4th message (125 + 100)
        assert got.status == "FOUND" and len(got.messages) == 1
        assert b"message 396 " in bytes(got.messages[0])  # the second fill's last
        assert store.max_offset("HaT", 3) == 225
    finally:
        store.close_readonly()


def test_slave_ahead_of_its_master_is_refused_and_stops(start_node, tmp_path, create_topic):
    master = start_node(*master_args(), roles=("namesrv", "broker", "ha"))
    create_topic(master)
    fill(master, 50)
    home = tmp_path / "slave"
    slave = start_slave(start_node, master, home=home)
    wait_for("replicated", lambda: same_log(master, slave))
    slave.stop()
    before = commitlog_files(slave)
    # A new master with less data than the slave (an unclean failover lost the tail).
    other = start_node(*master_args(), roles=("namesrv", "broker", "ha"))
    create_topic(other)
    fill(other, 5)
    slave = start_slave(start_node, other, home=home, ha=other.addrs["ha"])
    line = slave.wait_line(r"ha\.slave_ahead_of_master")
    mine, theirs = (int(re.search(rf"{k}=(\d+)", line).group(1))
                    for k in ("slave_offset", "master_offset"))
    assert mine > theirs
    other.wait_line(r"ha\.slave_ahead .*slave refused")
    fill(other, 5)
    assert commitlog_files(slave) == before  # nothing appended over its own records

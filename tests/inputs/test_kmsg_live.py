"""The kernel log live: a stand-in /dev/kmsg, and journalctl -k -f as a child process.

No test writes the machine's real ``/dev/kmsg`` (an Xid 79 there is a false page on a
GPU node) unless FLEETWATCH_TEST_REAL_KMSG=1 is set; the others read a FIFO that hands
out records the way the device does.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import select
import stat
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetwatch.events import EventBatch, concat
from fleetwatch.inputs.kmsg_live import (
    BOOT_ID,
    RECORD_BYTES,
    KmsgSettings,
    KmsgSource,
    kmsg_record,
)
from fleetwatch.sources import ReadOptions
from tests.watch.live import wait_for

pytestmark = pytest.mark.slow  # real processes and servers: not in `make verify`

DATA = Path(__file__).parent.parent / "data" / "kernel"


def start(
    source: KmsgSource,
) -> tuple[list[EventBatch], list[Any], threading.Event, threading.Thread]:
    got: list[EventBatch] = []
    positions: list[Any] = []
    stop = threading.Event()

    def deliver(batches: list[EventBatch], position: Any) -> None:
        got.extend(batches)
        positions.append(position)

    thread = threading.Thread(target=source.run, args=(deliver, stop))
    thread.start()
    return got, positions, stop, thread


def xids(batches: list[EventBatch]) -> list[tuple[int, int | None]]:
    if not batches:
        return []
    return [(r["code"], r.get("pid")) for r in concat(batches).records() if r["kind"] == "xid"]


def test_a_kmsg_record_is_read_without_its_continuation_lines() -> None:
    raw = (
        b"4,1843,96230000,-;NVRM: Xid (PCI:0000:3b:00): 79, pid=1, name=x, fallen\n SUBSYSTEM=pci\n"
    )
    assert kmsg_record(raw) == (
        1843,
        96.23,
        "NVRM: Xid (PCI:0000:3b:00): 79, pid=1, name=x, fallen",
    )
    assert kmsg_record(b"no header here") is None
    assert kmsg_record(b"4,1843,99999999999999999999999,-;NVRM: Xid 79") is None


class StandInKmsg:
    """A FIFO in the place of ``/dev/kmsg``, so that no test writes the machine's kernel log.

    It behaves as the device does for a reader: a read of an empty one is EAGAIN (this
    end stays open for writing, so the reader never sees an end of file), poll says when
    a record is there, and each read takes one whole record. A record is written at once
    in the device's ``priority,sequence,microseconds,flags;message`` form with its
    ``KEY=value`` lines; it is at most PIPE_BUF bytes, so it lands whole, and ``write``
    returns once the reader took it, so no read ever holds two.
    """

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)

    def write(self, sequence: int, message: str, since_boot: float | None = None) -> None:
        if since_boot is None:
            since_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
        micros = int(since_boot * 1e6)
        record = f"4,{sequence},{micros},-;{message}\n SUBSYSTEM=pci\n DEVICE=+pci:0000:3b:00.0\n"
        self.write_raw(record.encode())

    def write_raw(self, record: bytes) -> None:
        assert len(record) <= select.PIPE_BUF  # one atomic write: one whole record
        os.write(self.fd, record)
        wait_for(lambda: self.unread() == 0, what="the reader to take the record")

    def unread(self) -> int:
        count = array.array("i", [0])
        fcntl.ioctl(self.fd, termios.FIONREAD, count)
        return count[0]

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def kmsg(tmp_path: Path) -> Iterator[StandInKmsg]:
    device = StandInKmsg(tmp_path / "kmsg")
    yield device
    device.close()  # after the test joined its readers: a FIFO without a writer reads as EOF


def xid79(pid: int) -> str:
    return f"NVRM: Xid (PCI:0000:3b:00): 79, pid={pid}, name=fleetwatch-test, GPU has fallen off the bus."


def test_the_device_hands_each_new_record_once_with_its_wall_time(kmsg: StandInKmsg) -> None:
    boot = BOOT_ID.read_text().strip()
    source = KmsgSource(KmsgSettings(device=str(kmsg.path)), "this-node", ReadOptions(), None)
    got, positions, stop, thread = start(source)
    try:
        kmsg.write_raw(b"no header here\n")
        kmsg.write(1843, xid79(4242))
        kmsg.write(1844, xid79(4243), since_boot=0.5)
        wait_for(lambda: len(xids(got)) >= 2, what="the two records written to the device")
    finally:
        stop.set()
        thread.join()
    assert source.via == "device"
    assert xids(got) == [(79, 4242), (79, 4243)]  # once each, without their KEY=value lines
    first, second = (r for r in concat(got).records() if r["kind"] == "xid")
    assert abs(first["ts"] - time.time()) < 60 and first["node"] == "this-node"
    booted = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    assert abs(second["ts"] - (booted + 0.5)) < 5  # wall time = boot time + the record's stamp
    assert positions[-1] == {"boot_id": boot, "seq": 1844}
    assert source.stats.unreadable == {("kmsg", "not a kmsg record"): 1}


@pytest.mark.parametrize(
    ("same_boot", "expected"),
    [(True, [(79, 12)]), (False, [(79, 10), (79, 11), (79, 12)])],
    ids=["same-boot-reads-after-the-saved-sequence", "a-new-boot-reads-every-record"],
)
def test_a_restart_reads_only_what_is_new(
    kmsg: StandInKmsg, same_boot: bool, expected: list[tuple[int, int]]
) -> None:
    boot = BOOT_ID.read_text().strip()
    saved = {"boot_id": boot if same_boot else "an-earlier-boot", "seq": 11}
    source = KmsgSource(KmsgSettings(device=str(kmsg.path)), "n", ReadOptions(), saved)
    got, positions, stop, thread = start(source)
    try:
        # The device hands a restarted reader the ring buffer from its oldest record.
        for sequence in (10, 11, 12):
            kmsg.write(sequence, xid79(sequence))
        # 12 came last: once it is read, 10 and 11 were read or skipped before it
        wait_for(lambda: (79, 12) in xids(got), what="the record after the saved one")
    finally:
        stop.set()
        thread.join()
    assert xids(got) == expected
    assert positions[-1] == {"boot_id": boot, "seq": 12}


FATAL_AER_RECORDS = (
    "pcieport 0000:3a:00.0: AER: Uncorrected (Fatal) error received: 0000:3b:00.0",
    "nvidia 0000:3b:00.0: PCIe Bus Error: severity=Uncorrected (Fatal), "
    "type=Transaction Layer, (Receiver ID)",
    "nvidia 0000:3b:00.0:   device [10de:2330] error status/mask=00000020/00000000",
    "nvidia 0000:3b:00.0:    [ 5] SDES                   (First)",
)


def test_a_held_report_is_read_when_the_log_goes_quiet_and_never_passed(
    kmsg: StandInKmsg,
) -> None:
    # An AER report spans four kernel records; the last one may have followers, so it
    # is held until the log has been quiet for quiet_s. Until then the saved position
    # stays before the held records: a kill -9 there reads them again after a restart.
    settings = KmsgSettings(device=str(kmsg.path), quiet_s=0.3)
    source = KmsgSource(settings, "n", ReadOptions(), {"boot_id": "x", "seq": 0})
    got, positions, stop, thread = start(source)
    try:
        for sequence, message in enumerate(FATAL_AER_RECORDS, start=20):
            kmsg.write(sequence, message)
        aer = wait_for(
            lambda: [r for r in concat(got).records() if r["kind"] == "aer"] if got else [],
            what="the report, once the log was quiet",
        )
    finally:
        stop.set()
        thread.join()
    assert [(r["severity"], r["pci"]) for r in aer] == [("fatal", "0000:3b:00.0")]
    seqs = [p["seq"] for p in positions]
    assert seqs[-1] == 23
    assert all(seq <= 20 for seq in seqs[:-1]), seqs  # never past a record still held


REAL_KMSG = os.environ.get("FLEETWATCH_TEST_REAL_KMSG") == "1"
writable = os.access("/dev/kmsg", os.W_OK) and os.access("/dev/kmsg", os.R_OK)


def reading(positions: list[Any]) -> None:
    """Write harmless records to the real device until the reader has read one.

    A first start seeks to the device's end; a record written before that is never
    read, so the test's record waits until the reader shows it is past the seek.
    """
    end = time.monotonic() + 20
    while not positions:
        assert time.monotonic() < end, "the reader read none of the probe records"
        with open("/dev/kmsg", "w") as device:
            device.write("fleetwatch-test: probe, not a fault\n")
        with contextlib.suppress(AssertionError):
            wait_for(lambda: positions, timeout=0.5, what="a probe record")


@pytest.mark.skipif(
    not REAL_KMSG,
    reason="writes an Xid 79 record into this machine's real /dev/kmsg, a false page on a "
    "GPU node: set FLEETWATCH_TEST_REAL_KMSG=1 to run it (the stand-in tests above run always)",
)
@pytest.mark.skipif(not writable, reason="/dev/kmsg cannot be read and written here")
def test_real_dev_kmsg_new_records_once_and_a_restart_reads_none_again() -> None:
    # A record written to the kernel log now (root may): a real kmsg record.
    pid = 40000 + int(time.time()) % 20000
    boot = BOOT_ID.read_text().strip()
    first = KmsgSource(KmsgSettings(), "this-node", ReadOptions(), None)
    got, positions, stop, thread = start(first)
    try:
        reading(positions)
        with open("/dev/kmsg", "w") as device:
            device.write(xid79(pid) + "\n")
        wait_for(lambda: (79, pid) in xids(got), what="the record written to /dev/kmsg")
    finally:
        stop.set()
        thread.join()
    assert first.via == "device"
    assert [x for x in xids(got) if x[1] == pid] == [(79, pid)]
    record = next(r for r in concat(got).records() if r["kind"] == "xid" and r.get("pid") == pid)
    assert abs(record["ts"] - time.time()) < 60 and record["node"] == "this-node"
    assert positions[-1]["boot_id"] == boot
    # restarted from that position: the same boot's records up to it are not read again;
    # a later record read proves the restarted reader went past the first one
    again = KmsgSource(KmsgSettings(), "this-node", ReadOptions(), positions[-1])
    got2, _, stop2, thread2 = start(again)
    try:
        with open("/dev/kmsg", "w") as device:
            device.write(xid79(pid + 1) + "\n")
        wait_for(lambda: (79, pid + 1) in xids(got2), what="the record after the restart")
    finally:
        stop2.set()
        thread2.join()
    assert (79, pid) not in xids(got2)


def test_without_the_device_journalctl_follows_from_its_cursor(tmp_path: Path) -> None:
    # A stand-in journalctl (a real child process) that prints real journal JSON lines
    # after the cursor it is given, then waits like -f.
    journal = DATA / "journal.json"
    fake = tmp_path / "journalctl"
    fake.write_text(
        "#!/usr/bin/env python3\n"
        "import sys, json, time\n"
        f"lines = open({str(journal)!r}).read().splitlines()\n"
        "after = next((a.split('=', 1)[1] for a in sys.argv if a.startswith('--after-cursor=')), None)\n"
        "if after is not None:\n"
        "    keys = [json.loads(l).get('__CURSOR') if l.endswith('}') else None for l in lines]\n"
        "    lines = lines[keys.index(after) + 1:] if after in keys else lines\n"
        "print('\\n'.join(lines), flush=True)\n"
        "time.sleep(30)\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    settings = KmsgSettings(device=str(tmp_path / "no-kmsg"), journalctl=str(fake))
    source = KmsgSource(settings, "n", ReadOptions(), {"cursor": "not-in-this-journal"})
    got, positions, stop, thread = start(source)
    try:
        wait_for(lambda: xids(got), what="events from journalctl")
    finally:
        stop.set()
        thread.join()
    assert source.via == "journal"
    assert xids(got)[0][0] == 79
    assert positions[-1] == {"cursor": "s=9a1c;i=1f2;b=3e4d;m=6de4;t=61f0;x=1a2b"}


def padded(sequence: int, message: str) -> bytes:
    """One record of exactly RECORD_BYTES (its KEY=value line pads it): a FIFO holding
    several hands them out one a read, as the device does, without a writer waiting."""
    micros = int(time.clock_gettime(time.CLOCK_BOOTTIME) * 1e6)
    record = f"4,{sequence},{micros},-;{message}\n SUBSYSTEM=pci\n".encode()
    return record + b" PAD=" + b"x" * (RECORD_BYTES - len(record) - 6) + b"\n"


def read_once(source: KmsgSource) -> tuple[list[EventBatch], list[Any]]:
    got: list[EventBatch] = []
    positions: list[Any] = []

    def deliver(batches: list[EventBatch], position: Any) -> None:
        got.extend(batches)
        positions.append(position)

    source.run(deliver, threading.Event())  # never stopped: it returns by itself
    return got, positions


def test_once_reads_this_boots_records_then_only_the_new_ones_and_returns(
    kmsg: StandInKmsg,
) -> None:
    # slurm-health: a first run reads the whole boot (as any run after a reboot does)
    boot = BOOT_ID.read_text().strip()
    for sequence in (5, 6, 7):
        os.write(kmsg.fd, padded(sequence, xid79(sequence)))
    settings = KmsgSettings(device=str(kmsg.path))
    got, positions = read_once(KmsgSource(settings, "n", ReadOptions(), None, once=True))
    assert xids(got) == [(79, 5), (79, 6), (79, 7)]
    assert positions[-1] == {"boot_id": boot, "seq": 7}
    for sequence in (5, 6, 7, 8):  # a new reader gets the ring buffer from its oldest record
        os.write(kmsg.fd, padded(sequence, xid79(sequence)))
    again, _ = read_once(KmsgSource(settings, "n", ReadOptions(), positions[-1], once=True))
    assert xids(again) == [(79, 8)]


def test_once_reads_the_journal_to_its_end_without_following_it(tmp_path: Path) -> None:
    # A stand-in journalctl that gives each entry a cursor, prints those after the one
    # it is given, and exits, as journalctl -k does without -f.
    journal = DATA / "journal.json"
    fake = tmp_path / "journalctl"
    fake.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        "if '-f' in sys.argv or not {'-k', '-o', 'json'} <= set(sys.argv):\n"
        "    sys.exit(64)\n"
        "out = []\n"
        f"for i, line in enumerate(open({str(journal)!r}).read().splitlines()):\n"
        "    entry = json.loads(line) if line.endswith('}') else None\n"
        "    if isinstance(entry, dict):\n"
        "        entry['__CURSOR'] = f'c{i}'\n"
        "        line = json.dumps(entry)\n"
        "    out.append((f'c{i}', line))\n"
        "after = [a.split('=', 1)[1] for a in sys.argv if a.startswith('--after-cursor=')]\n"
        "if after:\n"
        "    out = out[[c for c, _ in out].index(after[0]) + 1:]\n"
        "print('\\n'.join(line for _, line in out))\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    settings = KmsgSettings(device=str(tmp_path / "no-kmsg"), journalctl=str(fake))
    source = KmsgSource(settings, "n", ReadOptions(), None, once=True)
    got, positions = read_once(source)
    assert source.via == "journal"
    assert xids(got)[0][0] == 79  # the first entry: read, as this boot's whole journal is
    assert positions[-1] == {"cursor": "c6"}  # the last entry (a cut one follows: no cursor)
    again = KmsgSource(settings, "n", ReadOptions(), positions[-1], once=True)
    assert xids(read_once(again)[0]) == []  # after its cursor: only the cut entry, again
    assert again.stats.unreadable.total() == 1

"""The kernel log live: the real /dev/kmsg, and journalctl -k -f as a child process."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from fleetwatch.events import EventBatch, concat
from fleetwatch.sources import ReadOptions
from fleetwatch.sources.kmsg_live import BOOT_ID, KmsgSettings, KmsgSource, kmsg_record
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


writable = os.access("/dev/kmsg", os.W_OK) and os.access("/dev/kmsg", os.R_OK)


@pytest.mark.skipif(not writable, reason="/dev/kmsg cannot be read and written here")
def test_dev_kmsg_new_records_once_and_a_restart_reads_none_again() -> None:
    # A record written to the kernel log now (root may): a real kmsg record.
    pid = 40000 + int(time.time()) % 20000
    line = f"NVRM: Xid (PCI:0000:3b:00): 79, pid={pid}, name=fleetwatch-test, GPU has fallen off the bus.\n"
    boot = BOOT_ID.read_text().strip()
    first = KmsgSource(KmsgSettings(), "this-node", ReadOptions(), None)
    got, positions, stop, thread = start(first)
    try:
        time.sleep(0.5)  # first start: from the end; what is already there is not read
        with open("/dev/kmsg", "w") as kmsg:
            kmsg.write(line)
        wait_for(lambda: (79, pid) in xids(got), what="the record written to /dev/kmsg")
    finally:
        stop.set()
        thread.join()
    assert first.via == "device"
    assert [x for x in xids(got) if x[1] == pid] == [(79, pid)]
    record = next(r for r in concat(got).records() if r["kind"] == "xid" and r.get("pid") == pid)
    assert abs(record["ts"] - time.time()) < 60 and record["node"] == "this-node"
    assert positions[-1]["boot_id"] == boot
    # restarted from that position: the same boot's records up to it are not read again
    again = KmsgSource(KmsgSettings(), "this-node", ReadOptions(), positions[-1])
    got2, _, stop2, thread2 = start(again)
    time.sleep(1.0)
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

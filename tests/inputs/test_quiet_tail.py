"""A quiet tail is read: a record held for lines that never come, once its input is quiet.

An AER report or a three-line "fallen off the bus" may go on in the next lines, so the
stream holds it until a line shows it ended. On a quiet node no such line comes; the
live sources then flush the stream after ``quiet_s``, and a position never passes a
record that is still held.
"""

from __future__ import annotations

import time
from pathlib import Path

from fleetwatch.events import concat
from fleetwatch.inputs.follow import Follower
from fleetwatch.inputs.kmsg_live import HeldPositions
from fleetwatch.sources import ReadOptions, ReadStats
from tests.watch.live import wait_for

FATAL_AER = (
    "[ 6500.000001] pcieport 10003:00:02.0: AER: Uncorrectable (Fatal) error message "
    "received from 10003:01:00.0\n"
    "[ 6500.000002] nvidia 10003:01:00.0: PCIe Bus Error: severity=Uncorrectable (Fatal), "
    "type=Transaction Layer, (Receiver ID)\n"
    "[ 6500.000003] nvidia 10003:01:00.0:   device [10de:2330] error status/mask=00040000/00000000\n"
    "[ 6500.000004] nvidia 10003:01:00.0:    [18] MalfTLP                (First)\n"
)
FALLEN_OFF = (
    "[ 5002.000001] NVRM: The NVIDIA GPU 0000:0a:00.0\n"
    "NVRM: (PCI ID: 10de:20b0) installed in this system has\n"
    "NVRM: fallen off the bus and is not responding to commands.\n"
)


def kinds(follower: Follower) -> list[tuple[str, str | None]]:
    batches = follower.poll()
    return [(r["kind"], r.get("severity")) for r in concat(batches).records()] if batches else []


def test_a_fatal_aer_on_a_quiet_tail_is_read_once_the_file_is_quiet(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_text("")
    follower = Follower(str(log), ReadOptions(), ReadStats(), quiet_s=0.2)
    try:
        assert kinds(follower) == []
        with log.open("a") as out:
            out.write(FATAL_AER)
        written = time.monotonic()
        assert kinds(follower) == []  # the report may go on: held
        held_at = follower.positions()[str(log)].offset
        assert held_at < log.stat().st_size  # a restart now would read the held report again
        seen = wait_for(lambda: kinds(follower), timeout=5, what="the held report")
        assert seen == [("aer", "fatal")]
        assert time.monotonic() - written >= 0.2
        assert follower.positions()[str(log)].offset == log.stat().st_size
        assert kinds(follower) == []  # read once
    finally:
        follower.close()


def test_a_three_line_fallen_off_the_bus_is_read_when_quiet(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_text("")
    follower = Follower(str(log), ReadOptions(), ReadStats(), quiet_s=0.05)
    try:
        kinds(follower)
        with log.open("a") as out:
            out.write(FALLEN_OFF)
        seen = wait_for(lambda: kinds(follower), timeout=5, what="the fallen-off-the-bus record")
        assert [k for k, _ in seen] == ["gpu_lost"]
    finally:
        follower.close()


def test_a_partial_last_line_is_not_flushed(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_text("")
    follower = Follower(str(log), ReadOptions(), ReadStats(), quiet_s=0.0)
    try:
        kinds(follower)
        line = FATAL_AER.splitlines(keepends=True)[1]
        with log.open("a") as out:
            out.write(line[:40])
        assert kinds(follower) == [] and kinds(follower) == []
        assert follower.positions()[str(log)].offset == 0
        with log.open("a") as out:
            out.write(line[40:])
        assert kinds(follower) == [("aer", "fatal")]
    finally:
        follower.close()


def test_held_positions_settle_only_what_was_read() -> None:
    held = HeldPositions(settled=10)
    for seq in (11, 12, 13):
        held.fed(seq)
    assert held.read_up_to(2) == 11  # 12 and 13 are held: a restart reads them again
    held.fed(14)
    assert held.read_up_to(3) == 11
    assert held.read_up_to(0) == 14
    assert held.read_up_to(0) == 14

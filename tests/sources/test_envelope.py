"""Time stamps and hosts behind every envelope a kernel record arrives in."""

from __future__ import annotations

import calendar
import os
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fleetwatch.sources import envelope, stream
from fleetwatch.timestamps import TimeRules, month_number, parse_zone
from tests.conftest import DATA, parse, parse_text

KERNEL = DATA / "kernel"


def utc(*when: int) -> float:
    return float(calendar.timegm((*when,)))


def test_the_same_xid_behind_every_envelope() -> None:
    events = parse(KERNEL / "envelopes.log", year=2024)
    assert all(e["kind"] == "xid" and e["code"] == 79 for e in events)
    assert all(e["pci"] == "0000:3b:00.0" for e in events)
    got = [(e["line"], e["clock"], e["ts"], e["node"]) for e in events]
    assert got == [
        (1, "boot", 1843.308145, "envelopes"),
        (2, "boot", 36.782543, "envelopes"),
        (3, "wall", utc(2024, 8, 5, 3, 54, 13), "envelopes"),
        (4, "wall", utc(2025, 1, 25, 10, 34, 54) + 0.859532, "envelopes"),
        (5, "wall", utc(2024, 8, 5, 3, 54, 13), "gpu-node-7"),  # wall wins; [ 1843.3] anchors
        (6, "wall", utc(2024, 8, 5, 3, 54, 13), "envelopes"),
        (7, "wall", utc(2024, 8, 5, 3, 54, 13), "gpu-node-8"),
        (8, "wall", utc(2024, 8, 5, 1, 54, 13) + 0.123456, "gpu-node-9"),
        (9, "boot", 5.678901, "envelopes"),  # /dev/kmsg microseconds
        (12, "wall", utc(2026, 4, 22, 21, 25, 20) + 0.458998481, "10.1.2.3"),
        (13, "wall", utc(2026, 4, 22, 21, 25, 20), "envelopes"),  # inside an alert wrapper
        (14, "wall", utc(2024, 3, 12, 10, 0, 1), "gpu-node-3"),  # German "Mär"
        (15, "wall", utc(2024, 12, 3, 10, 0, 1), "gpu-node-3"),  # French "déc."
    ]
    assert events.stats.lines == 15


def test_dmesg_human_deltas_add_up_from_the_last_absolute_stamp() -> None:
    events = parse(KERNEL / "human.dmesg", year=2024)
    assert [(e["line"], e["code"], e["clock"]) for e in events] == [
        (3, 79, "wall"),
        (5, 48, "wall"),
    ]
    assert events[0]["ts"] == pytest.approx(utc(2024, 8, 5, 3, 54, 0) + 0.75)
    assert events[1]["ts"] == pytest.approx(utc(2024, 8, 5, 3, 55, 0) + 1.0)


def test_journal_json_messages_read_like_any_other_line() -> None:
    events = parse(KERNEL / "journal.json")
    kinds = [(e["kind"], e["node"], e["line"]) for e in events]
    assert kinds == [
        ("xid", "gpu-node-7", 1),
        ("aer", "gpu-node-7", 2),
        ("xid", "gpu-node-7", 5),
        ("pod_evicted", "gpu-node-7", 6),
    ]
    assert events[0]["ts"] == 1722830053.123456
    assert events[1]["detail"] == "Physical Layer: RxErr (First); device 10de:2330"
    assert events[2]["code"] == 48 and events[2]["detail"] == "\ufffdbad"  # MESSAGE as bytes
    assert events[3]["pod"] == "llm-pretrain-3" and events[3]["namespace"] == "ml"
    assert events.stats.unreadable == {("json", "invalid json"): 1}  # the truncated last line


def test_year_comes_from_the_file_time_and_steps_back_over_new_year(tmp_path: Path) -> None:
    text = (
        "Dec 31 23:59:58 gpu-1 kernel: NVRM: Xid (PCI:0000:3b:00): 48, pid=1, name=a, DBE\n"
        "Jan  1 00:00:02 gpu-1 kernel: NVRM: Xid (PCI:0000:3b:00): 48, pid=1, name=a, DBE\n"
    )
    path = tmp_path / "gpu-1.syslog"
    path.write_text(text)
    january_2025 = utc(2025, 1, 2, 12, 0, 0)
    os.utime(path, (january_2025, january_2025))
    dec, jan = parse(path)
    assert dec["ts"] == utc(2024, 12, 31, 23, 59, 58)
    assert jan["ts"] == utc(2025, 1, 1, 0, 0, 2)
    forced = parse(path, year=2019)
    assert forced[0]["ts"] == utc(2019, 12, 31, 23, 59, 58)


def test_tz_sets_the_zone_of_stamps_without_one(tmp_path: Path) -> None:
    line = "[Mon Aug  5 03:54:13 2024] NVRM: Xid (PCI:0000:3b:00): 48, pid=1, name=a, DBE\n"
    paris = parse_text(tmp_path, line, zone=parse_zone("Europe/Paris"))
    assert paris[0]["ts"] == utc(2024, 8, 5, 1, 54, 13)  # CEST is UTC+2


def test_unstamped_records_take_the_time_of_the_nearest_stamped_line(tmp_path: Path) -> None:
    text = (
        "2024-08-05 03:54:13,120 INFO launcher: starting rank 0\n"
        "gpu-1:100:100 [0] NCCL INFO comm 0x1 rank 0 nranks 2 cudaDev 0 nvmlDev 3 busId 1b000"
        " commId 0x2 - Init COMPLETE\n"
    )
    events = parse_text(tmp_path, text)
    assert events[0]["kind"] == "nccl_init"
    assert events[0]["ts"] == utc(2024, 8, 5, 3, 54, 13) + 0.12


# pieces of lines with and without stamps, and pieces that only look like them
_PIECES = st.sampled_from(
    [b"\n", b"[", b" ", b"12", b".5", b"]", b"{", b"x", b"Jun", b"Jun  4 11:02:13 ",
     b"2024-06-04T10:00:", b"[I0604 10:00:00", b"kern  :info  : 2024-", b"[Tue Jun", b"1,2,3,x;"]
)  # fmt: skip


def _agrees_with_the_whole_range_regex(buf: bytes, floor: int, start: int) -> None:
    found = stream._LAST_STAMPED.match(buf, floor, start)
    assert stream._last_stamped(buf, floor, start) == (None if found is None else found.end())


@given(st.lists(_PIECES, max_size=40).map(b"".join), st.data())
def test_the_nearest_stamped_line_is_the_one_the_whole_range_regex_finds(
    buf: bytes, data: st.DataObject
) -> None:
    # _last_stamped tests a one-line range at once; the regex over the range is the reference
    floor = data.draw(st.integers(0, len(buf)))
    start = data.draw(st.integers(floor, len(buf)))
    _agrees_with_the_whole_range_regex(buf, floor, start)


@pytest.mark.parametrize(
    ("buf", "floor", "start"),
    [
        (b"x[12.5] y\nz", 1, 9),  # a stamp mid-line, where no line starts
        (b"[1.5] a\n{x}\n", 0, 12),  # the last line unstamped, one before it stamped
        (b"{x}\n{y}\n", 4, 8),  # one line, not stamped
        (b"x\n[1.5] a", 0, 9),  # a stamped line after the only break
        (b"2024-06-04T10:00:00 x\n", 0, 22),  # a stamp without a "["
        (b'{"m":"[I0604 10:00:00 x"}\n', 0, 26),  # a JSON line with glog's stamp
        (b'{"m":"x"}\n', 0, 10),  # a JSON line without
        (b'{"m":"' + b"x" * 54 + b'[I0604 10:00:00"}\n', 0, 78),  # its "[" at 60 bytes
        (b'{"m":"' + b"x" * 55 + b'[I0604 10:00:00"}\n', 0, 79),  # at 61: too far
        (b"[\n 1.5] a\nb\n", 0, 12),  # a stamp across a line break
    ],
)
def test_the_nearest_stamped_line_in_known_ranges(buf: bytes, floor: int, start: int) -> None:
    _agrees_with_the_whole_range_regex(buf, floor, start)


# the four stamps a line can open with "[", in the order parse tries them, as an oracle
_BRACKETED = st.lists(
    st.sampled_from(
        ["[", "]", " ", "\u00a0", "+", ".", "0", "12", "\u0663", "Thu", "Nov", "rank", "E0604",
         " 26 ", "16:00", ":42", " 2026", "\t", "x", "é"]
    ),
    max_size=12,
).map(lambda parts: "[" + "".join(parts))  # fmt: skip


@given(_BRACKETED)
@example("[rank0]:[E0604 10:25:00.000000000 ProcessGroupNCCL.cpp:632] x")
@example("[\u00a0+0.5] x")
@example("[Nov\u066326 16:00] x")
@example("[Nov26 16:00] x")
@example("[Nov 26 16:00:42] x")
@example("[Thu Nov 26 16:00:42 2026] x")
@example("[  12.5] x")
def test_a_bracketed_stamp_is_the_first_of_the_four_that_matches(text: str) -> None:
    # parse skips a regex by what it needs after the "[": never one that would match
    rules = TimeRules(year=2024, zone=parse_zone("UTC"))
    got = envelope.parse(text, rules)
    boot = envelope._DMESG_BOOT.match(text)
    ctime = envelope._DMESG_CTIME.match(text)
    relative = envelope._DMESG_RELATIVE.match(text)
    human = envelope._DMESG_HUMAN.match(text)
    if boot:
        assert (got.clock, got.ts) == ("boot", float(boot[1]))
    elif ctime and rules.ctime(*ctime.groups()) is not None:
        assert (got.clock, got.ts) == ("wall", rules.ctime(*ctime.groups()))
    elif relative and not ctime:
        assert got.relative and got.ts == float(relative[1])
    elif human and not (ctime or relative) and (month := month_number(human[1])):
        day = int(human[2])
        wall = rules.local(2024, month, day, int(human[3]), int(human[4]), float(human[5] or 0))
        assert wall is None or (got.clock, got.ts) == ("wall", wall)
    else:
        assert not got.relative and got.clock != "boot"


def test_time_rules_step_back_only_for_dates_after_the_file() -> None:
    rules = TimeRules(reference=utc(2025, 3, 1, 0, 0, 0), zone=parse_zone("UTC"))
    assert rules.infer_year(2, 28) == 2025
    assert rules.infer_year(3, 2) == 2025  # a day of slack for clock skew
    assert rules.infer_year(3, 3) == 2024


@given(
    st.floats(0, 4e9),
    st.sampled_from(["UTC", "America/Los_Angeles", "Asia/Kolkata"]),
    st.lists(st.tuples(st.integers(1, 12), st.integers(1, 31)), min_size=1, max_size=5),
)
def test_the_year_of_each_stamp_is_the_reference_date_s_rule(
    reference: float, zone: str, dates: list[tuple[int, int]]
) -> None:
    # the reference's date is read once per input: each stamp still gets the rule's year
    rules = TimeRules(reference=reference, zone=parse_zone(zone))
    ref = datetime.fromtimestamp(reference, parse_zone(zone))
    for month, day in dates:
        stepped_back = (month, day) > (ref.month, ref.day + 1)
        assert rules.infer_year(month, day) == ref.year - stepped_back


def test_a_wall_clock_line_with_the_kernel_stamp_teaches_the_node_s_boot_offset() -> None:
    events = parse(KERNEL / "envelopes.log", year=2024)
    anchors = events.stats.boot_anchors
    assert anchors["gpu-node-7"] == utc(2024, 8, 5, 3, 54, 13) - 1843.308145
    assert "gpu-node-8" not in anchors  # its line has no kernel stamp

"""No finding carries times of two clocks (issue 15).

A plain dmesg stamps seconds since boot; nvidia-smi, DCGM and Kubernetes stamp wall
time. One GPU's incident built from both keeps its times on the wall clock and the
boot-clock times apart, whatever order the inputs arrive in.
"""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from bench.fleet_events import make_batch
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetwatch.config import build, load
from fleetwatch.detectors.base import (
    UNTIMED,
    IncidentBook,
    Span,
    _span_of_few,
    _span_of_many,
    span,
    spans,
)
from fleetwatch.engine import Engine
from fleetwatch.events import EventBatch, concat
from fleetwatch.findings import Finding
from fleetwatch.replay import replay
from fleetwatch.sinks.table import when
from fleetwatch.sources import ReadOptions, ReadStats, read_paths

DATA = Path(__file__).parents[1] / "data"
# a real DBE line (tests/data/kernel/README.md), on the GPU of the real A100 report
XID_48 = (DATA / "kernel" / "xid-shapes.dmesg").read_text().splitlines()[10]
SMI = DATA / "real" / "a100-nvidia-smi-q.txt"  # its Timestamp: Sat Mar  4 04:56:17 2023
SMI_TS = 1677905777.0


def node_folder(tmp_path: Path) -> Path:
    """One node's dmesg (boot clock) and nvidia-smi -q (wall clock) of one GPU whose
    memory failed: the DBE in the kernel log, and the report's counters after it."""
    assert "): 48," in XID_48
    node = tmp_path / "node7"
    node.mkdir()
    (node / "dmesg.txt").write_text(XID_48.replace("0000:1a:00", "0000:07:00") + "\n")
    report = SMI.read_text().splitlines(keepends=True)
    # after a DBE: 2 volatile DRAM uncorrectable errors, a row remap pending (the
    # pending form is leptonai/gpud#80's; the other lines are the real report's)
    report[115] = report[115].replace(": 0", ": 2")
    report[127] = report[127].replace(": 0", ": 4")
    report[128] = report[128].replace(": No", ": Yes")
    assert "DRAM Uncorrectable" in report[115] and "Pending" in report[128]
    (node / "nvidia-smi-q.txt").write_text("".join(report))
    return node


def assert_one_clock(finding: Finding) -> None:
    """Times of one clock: wall times are epochs, boot times kept apart."""
    assert finding.clock in ("wall", "boot")
    if finding.clock == "wall":
        assert finding.first_ts is not None and finding.first_ts > 1e9
        assert finding.last_ts is not None and finding.last_ts > 1e9
    if finding.boot_first_ts is not None:
        assert finding.clock == "wall" and finding.boot_first_ts < 1e9


def test_a_gpu_memory_incident_from_dmesg_and_smi_is_one_finding_on_the_wall_clock(
    tmp_path: Path,
) -> None:
    node_folder(tmp_path)
    findings = replay([str(tmp_path)], load(None))
    (ecc,) = [f for f in findings if f.detector == "hbm_ecc"]
    assert_one_clock(ecc)
    assert (ecc.first_ts, ecc.last_ts, ecc.clock) == (SMI_TS, SMI_TS, "wall")
    assert (ecc.boot_first_ts, ecc.boot_last_ts) == (1900.0006, 1900.0006)
    assert "Xid 48" in ecc.summary and "row remap is pending" in ecc.summary
    assert ecc.to_json()["clock"] == "wall"
    for finding in findings:
        assert_one_clock(finding)


def test_the_order_the_inputs_arrive_in_does_not_matter(tmp_path: Path) -> None:
    # watch reads whichever file grows first: the report before the kernel log here
    node = node_folder(tmp_path)
    batches = {
        name: concat(list(read_paths([str(node / name)], ReadOptions(node="node7"), ReadStats())))
        for name in ("dmesg.txt", "nvidia-smi-q.txt")
    }
    results = []
    for order in (("dmesg.txt", "nvidia-smi-q.txt"), ("nvidia-smi-q.txt", "dmesg.txt")):
        engine = Engine(build(load(None)))
        for name in order:
            engine.process(batches[name])
        (ecc,) = [f for f in engine.finish() if f.detector == "hbm_ecc"]
        assert_one_clock(ecc)
        results.append((ecc.first_ts, ecc.last_ts, ecc.clock, ecc.boot_first_ts, ecc.count))
    assert results[0] == results[1] == (SMI_TS, SMI_TS, "wall", 1900.0006, 3)


def test_a_dcgm_xid_and_a_dmesg_xid_of_one_gpu_in_one_batch(tmp_path: Path) -> None:
    node = tmp_path / "gpu-1"
    node.mkdir()
    code = int(re.search(r"\): (\d+),", XID_48)[1])  # type: ignore[index]
    (node / "dmesg.txt").write_text(XID_48.replace("0000:1a:00", "0000:3b:00") + "\n")
    (node / "dcgm.prom").write_text(
        f'DCGM_FI_DEV_XID_ERRORS{{gpu="0",pci_bus_id="00000000:3B:00.0",Hostname="gpu-1"}} '
        f"{code} 1717496983000\n"
    )
    findings = replay([str(tmp_path)], load(None))
    assert findings
    for finding in findings:
        assert_one_clock(finding)
    (ecc,) = [f for f in findings if f.detector == "hbm_ecc"]
    assert (ecc.first_ts, ecc.boot_first_ts) == (1717496983.0, 1900.0006)


def test_boot_only_findings_say_so_and_show_as_seconds_since_boot(tmp_path: Path) -> None:
    node = tmp_path / "node7"
    node.mkdir()
    (node / "dmesg.txt").write_text(XID_48 + "\n")
    (ecc,) = replay([str(tmp_path)], load(None))
    assert (ecc.first_ts, ecc.clock, ecc.boot_first_ts) == (1900.0006, "boot", None)
    assert when(ecc.first_ts, ecc.clock) == "boot+1900s"
    assert when(SMI_TS, "wall") == "2023-03-04 04:56:17"


# --- the rules, one by one ----------------------------------------------------------


def test_the_book_keeps_the_clocks_apart() -> None:
    book = IncidentBook(gap_s=60.0)
    incident, new = book.touch(("gpu",), Span(100.0, 120.0, "boot"), 1)
    assert new and incident.when == Span(100.0, 120.0, "boot")
    # wall time arrives: it wins, the boot times move apart; no gap can be judged
    again, new = book.touch(("gpu",), Span(1.7e9, 1.7e9 + 5, "wall"), 1)
    assert again is incident and not new
    assert incident.when == Span(1.7e9, 1.7e9 + 5, "wall")
    assert (incident.boot_first_ts, incident.boot_last_ts) == (100.0, 120.0)
    # later boot times join the boot times, never the wall ones
    book.touch(("gpu",), Span(90.0, 130.0, "boot"), 1)
    assert incident.when == Span(1.7e9, 1.7e9 + 5, "wall")
    assert (incident.boot_first_ts, incident.boot_last_ts, incident.count) == (90.0, 130.0, 3)
    # an untimed event changes no time; a wall time past the gap opens a new incident
    book.touch(("gpu",), UNTIMED, 1)
    assert incident.when == Span(1.7e9, 1.7e9 + 5, "wall")
    _, new = book.touch(("gpu",), Span(1.7e9 + 100, 1.7e9 + 100, "wall"), 1)
    assert new
    # and the id's time stays the first evidence's, on whatever clock it came
    assert incident.opened_ts == 100.0


def test_the_book_gap_checks_within_one_clock() -> None:
    book = IncidentBook(gap_s=60.0)
    first, _ = book.touch(("gpu",), Span(100.0, 100.0, "boot"), 1)
    assert book.current(("gpu",), Span(150.0, 150.0, "boot")) is first
    assert book.current(("gpu",), Span(200.0, 200.0, "boot")) is None
    assert book.current(("gpu",), Span(1.7e9, 1.7e9, "wall")) is first


@pytest.mark.parametrize(
    ("clocks", "expected"),
    [
        (["boot", "wall", "boot", "wall"], Span(1.7e9 + 1, 1.7e9 + 3, "wall", 10.0, 12.0)),
        (["boot", "boot", "none", "boot"], Span(10.0, 13.0, "boot")),
        (["none", "none", "none", "none"], UNTIMED),
    ],
)
def test_span_takes_the_wall_clock_when_it_has_it(clocks: list[str], expected: Span) -> None:
    times = {"wall": [1.7e9, 1.7e9 + 1, 1.7e9 + 2, 1.7e9 + 3], "boot": [10.0, 11.0, 12.0, 13.0]}
    ts = np.asarray([times[c][i] if c != "none" else np.nan for i, c in enumerate(clocks)])
    batch = make_batch(4, kind="xid", ts=ts, clock=(clocks, np.arange(4)), source="kmsg", node="n")
    assert span(batch, np.arange(4)) == expected


@st.composite
def _timed_rows(draw: st.DrawFn, events: int, rows: int) -> tuple[EventBatch, np.ndarray]:
    """A batch of up to ``events`` events on any clock, timed or not, and up to ``rows``
    of its rows (repeats allowed)."""
    drawn = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["wall", "boot", "none"]),
                st.one_of(st.just(np.nan), st.floats(-1e12, 1e12, allow_nan=False)),
            ),
            min_size=1,
            max_size=events,
        )
    )
    clocks = [clock for clock, _ in drawn]
    ts = np.asarray([t for _, t in drawn])
    batch = make_batch(len(drawn), kind="xid", ts=ts, clock=(clocks, np.arange(len(drawn))))
    picked = draw(st.lists(st.integers(0, len(drawn) - 1), min_size=1, max_size=rows))
    return batch, np.asarray(picked, dtype=np.intp)


@settings(max_examples=300, deadline=None)
@given(_timed_rows(events=12, rows=8))
def test_a_few_rows_read_one_by_one_span_as_the_array_calls_do(
    timed: tuple[EventBatch, np.ndarray],
) -> None:
    batch, rows = timed
    assert _span_of_few(batch, rows) == _span_of_many(batch, rows)


@settings(max_examples=300, deadline=None)
@given(_timed_rows(events=30, rows=40), st.data())
def test_the_spans_of_many_groups_at_once_are_each_groups_span(
    timed: tuple[EventBatch, np.ndarray], data: st.DataObject
) -> None:
    batch, rows = timed
    cuts = data.draw(st.sets(st.integers(1, rows.size - 1))) if rows.size > 1 else set()
    bounds = [0, *sorted(cuts), rows.size]
    expected = [span(batch, rows[a:b]) for a, b in pairwise(bounds)]
    assert spans(batch, rows, bounds) == expected

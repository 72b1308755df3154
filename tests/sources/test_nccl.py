"""NCCL and PyTorch ProcessGroupNCCL records, real and in every wording."""

from __future__ import annotations

import calendar

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetwatch.events import BatchBuilder
from fleetwatch.sources import nccl
from fleetwatch.sources.context import FileContext, Identities, ReadOptions, ReadStats
from fleetwatch.sources.envelope import NO_ENVELOPE
from tests.conftest import DATA, parse


def test_real_pytorch_2_11_nccl_2_28_watchdog_timeout() -> None:
    events = parse(DATA / "h100" / "nccl-watchdog-timeout.log", year=2026)
    got = [
        (
            e["kind"],
            e["line"],
            e["rank"],
            e.get("seq"),
            e.get("last_enqueued"),
            e.get("last_completed"),
        )
        for e in events
    ]
    assert got == [
        ("nccl_init", 92, 0, None, None, None),
        ("nccl_timeout", 95, 0, 4, None, None),
        ("nccl_progress", 96, 0, 4, 4, 3),  # PyTorch 2.11 wording
        ("nccl_progress", 103, 0, None, 4, 3),  # the dump record's older wording
        ("nccl_timeout", 111, 0, 4, None, None),  # watchdog thread terminated
        ("nccl_timeout", 122, 0, 4, None, None),  # ... and re-thrown as what()
    ]
    init = events[0]
    assert (init["node"], init["pci"], init["gpu"], init["value"]) == ("vm", "0000:00:06.0", 0, 1.0)
    assert init["clock"] == "none"  # nothing stamped comes before NCCL's INFO lines
    timeout = events[1]
    assert (timeout["op"], timeout["value"], timeout["node"]) == ("ALLREDUCE", 3000.0, "vm")
    assert timeout["ts"] == calendar.timegm((2026, 11, 26, 15, 59, 33)) + 0.302415342
    assert events[4]["detail"] == "watchdog thread terminated"


def test_every_wording_in_a_four_rank_job() -> None:
    events = parse(DATA / "nccl" / "job-4-ranks.log", year=2024)
    got = [(e["kind"], e.get("rank"), e.get("seq"), e.get("op"), e["node"]) for e in events]
    assert got == [
        ("nccl_init", 0, None, None, "gpu-node-3"),
        ("nccl_init", 1, None, None, "gpu-node-3"),
        ("nccl_init", 2, None, None, "gpu-node-4"),
        ("nccl_init", 3, None, None, "gpu-node-4"),
        ("nccl_timeout", 0, 96, "_ALLGATHER_BASE", "gpu-node-3"),
        ("nccl_progress", 1, 96, None, "gpu-node-3"),
        ("nccl_progress", 2, 96, None, "gpu-node-4"),
        ("nccl_timeout", 3, 81, "ALLREDUCE", "gpu-node-4"),  # no NumelIn, no time stamp
        ("nccl_timeout", 1, 5, "ALLREDUCE", "gpu-node-3"),
        ("nccl_error", 0, None, None, "gpu-node-3"),
        ("nccl_error", 0, None, None, "gpu-node-3"),
        ("nccl_error", None, None, None, "gpu-node-4"),
        ("nccl_error", None, None, None, "gpu-node-4"),
        ("nccl_timeout", 3, 96, "_ALLGATHER_BASE", "gpu-node-4"),
    ]
    inits = events.of("nccl_init")
    assert [(e["pci"], e.get("gpu")) for e in inits] == [
        ("0000:07:00.0", 4),  # nvmlDev, never cudaDev
        ("0000:1b:00.0", 5),
        ("0000:cb:00.0", None),  # NCCL before nvmlDev was printed
        ("0000:db:00.0", 1),
    ]
    assert all(e["value"] == 4.0 for e in inits)
    progress = events.of("nccl_progress")
    assert [(e["last_enqueued"], e["last_completed"]) for e in progress] == [(96, 95), (96, 95)]
    timeouts = events.of("nccl_timeout")
    assert timeouts[2]["detail"] == "timed out in blocking wait"
    assert timeouts[3]["detail"] == "watchdog thread terminated"
    errors = events.of("nccl_error")
    assert errors[0]["detail"].startswith("Heartbeat monitor timed out!")
    assert errors[1]["detail"] == (
        "Terminating the process after attempting to dump debug info, due to ProcessGroupNCCL "
        "watchdog hang."
    )
    assert errors[2]["detail"].startswith(
        "NET/IB : Got completion from peer 10.0.3.3<43210> with status=12"
    )
    assert "vendor err 129" in errors[2]["detail"] and "hca mlx5_3" in errors[2]["detail"]
    assert "unhandled system error" in errors[3]["detail"]
    # the launcher's "3: " line has no stamp: it takes the nearest stamped line's time
    assert timeouts[1]["ts"] == events.of("nccl_progress")[1]["ts"]


def test_a_pasted_record_wrapped_after_timeout_reads_whole_with_pytorch_s_month() -> None:
    # PyTorch's logger does not pad the month (E909 is 9 September); a terminal paste
    # wraps the record before "WorkNCCL(" and before "by watchdog".
    events = parse(DATA / "nccl" / "per-node" / "cn-d004" / "stderr.log", year=2024)
    timeouts = [e for e in events if e["kind"] == "nccl_timeout"]
    assert [(e["rank"], e["seq"], e["op"], e["line"]) for e in timeouts] == [
        (14, 2070, "REDUCE", 1),
        (12, 2070, "REDUCE", 3),
        (11, 2070, "REDUCE", 5),
        (15, 2070, "REDUCE", 7),
    ]
    assert timeouts[0]["ts"] == calendar.timegm((2024, 9, 9, 9, 55, 29)) + 0.307629539
    (progress,) = [e for e in events if e["kind"] == "nccl_progress"]
    assert (progress["rank"], progress["seq"], progress["last_completed"]) == (12, 2070, 2069)
    assert len(events) == 5  # the continuation lines are not records of their own


_PIECES = (
    "gpu-node-1:7000:7100 [0] NCCL INFO ", "[rank3]:", "[Rank 3] ", "[PG 0 Rank 3] ",
    "comm 0x55 rank 0 nranks 16 cudaDev 0 nvmlDev 0 busId 18000", " - Init ", "COMPLETE",
    "WorkNCCL(SeqNum=4, OpType=ALLREDUCE, Timeout(ms)=600000)", "Work", "NCCL(",
    " timeout", " timed out", "work sequence id: 4 PG status: last ", "enqueued work: 4, ",
    "last completed work: 3", "Last ", "NCCL work: 4, last completed NCCL work: 3",
    "[F1126 10:00:00.0 ProcessGroupNCCL.cpp:1] ", "[E1126 10:00:00.0 ProcessGroupNCCL.cpp:1] ",
    "NCCL WARN ", "NCCL error: ", "Heartbeat monitor timed out", "ncclSystemError",
    "ncclUnhandledCudaError", "ncclInternalError", "ncclRemoteError", "unhandled system error",
    "Channel 00/24 : 0 1", "NET/IB : Using [0]mlx5_0:1/IB", " ", "x",
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=8))
def test_a_line_without_a_record_word_holds_no_record(pieces: list[str]) -> None:
    """What the reader passes by (no word of ``RECORD_WORDS``) is what its record
    patterns find nothing in: no event, nothing counted."""
    text = "".join(pieces)
    if any(word in text for word in nccl.RECORD_WORDS):
        return
    stats = ReadStats()
    builder = BatchBuilder()
    ctx = FileContext("f", "n", ReadOptions(), stats, Identities(), builder, 0.0)
    nccl._record(text, NO_ENVELOPE, nccl._PREFIX.search(text), 1, nccl._memo(ctx), ctx)
    assert len(builder) == 0 and not stats.unreadable

"""The compiled loop over dcgm-exporter samples (``Scanner.samples``) and the Python path
read the same events and the same state: generated scrapes whose series repeat (the
loop reads a series' samples once Python has read one and told it), with the values,
time stamps and labels it must hand back, and the lines between samples that change
what a sample would learn or fill in (a GPU's identity from the kernel log, a host
from a stamped line, a reboot), cut into any chunks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetwatch.sources import dcgm, kmsg_compiled
from fleetwatch.sources.registry import LINE_READERS
from tests.sources.test_compiled import assert_same, needs_build, read, texts_read_by

_METRICS = (
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_XID_ERRORS",
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_L3",
    "DCGM_FI_DEV_SM_CLOCK",  # no catalog row: no event
    "DCGM_EXP_CLOCK_EVENTS_COUNT",  # a per-reason count: back to the Python path
    "DCGM_FI_DEV_GPU_TEMP_",  # not a metric it knows either
)
_LABELS = (
    'gpu="0",UUID="GPU-a",pci_bus_id="00000000:3B:00.0",Hostname="gpu-node-1"',
    'gpu="1",UUID="GPU-b",pci_bus_id="00000000:3B:00.0"',  # the same slot, another GPU
    'gpu="0",pci_bus_id="00000000:3b:00.0",pod="train-0",namespace="ml"',
    'gpu="2",UUID="GPU-c"',  # no PCI address: nothing learned
    'gpu="99999999999",UUID="GPU-d",pci_bus_id="0000:07:00.0"',  # torn: out of range
    'gpu="0",UUID="GPU-a",pci_bus_id="00000000:3B:00.0",GPU_I_ID="1",GPU_I_PROFILE="1g.10gb"',
    'gpu="0",clock_event="hw_thermal",window_size_in_ms="5000",pci_bus_id="0000:07:00.0"',
    'gpu="3",UUID="GPU-é"',  # past ASCII: the Python path
    'gpu="0",note="NVSMI LOG"',  # nvidia-smi's reader claims the line
    'gpu="0",note="[I0101 12:00:00"',  # a glog stamp: a stamped line
    "",
)
_VALUES = (
    "71", "0", "79", "3.5", ".5", "5.", "-0", "+2", "1e5", "1E-3", "1e999", "-1e999",
    "NaN", "+Inf", "-inf", "2147483632", "140737488355328", "9223372036854775807",
    "1_0", "0x10", "abc", "", "12345678901234567890123456789012345678901234567890123456789012345",
)  # fmt: skip
_STAMPS = (
    "", " 1700000000000", " 1700000030000", " -1", " +1700000000000", " 1_700000000000",
    " 999999999999999", " 9999999999999999", " 253402300799000", " 253402300800000",
    " 00001700000000000", " x", " 1 2",
)  # fmt: skip
_OTHER = (
    "# HELP DCGM_FI_DEV_GPU_TEMP GPU temperature (in C).",
    "# TYPE DCGM_FI_DEV_GPU_TEMP gauge",
    "[ 5.000000] NVRM: GPU at PCI:0000:3b:00: GPU-c",  # another GPU in the slot
    "[ 5.100000] NVRM: GPU at PCI:0000:3b:00: GPU-a",
    "NVRM: GPU Board Serial Number: 1320321057807",
    "[ 1.000000] Linux version 6.8.0",  # a reboot: the boot clock runs back
    "Dec  2 10:00:00 gpu-node-9 kernel: [  12.500000] pcieport 0000:00:01.0: AER: x",
    "2024-05-01T10:00:00+00:00 gpu-node-8 kernel: usb 1-1: new device",  # another host
    "9999-12-31T23:59:59.9-01:00 host kernel: x",  # a time past 9999: no time for the next
    "go_gc_duration_seconds 0.5",
    "",
)


@st.composite
def _head(draw: st.DrawFn) -> str:
    metric = draw(st.sampled_from(_METRICS))
    labels = draw(st.sampled_from(_LABELS))
    return f"{metric}{{{labels}}}" if labels or draw(st.booleans()) else metric


@st.composite
def _scrape(draw: st.DrawFn) -> list[str]:
    # a few series, sampled over and over (the loop reads them once told), each sample
    # with any value and time stamp, between lines that are not samples
    heads = draw(st.lists(_head(), min_size=1, max_size=5))
    sample = st.builds(
        "{}{}{}{}".format,
        st.sampled_from(heads),
        st.sampled_from([" ", " ", "\t", "  "]),
        st.sampled_from(_VALUES),
        st.sampled_from(_STAMPS),
    )
    return draw(
        st.lists(
            st.one_of(sample, sample, sample, st.sampled_from(_OTHER)), min_size=10, max_size=60
        )
    )


@needs_build
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    _scrape(),
    st.sampled_from(["\n", "\r\n"]),
    st.one_of(st.none(), st.integers(1, 400)),
    st.booleans(),
)
def test_generated_scrapes_read_the_same(
    lines: list[str], newline: str, chunk: int | None, seed: bool
) -> None:
    assert_same(newline.join(lines).encode(), chunk=chunk, seed=seed)


# decimals as a sample spells them, the many-digit and many-place ones too: the loop
# divides where that is one exact rounding (15 digits, 22 places) and asks CPython else
_DECIMAL = st.from_regex(r"[+-]?[0-9]{0,20}(\.[0-9]{0,25})?", fullmatch=True).filter(
    lambda text: any(c.isdigit() for c in text)
)


@needs_build
@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_DECIMAL, st.sampled_from(_VALUES)), min_size=1, max_size=20))
def test_every_decimal_a_sample_holds_is_the_double_python_reads(values: list[str]) -> None:
    lines = [f"{_TEMP}}} {v} {1700000000000 + 30000 * i}" for i, v in enumerate(["60", *values])]
    assert_same("\n".join(lines).encode())


@needs_build
def test_decimals_at_the_edges_of_one_rounding_are_the_doubles_python_reads() -> None:
    edges = (
        "-0", "-0.0", "+0.", "999999999999999", "9999999999999999", "0.000000000000000000001",
        "0.0000000000000000000001", "0.00000000000000000000001", "123456789012345.6", "0.1", "0.3", "2.675",
        "000000000000000000012.5", "8.589973e9", "1.7976931348623157", ".0000001",
    )  # fmt: skip
    lines = [f"{_TEMP}}} {v} {1700000000000 + 30000 * i}" for i, v in enumerate(["60", *edges])]
    assert_same("\n".join(lines).encode())
    values = read("\n".join(lines).encode(), pure=False, name="node-a.prom")["batches"][0]
    assert np.signbit(values["value"][1]), "-0 is read as -0.0"


def _scrapes(n: int) -> bytes:
    lines = []
    for i in range(n):
        for gpu in range(4):
            for metric in (
                "DCGM_FI_DEV_GPU_TEMP",
                "DCGM_FI_DEV_XID_ERRORS",
                "DCGM_FI_DEV_SM_CLOCK",
            ):
                labels = f'gpu="{gpu}",UUID="GPU-{gpu}",pci_bus_id="0000:{gpu + 7:02x}:00.0"'
                value = 0 if metric.endswith("XID_ERRORS") else 60 + i % 7  # 0: no Xid
                lines.append(f"{metric}{{{labels}}} {value} {1700000000000 + 30000 * i}")
    return "\n".join(lines).encode()


@needs_build
def test_batches_fill_and_seal_alike() -> None:
    # 400 scrapes of 8 events: batches of 1024 sealed at the same rows either way
    assert_same(_scrapes(400))
    assert_same(_scrapes(400), chunk=5000, seed=True)


@pytest.fixture
def by_python(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sample lines the Python path reads (dcgm.read_line), as it reads them."""
    return texts_read_by(monkeypatch, dcgm, "read_line")


@needs_build
def test_the_loop_reads_what_python_told_it(by_python: list[str]) -> None:
    """Python reads a series' first sample; the loop reads the rest."""
    read(_scrapes(100), pure=False, name="node-a.prom")
    assert len(by_python) == 12  # the first scrape: 4 GPUs, 3 metrics
    by_python.clear()
    read(_scrapes(100), pure=True, name="node-a.prom")
    assert len(by_python) == 100 * 12


_TEMP = 'DCGM_FI_DEV_GPU_TEMP{gpu="0",pci_bus_id="0000:3b:00.0"'
_POWER = 'DCGM_FI_DEV_POWER_USAGE{gpu="0",pci_bus_id="0000:3b:00.0"'


def _samples_said(data: bytes, field: str) -> list[object]:
    """``field`` of each dcgm event, the compiled loop on."""
    batches = read(data, pure=False, name="node-a.prom")["batches"]
    return [e.get(field) for b in batches for e in b.records() if e["source"] == "dcgm"]


@needs_build
@pytest.mark.parametrize(
    ("lines", "field", "before", "after"),
    [
        # another GPU learned in the slot between two samples: its UUID is filled in
        (
            [f"{_TEMP}}} 60 1700000000000", f"{_POWER}}} 100 1700000000000",
             "[ 5.000000] NVRM: GPU at PCI:0000:3b:00: GPU-c",
             f"{_POWER}}} 101 1700000030000", f"{_TEMP}}} 61 1700000030000"],
            "uuid",
            None,
            "GPU-c",
        ),
        # a reboot forgets the board serial learned before it
        (
            ["[ 5.000000] NVRM: GPU at PCI:0000:3b:00: GPU-a",
             "NVRM: GPU Board Serial Number: 1320321057807",
             f'{_TEMP},UUID="GPU-a"}} 60 1700000000000', f'{_POWER},UUID="GPU-a"}} 100 1700000000000',
             "[ 1.000000] NVRM: loading NVIDIA UNIX x86_64 Kernel Module",
             f'{_POWER},UUID="GPU-a"}} 101 1700000030000', f'{_TEMP},UUID="GPU-a"}} 61 1700000030000'],
            "serial",
            "1320321057807",
            None,
        ),
    ],
)  # fmt: skip
def test_a_series_told_before_a_change_goes_back_to_python(
    lines: list[str], field: str, before: object, after: object
) -> None:
    """What a series' samples fill in from the GPU identities is theirs only while
    those stand: after a change the loop hands the series back to be told again."""
    data = "\n".join(lines).encode()
    assert_same(data)
    assert _samples_said(data, field) == [before, before, after, after]


@needs_build
def test_a_sample_that_carries_a_stamp_gives_its_time_to_the_lines_after_it() -> None:
    """A sample line with a klog stamp in its labels is a stamped line: the loop stops
    before it, and the samples after it without a time stamp take its time."""
    glog = 'DCGM_FI_DEV_POWER_USAGE{gpu="0",note="[I0101 12:00:00"}'
    lines = [
        f"{glog} 100 1700000000000",
        "2024-05-01T10:00:00+00:00 gpu-node-8 kernel: usb 1-1: new device",
        f"{_TEMP}}} 60",  # the time of the line before it
        f"{glog} 101 1700000030000",
        f"{_TEMP}}} 61",  # the glog stamp's time
    ]
    data = "\n".join(lines).encode()
    assert_same(data)
    temperatures = _samples_said(data, "ts")[1::2]
    assert len(temperatures) == 2 and temperatures[0] != temperatures[1]


def test_of_the_readers_before_dcgm_only_nvidia_smi_claims_a_sample_line() -> None:
    """The loop reads a line that starts as a sample unless it holds "NVSMI LOG": the
    claims of the readers asked before dcgm (a JSON object, an nvidia-smi title or GPU
    header, an nvlink counter) are a line's start, and a sample's start is none."""
    before = LINE_READERS[: [r.name for r in LINE_READERS].index("dcgm")]
    bodies = (
        '{gpu="0"} 1',
        " GPU 0: NVIDIA H100 (UUID: GPU-a)",
        "{} 1",
        " Link 0: Replay Errors: 3",
        'X{note="NVSMI LOG"} 1',
        "GPU 0000:3B:00.0",
        " Clocks Event Reasons",
        " NVSMI LOG",
    )
    for start in dcgm.READER.line_starts:
        for body in bodies:
            line = start + body
            claimed = any(r.claims is not None and r.claims(line) for r in before)
            assert claimed == any(w.decode() in line for w in kmsg_compiled._BEFORE_SAMPLES)


@needs_build
def test_a_series_of_blank_samples_is_counted_by_the_loop(by_python: list[str]) -> None:
    """A field the GPU does not support is DCGM's blank in every scrape: after its first,
    the loop counts them as skipped; a real value after them goes back to Python."""
    done = _fifty_then_one(f"{_TEMP}}}", 2**47, 61, by_python)
    assert done["stats"][3] == {("dcgm", "blank value"): 50}


@needs_build
def test_a_per_reason_count_of_zero_is_passed_by_in_the_loop(by_python: list[str]) -> None:
    """dcgm-exporter's clock event counts are one series per reason, almost all 0 (the
    reason did not occur): after the first, the loop passes them by; a count above 0
    is an event, read in Python."""
    head = (
        'DCGM_EXP_CLOCK_EVENTS_COUNT{gpu="0",pci_bus_id="0000:3b:00.0",'
        'clock_event="hw_thermal",window_size_in_ms="5000"}'
    )
    done = _fifty_then_one(head, 0, 3, by_python)
    assert sum(len(b) for b in done["batches"]) == 1


def _fifty_then_one(head: str, passed: float, last: float, by_python: list[str]) -> Any:
    """50 samples of ``head`` worth ``passed``, then one worth ``last``: read the same
    either way, and in Python only the first and the last (what ``read`` left)."""
    lines = [f"{head} {passed} {1700000000000 + 30000 * i}" for i in range(50)]
    lines.append(f"{head} {last} 1700001500000")
    data = "\n".join(lines).encode()
    assert_same(data)
    by_python.clear()
    done = read(data, pure=False, name="node-a.prom")
    assert by_python == [lines[0], lines[-1]]
    return done


@needs_build
def test_a_value_past_a_double_goes_back_to_python() -> None:
    """1e999 is float('inf'), which is past DCGM's blank (skipped); -1e999 is out of
    range: each counted as Python counts it, never a sample."""
    lines = [f"{_TEMP}}} {v} {1700000000000 + 30000 * i}" for i, v in enumerate(_PAST)]
    data = "\n".join(lines).encode()
    assert_same(data)
    stats = read(data, pure=False, name="node-a.prom")["stats"]
    assert stats[2:] == ({("dcgm", "out of range"): 1}, {("dcgm", "blank value"): 1})


_PAST = ("60", "1e999", "-1e999", "61")

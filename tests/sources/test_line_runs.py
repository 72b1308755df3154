"""Runs of single-line records (``Reader.line_starts``: dcgm-exporter samples) read in
one loop give what the line-by-line path gives: the same batches, statistics and
learned state, for every test file and for generated mixes of sample lines with the
lines that must stop a run (stamped lines, an earlier reader's, binary, too long), cut
into any chunks.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetwatch.sources.stream import LineStream
from tests.conftest import DATA
from tests.sources.test_compiled import FILES, read, same_batches

SCRAPE = (DATA / "dcgm" / "scrape.prom").read_bytes().splitlines()
HEAD = b'{gpu="0",UUID="GPU-5fc0bcec",pci_bus_id="00000000:3B:00.0",Hostname="gpu-node-17"'
LINES = [
    *SCRAPE[:12],
    b"DCGM_FI_DEV_GPU_TEMP" + HEAD + b"} 71 1700000000000",
    b"DCGM_FI_DEV_GPU_TEMP" + HEAD + b"} 72 1700000030000\r",
    b"DCGM_FI_DEV_XID_ERRORS" + HEAD + b"} 79",
    b'DCGM_EXP_CLOCK_EVENTS_COUNT{gpu="1",clock_event="hw_thermal",window_size_in_ms="5000"} 3',
    b"DCGM_FI_DEV_GPU_TEMP 45",  # no labels
    b"DCGM_FI_DEV_GPU_TEMP" + HEAD + b"} not-a-number",
    b"DCGM_FI_DEV_GPU_TEMP" + HEAD + b"} 1 2 3",  # too many fields
    b"DCGM_FI_DEV_GPU_TEMP" + HEAD + b"} 4\x005",  # binary
    b'DCGM_FI_DEV_GPU_TEMP{gpu="2",note="NVSMI LOG"} 40',  # nvidia-smi's reader claims it
    b'DCGM_FI_DEV_GPU_TEMP{gpu="3",x="[I0101 12:00:00"} 41',  # a glog stamp: a stamped line
    b'DCGM_FI_DEV_GPU_TEMP{gpu="4",x="' + b"y" * 300 + b'"} 42',  # too long at 256
    b'DCGM_FI_DEV_GPU_TEMP{gpu="5",UUID="GPU-\xff\xfe"} 43',  # not UTF-8
    b"# HELP DCGM_FI_DEV_GPU_TEMP GPU temperature (in C).",
    b"# TYPE DCGM_FI_DEV_GPU_TEMP gauge",
    b"go_gc_duration_seconds 0.5",  # another exporter's metric: no keyword
    b"",
    b"[ 1843.308145] NVRM: Xid (PCI:0000:3b:00): 79, pid=1, GPU has fallen off the bus.",
    b"Dec  2 10:00:00 gpu-node-9 kernel: [  12.500000] pcieport 0000:00:01.0: AER: "
    b"Corrected error received: 0000:3b:00.0",
    b"2024-05-01T10:00:00.000000+00:00 gpu-node-9 kernel: NVRM: GPU at PCI:0000:3b:00: "
    b"GPU-5fc0bcec",
    b"gpu-node-9:1234:1234 [0] NCCL INFO Channel 00/02 : 0 1",  # takes the nearest time
    b'{"kind": "xid", "code": 79, "node": "n"}',
]


def assert_same(data: bytes, chunk: int | None = None, max_line: int | None = None) -> None:
    by_line = read(data, pure=False, chunk=chunk, name="node-a.prom", runs=False, max_line=max_line)
    in_runs = read(data, pure=False, chunk=chunk, name="node-a.prom", runs=True, max_line=max_line)
    same_batches(by_line.pop("batches"), in_runs.pop("batches"))
    assert by_line == in_runs


def test_every_test_file_reads_the_same_in_runs() -> None:
    for path in FILES:
        assert_same(path.read_bytes())


def test_a_scrape_reads_the_same_in_runs_in_any_chunks() -> None:
    data = b"\n".join(SCRAPE) + b"\n"
    for chunk in (1, 7, 100, 4096):
        assert_same(data, chunk)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(LINES), max_size=40),
    st.sampled_from([b"\n", b"\r\n"]),
    st.booleans(),
    st.one_of(st.none(), st.integers(1, 200)),
    st.sampled_from([256, None]),
)
def test_generated_mixes_read_the_same_in_runs(
    lines: list[bytes], newline: bytes, last_newline: bool, chunk: int | None, max_line: int | None
) -> None:
    data = newline.join(lines) + (newline if last_newline and lines else b"")
    assert_same(data, chunk, max_line)


def test_a_run_is_read_in_one_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop is used: a scrape's samples go through it, not through dispatch."""
    calls = []
    real = LineStream._run

    def counting(self: LineStream, *args: Any) -> Any:
        found = real(self, *args)
        calls.append(found)
        return found

    monkeypatch.setattr(LineStream, "_run", counting)
    read(b"\n".join(SCRAPE) + b"\n", pure=False, name="node-a.prom")
    assert calls and all(found is not None for found in calls)
    assert len(calls) < len(SCRAPE) / 4  # whole runs, not a call per line

"""dcgm-exporter scrapes through prometheus-client's parser."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetwatch.events import BatchBuilder
from fleetwatch.sources import dcgm
from fleetwatch.sources.context import FileContext, Identities, ReadOptions, ReadStats
from tests.conftest import DATA, parse, parse_text

SCRAPE = DATA / "dcgm" / "scrape.prom"


def test_every_dcgm_field_becomes_its_event() -> None:
    events = parse(SCRAPE)
    got = [(e["kind"], e["gpu"], e.get("scope"), e.get("value"), e.get("code")) for e in events]
    assert got == [
        ("temperature", 0, None, 71.0, None),
        ("temperature", 1, None, 44.0, None),
        ("memory_temperature", 0, None, 83.0, None),
        ("power", 0, None, 689.214, None),
        ("pcie_replay", 0, None, 12.0, None),
        ("xid", 1, None, None, 48),  # XID_ERRORS 0 on GPU 0 means no XID yet
        ("ecc_corrected", 0, "volatile", 3.0, None),
        ("ecc_uncorrected", 0, "volatile", 0.0, None),
        ("ecc_uncorrected", 1, "volatile", 2.0, None),
        ("ecc_uncorrected", 1, "aggregate", 7.0, None),  # GPU 0's blank SBE_AGG is no value
        ("remap_correctable", 1, None, 0.0, None),
        ("remap_uncorrectable", 1, None, 2.0, None),
        ("remap_pending", 1, None, 1.0, None),
        ("remap_failure", 1, None, 0.0, None),
        ("clock_event", 0, None, 4.0, None),  # the old THROTTLE name
        ("clock_event", 1, None, 64.0, None),  # the new EVENT name
        ("temperature", 2, None, 52.0, None),
    ]
    assert events.stats.skipped == {("dcgm", "blank value"): 1}
    assert events.stats.unreadable == {("dcgm", "malformed sample"): 1}


def test_labels_name_the_gpu_node_and_workload() -> None:
    events = parse(SCRAPE)
    first = events[0]
    assert first["node"] == "gpu-node-17"
    assert first["pci"] == "0000:3b:00.0"
    assert first["uuid"] == "GPU-5fc0bcec-8a5a-7f5e-c1a3-9d6b2e0f4a11"
    assert (first["pod"], first["namespace"]) == ("llm-pretrain-0", "ml")
    assert first["source"] == "dcgm" and first["line"] == 6
    assert "pod" not in events[1]  # empty labels are absent, not ""
    mig = events[-1]
    assert mig["node"] == "gpu-node-18"  # lowercase hostname label
    assert mig["detail"] == "MIG instance 3 1g.10gb"
    assert (mig["ts"], mig["clock"]) == (1722830053.0, "wall")  # the sample's own time stamp


def test_an_infinite_sample_is_out_of_range_and_nan_is_skipped(tmp_path: Path) -> None:
    head = 'DCGM_FI_DEV_PCIE_REPLAY_COUNTER{gpu="0",Hostname="h1",pci_bus_id="00000000:01:00.0"}'
    events = parse_text(tmp_path, f"{head} -Inf\n{head} NaN\n{head} 7\n", name="m.prom")
    assert [e["value"] for e in events] == [7.0]  # JSON cannot write -Infinity
    assert events.stats.unreadable == {("dcgm", "out of range"): 1}
    assert events.stats.skipped == {("dcgm", "NaN value"): 1}


_NAMES = ("DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE", "a:b_c", "9bad", "", "x-y", "a b")
_BLOCK_PARTS = (
    'gpu="0"', 'UUID="GPU-a"', 'x="{"', 'x="}"', 'x="\\""', 'x="a\\\\"', "__name__=\"m\"",
    '"quoted.name"', "bad-label=\"1\"", 'x="1",', " ", "=", '"', "}", "{", ",",
    'gpu="1"', '__x="1"', 'e=""', 'v="a,b=c}"', '_="é"',
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(_NAMES),
            st.lists(st.sampled_from(_BLOCK_PARTS), max_size=4),
            st.sampled_from(["{}", "{", "", " {}"]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_a_label_block_read_once_reads_as_the_parser_reads_each_head(
    heads: list[tuple[str, list[str], str]],
) -> None:
    """Metrics that share a label block share its reading: the same as the Prometheus
    parser gives each whole head, for any name and any block (quotes, braces, a quoted
    metric name, ``__name__``), in any order."""
    ctx = FileContext("f", "n", ReadOptions(), ReadStats(), Identities(), BatchBuilder(), 0.0)
    for name, parts, braces in heads:
        head = name + braces[:-1] + ",".join(parts) + braces[-1:] if braces else name
        assert dcgm._series(head, ctx) == dcgm._parsed(head), head


_LABEL_NAMES = st.one_of(
    st.sampled_from(["gpu", "UUID", "_", "__name__", "__x", "_x", "a1", "1a", "a-b", "", "é"]),
    st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True),
)
# what a value may hold: quotes, escapes, braces, commas, spaces, past ASCII
_LABEL_VALUES = st.text(st.sampled_from('ab0 ,={}"\\\té\x00'), max_size=8)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.tuples(_LABEL_NAMES, _LABEL_VALUES), max_size=5),
    st.sampled_from([",", ",", ", ", " ,"]),
    st.sampled_from(["", ",", " "]),
)
def test_a_plain_label_block_reads_as_the_parser_reads_it(
    pairs: list[tuple[str, str]], comma: str, end: str
) -> None:
    """Where ``_plain_labels`` reads a block itself, it reads what the Prometheus parser
    reads; where it declines (escapes, spaces, reserved or repeated names), the parser
    reads it."""
    block = "{" + comma.join(f'{name}="{value}"' for name, value in pairs) + end + "}"
    mine = dcgm._plain_labels(block)
    if mine is not None:
        parsed = dcgm._parsed("x" + block)
        assert parsed is not None, block
        assert parsed[1].labels == mine, block


def test_dcgm_exporters_own_label_blocks_are_read_without_the_parser() -> None:
    """Every label block of the test scrape that the parser reads (it holds torn lines
    too) is plain, and read alike."""
    heads = [
        line[: line.rfind("}") + 1]
        for line in (DATA / "dcgm" / "scrape.prom").read_text().splitlines()
        if line.startswith("DCGM_") and "{" in line
    ]
    read = 0
    for head in heads:
        parsed = dcgm._parsed(head)
        if parsed is None:
            continue
        assert dcgm._plain_labels(head[head.index("{") :]) == parsed[1].labels, head
        read += 1
    assert read >= 10

"""Prometheus HTTP API answers of dcgm-exporter series, read as dcgm-exporter's own text.

The answers in tests/data/prometheus/ follow the documented format
(prometheus.io/docs/prometheus/latest/querying/api) with label sets dcgm-exporter
printed in public issues (the folder's README cites both).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from fleetwatch.events import BatchBuilder
from fleetwatch.sources.context import FileContext, Identities, ReadOptions, ReadStats
from fleetwatch.sources.files import read_input
from tests.conftest import DATA, parse, parse_text

PROM = DATA / "prometheus"
XID_LABELS = {
    "gpu": "0",
    "UUID": "GPU-96be9fff-fdfd-9b87-88d4-fe5b9a012148",
    "pci_bus_id": "00000000:08:00.0",
    "device": "nvidia0",
    "modelName": "NVIDIA GeForce RTX 3090",
    "Hostname": "debian",
    "err_code": "0",
    "err_msg": "Unknown Error",
}


def _read(data: bytes) -> tuple[list[dict[str, Any]], ReadStats]:
    stats = ReadStats()
    ctx = FileContext("answer", "node", ReadOptions(), stats, Identities(), BatchBuilder(), 0.0)
    for _ in read_input(io.BufferedReader(io.BytesIO(data)), ctx):
        pass
    return [e for batch in ctx.take() for e in batch.records()], stats


def _answer(result: list[Any], result_type: str = "matrix") -> bytes:
    body = {"status": "success", "data": {"resultType": result_type, "result": result}}
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


def _strip(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in ("file", "line")}


def test_a_range_answer_gives_the_xids_and_the_mig_clock_reasons() -> None:
    events = parse(PROM / "query-range-xid.json")
    xids = events.of("xid")
    assert [(e["ts"], e["code"], e["node"], e["pci"], e["gpu"]) for e in xids] == [
        (1716280030.0, 79, "debian", "0000:08:00.0", 0),
        (1716280060.0, 79, "debian", "0000:08:00.0", 0),
    ]  # "0" is no Xid
    clocks = events.of("clock_event")
    assert [(e["value"], e["detail"]) for e in clocks] == [(1.0, "MIG instance 3 1g.6gb")]
    assert all(e["source"] == "dcgm" and e["clock"] == "wall" for e in events)
    assert events.stats.unreadable == {}  # "NaN" is no value, not an error


def test_an_instant_answer_pretty_printed_gives_one_event_per_gpu() -> None:
    events = parse(PROM / "query-vector-pcie-replay.json")
    assert [(e["gpu"], e["value"], e["ts"]) for e in events.of("pcie_replay")] == [
        (gpu, 0.0, 1700000000.123) for gpu in range(4)
    ]
    # DCGM_FI_DEV_POWER_MGMT_LIMIT is dcgm's, but not a metric fleetwatch reads
    assert events.stats.skipped == {("dcgm", "not a dcgm metric"): 1}


def test_a_sample_means_what_the_same_sample_means_in_dcgm_exporters_text(
    tmp_path: Path,
) -> None:
    labels = ",".join(f'{k}="{v}"' for k, v in XID_LABELS.items())
    text = parse_text(
        tmp_path, f"DCGM_FI_DEV_XID_ERRORS{{{labels}}} 79 1716280030000\n", name="scrape.prom"
    )
    answer = parse(PROM / "query-range-xid.json")
    assert [_strip(e) for e in text] == [_strip(answer.of("xid")[0])]


def test_the_documentations_example_holds_no_dcgm_series() -> None:
    events = parse(PROM / "query-up-docs-example.json")
    assert events == []
    assert events.stats.skipped == {("dcgm", "not a dcgm metric"): 2}
    assert events.stats.unreadable == {}


def test_an_error_answer_is_unreadable_with_its_error_type() -> None:
    events = parse(PROM / "query-error-bad-data.json")
    assert events == []
    assert events.stats.unreadable == {("dcgm", "query error (bad_data)"): 1}


SERIES = {"metric": {"__name__": "DCGM_FI_DEV_GPU_TEMP", **XID_LABELS}}


@pytest.mark.parametrize(
    ("answer", "reason", "events"),
    [
        (_answer([])[:-20], ("json", "truncated json"), 0),
        (_answer([{**SERIES, "values": [[1700000000, "NaN"]]}]), None, 0),
        (_answer([{**SERIES, "values": [[1700000000, "9" * 5000]]}]), None, 0),  # inf: blank
        (_answer([{**SERIES, "values": [[10**300, "40"]]}]), ("dcgm", "out of range"), 0),
        (_answer([{**SERIES, "values": [[1e308, "40"]]}]), ("dcgm", "out of range"), 0),
        (_answer([{**SERIES, "values": [["1700000000", "40"]]}]), ("dcgm", "malformed sample"), 0),
        (_answer([{**SERIES, "values": [[1700000000, "hot"]]}]), ("dcgm", "malformed sample"), 0),
        (_answer([{**SERIES, "values": [[1700000000]]}]), ("dcgm", "malformed sample"), 0),
        (_answer([{**SERIES, "values": "40"}]), ("dcgm", "malformed series"), 0),
        (_answer([{"metric": {"__name__": 7}, "values": []}]), ("dcgm", "malformed series"), 0),
        (_answer(["x"]), ("dcgm", "malformed series"), 0),
        (_answer([{**SERIES, "values": [[1700000000, "40"]]}], "scalar"), None, 0),
        (_answer([{**SERIES, "value": [1700000000, "40"]}], "vector"), None, 1),
    ],
)
def test_hostile_answers_are_counted_not_crashing(
    answer: bytes, reason: tuple[str, str] | None, events: int
) -> None:
    got, stats = _read(answer)
    assert len(got) == events
    if reason is not None:
        assert stats.unreadable == {reason: 1}


def test_a_scalar_answer_has_no_series() -> None:
    _, stats = _read(_answer([1700000000, "1"], "scalar"))
    assert stats.unreadable == {("dcgm", "result without series"): 1}


def test_an_instant_vector_of_100k_series_is_read_in_one_pass() -> None:
    # mostly "NaN" (no value): the pass over the series, not the events, is measured
    result = [
        {
            "metric": {
                "__name__": "DCGM_FI_DEV_GPU_TEMP",
                "gpu": str(i % 8),
                "UUID": f"GPU-{i:08x}-0000-0000-0000-000000000000",
                "Hostname": f"node-{i // 8}",
            },
            "value": [1700000000.5, "40" if i % 10_000 == 9_999 else "NaN"],
        }
        for i in range(100_000)
    ]
    got, stats = _read(_answer(result, "vector"))
    assert len(got) == 10 and not stats.unreadable
    assert got[-1]["node"] == "node-12499" and got[-1]["gpu"] == 7


def test_a_json_line_stream_is_not_taken_for_an_answer(tmp_path: Path) -> None:
    journal = '{"MESSAGE": "status success", "__REALTIME_TIMESTAMP": "1700000000000000"}\n'
    assert (
        parse_text(tmp_path, journal, name="j.json").stats.unreadable.get(
            ("dcgm", "result without series")
        )
        is None
    )

"""The columnar event model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetwatch.events import FIELDS, KINDS, BadRecord, BatchBuilder, empty_batch
from tests.conftest import EVENT


def test_a_batch_is_parallel_columns_with_absent_values_and_interned_strings() -> None:
    builder = BatchBuilder()
    builder.add(
        {
            "kind": "xid",
            "source": "kmsg",
            "line": 3,
            "node": "n1",
            "code": 79,
            "ts": 1.5,
            "clock": "boot",
            "pci": "0000:3b:00.0",
        }
    )
    builder.add(
        {
            "kind": "temperature",
            "source": "dcgm",
            "line": 9,
            "node": "n1",
            "value": 80.0,
            "gpu": 0,
            "pci": None,
        }
    )
    batch = builder.seal()
    assert len(batch) == 2 and len(builder) == 0
    assert set(batch.columns) == set(FIELDS)
    assert all(col.shape == (2,) for col in batch.columns.values())
    assert batch["code"].tolist() == [79, -1]
    assert np.isnan(batch["value"][0]) and batch["value"][1] == 80.0
    assert batch["node"][0] == batch["node"][1]  # one string, one id
    assert batch.strings.count("n1") == 1
    assert batch.kind_mask("temperature").tolist() == [False, True]
    first, second = batch.records()
    assert first == {
        "kind": "xid",
        "ts": 1.5,
        "clock": "boot",
        "source": "kmsg",
        "file": None,
        "line": 3,
        "node": "n1",
        "pci": "0000:3b:00.0",
        "code": 79,
    }
    assert second["gpu"] == 0 and "pci" not in second and second["ts"] is None


@settings(max_examples=200)
@given(st.lists(EVENT, max_size=12))
def test_records_read_by_column_are_each_row_s_fields_in_order(
    events: list[dict[str, Any]],
) -> None:
    """``records`` (every row, from whole columns) shows what ``record`` (one row,
    field by field) shows: the same fields, values and order, null where always shown."""
    builder = BatchBuilder()
    for event in events:
        builder.add(event)
    batch = builder.seal()
    by_row = [list(batch.record(row).items()) for row in range(len(batch))]
    assert [list(record.items()) for record in batch.records()] == by_row


def test_unknown_kind_is_refused_and_adds_nothing() -> None:
    builder = BatchBuilder()
    with pytest.raises(BadRecord, match="unknown"):
        builder.add({"kind": "not_a_kind"})
    assert len(builder) == 0


def test_empty_batch_has_every_column() -> None:
    batch = empty_batch()
    assert len(batch) == 0 and set(batch.columns) == set(FIELDS)


def test_the_kind_vocabulary_is_the_design_s() -> None:
    assert KINDS == (
        "xid",
        "sxid",
        "gpu_lost",
        "gpu_reset",
        "gpu_identity",
        "aer",
        "ecc_corrected",
        "ecc_uncorrected",
        "remap_correctable",
        "remap_uncorrectable",
        "remap_pending",
        "remap_failure",
        "clock_event",
        "temperature",
        "memory_temperature",
        "pcie_replay",
        "pcie_link",
        "power",
        "pod_evicted",
        "node_not_ready",
        "nccl_init",
        "nccl_timeout",
        "nccl_progress",
        "nccl_error",
        # issue 10: faults without an Xid, and NVLink counters (DESIGN.md lags here)
        "gsp_timeout",
        "rm_error",
        "nvlink_crc",
        "nvlink_replay",
        "nvlink_recovery",
    )

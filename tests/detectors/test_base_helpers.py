"""The batch helpers of ``detectors.base`` against their plain per-row meaning.

They are written for few allocations (in place, NumPy scalars, no NumPy scalar per
field), so each is checked here against the obvious loop it stands for.
"""

from __future__ import annotations

import numpy as np
import pytest
from bench.fleet_events import make_batch
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetwatch.detectors.base import (
    _EVIDENCE_FIELDS,
    EVIDENCE_HEAD,
    EVIDENCE_TAIL,
    UNTIMED,
    Incident,
    describe,
    kind_table,
    last_of_each,
    pack,
    runs,
    segments,
)
from fleetwatch.events import FIELDS, KIND_ID, KINDS, EventBatch, empty_batch

EMPTY = empty_batch()


def plain_runs(key: list[int]) -> list[tuple[int, int]]:
    found: list[tuple[int, int]] = []
    for i, k in enumerate(key):
        if i and k == key[i - 1]:
            found[-1] = (found[-1][0], i + 1)
        else:
            found.append((i, i + 1))
    return found


@pytest.mark.parametrize("key", [[5], [1, 1, 1], [1, 2, 3], [0, 0, 4, 4, 4, 9, 12, 12]])
def test_runs_are_the_runs_of_equal_keys(key: list[int]) -> None:
    starts, ends = runs(np.asarray(key, dtype=np.int64))
    assert list(zip(starts.tolist(), ends.tolist(), strict=True)) == plain_runs(key)


def test_runs_of_no_keys_is_one_empty_run() -> None:
    starts, ends = runs(np.zeros(0, dtype=np.int64))
    assert starts.tolist() == [0] and ends.tolist() == [0]


def test_last_of_each_is_each_keys_last_row_in_key_order() -> None:
    key = np.random.default_rng(3).integers(-1, 40, 500).astype(np.int32)
    last: dict[int, int] = {}
    for row, k in enumerate(key.tolist()):
        last[k] = row
    assert last_of_each(key).tolist() == [last[k] for k in sorted(last)]


def test_kind_table_marks_its_kinds_and_not_an_absent_kind() -> None:
    table = kind_table("xid", "aer")
    kinds = np.asarray([KIND_ID["xid"], KIND_ID["aer"], KIND_ID["temperature"], -1], np.int8)
    assert table[kinds].tolist() == [True, True, False, False]
    assert table.size == len(KINDS) + 1


def test_pack_orders_as_its_columns_with_absent_last() -> None:
    rng = np.random.default_rng(5)
    a, b, c = (rng.integers(-1, 6, 300).astype(t) for t in (np.int32, np.int8, np.int64))
    key = pack(a, b, c)
    absent_last = [tuple(int(v) % (1 << 21) for v in row) for row in zip(a, b, c, strict=True)]
    order = np.argsort(key, kind="stable")
    assert [absent_last[i] for i in order] == sorted(absent_last)
    assert len(set(key.tolist())) == len(set(absent_last))


def test_pack_keeps_string_ids_apart_past_two_million() -> None:
    # a replay's one string table holds every detail it read: ids grow past 2**21
    big = np.asarray([2**21 + 7, 7, 2**24 + 7, -1], dtype=np.int32)
    pci = np.asarray([3, 3, 3, 3], dtype=np.int32)
    small = np.asarray([1, 1, 1, 1], dtype=np.int64)
    for key in (pack(big, pci), pack(big, pci, small), pack(pci, big)):
        assert len(set(key.tolist())) == 4
        assert (key >= 0).all() and np.argsort(key).tolist() == [1, 0, 2, 3]
    with pytest.raises(ValueError, match="one to three"):
        pack(pci, pci, pci, pci)


def test_segments_cut_where_the_gap_is_longer() -> None:
    ts = np.asarray([0.0, 5.0, 20.0, 21.0, np.nan, 40.0])
    assert segments(ts, 10.0) == [(0, 2), (2, 6)]
    assert segments(np.zeros(0), 10.0) == []


def a_batch() -> EventBatch:
    n = 6
    return make_batch(
        n,
        kind=(["aer", "pod_evicted", "ecc_uncorrected"], np.arange(n) % 3),
        ts=np.asarray([1.0, np.nan, 3.0, -0.0, 5.0, 6.0]),
        clock="wall",
        source="kmsg",
        file="kern.log",
        line=np.arange(n) + 300,
        node="gpu-node-1",
        severity=(["fatal", None], np.arange(n) % 2),
        scope=([None, "volatile"], np.arange(n) % 2),
        value=np.asarray([np.nan, 0.5, 2.0, 3.0, np.nan, 1e300]),
        pod=([None, "trainer-0"], np.arange(n) % 2),
        code=np.asarray([-1, 79, 300, -1, 48, 1000]),
        detail=([None, "device recovery failed"], np.arange(n) % 2),
    )


def test_value_reads_what_indexing_reads() -> None:
    # EventBatch.value reads with ndarray.item(row): the same as column[row].item()
    batch = a_batch()
    for row in range(len(batch)):
        for name in FIELDS:  # repr: the same type and value, -0.0 included
            indexed = batch._shown(name, batch.columns[name][row].item())
            assert repr(batch.value(name, row)) == repr(indexed)


def plain_describe(batch: EventBatch, row: int) -> str:
    value = batch.value
    parts = [f"{value('file', row) or '?'}:{value('line', row) or '?'} {value('kind', row)}"]
    parts += [f"{n}={value(n, row)}" for n in _EVIDENCE_FIELDS if value(n, row) is not None]
    if value("detail", row):
        parts.append(value("detail", row))
    return " ".join(parts)


def test_describe_says_what_the_plain_fields_say() -> None:
    batch = a_batch()
    for row in range(len(batch)):
        assert describe(batch, row) == plain_describe(batch, row)


@settings(max_examples=300)
@given(
    before=st.integers(0, 8),
    pieces=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=10),
)
def test_add_lines_keeps_what_adding_every_line_keeps(
    before: int, pieces: list[tuple[int, int]]
) -> None:
    """``Incident.add_lines`` describes only the lines it keeps, and keeps what
    ``Incident.add`` of every piece's lines keeps (rows 0 and 1 read alike: a first line
    equal to the last is one line)."""
    described: list[int] = []

    def line(_: EventBatch, row: int) -> str:
        described.append(row)
        return f"line {0 if row < 2 else row}"

    lazy, eager = Incident(("k",), None, None), Incident(("k",), None, None)
    for n in range(before):  # an incident already holding lines
        lazy.add(UNTIMED, 1, f"old {n}", None)
        eager.add(UNTIMED, 1, f"old {n}", None)
    for first, last in pieces:
        eager.add(UNTIMED, 0, line(EMPTY, first), line(EMPTY, last) if last != first else None)
    described.clear()
    lazy.add_lines(EMPTY, [first for first, _ in pieces], [last for _, last in pieces], line)
    assert (lazy.head, list(lazy.tail)) == (eager.head, list(eager.tail))
    assert len(described) <= 2 * EVIDENCE_HEAD + EVIDENCE_TAIL + 1

"""Series: slots found by a batch's ids, asked once per string table; forgetting and the
saved form as the dict of ``base.expire_stamped`` had them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetwatch.detectors import series as series_module
from fleetwatch.detectors.base import expire_stamped, pack
from fleetwatch.detectors.series import Key, Series
from fleetwatch.events import BatchBuilder, EventBatch

NODES = ("gpu-node-1", "gpu-node-2", "gpu-node-3")


def samples(*rows: tuple[str, float, float], first: str | None = None) -> EventBatch:
    """A batch of ECC counter samples (node, value, time); ``first``: a string that
    takes id 0, so that the same nodes have other ids than in a batch without it."""
    builder = BatchBuilder()
    if first is not None:
        builder.add({"kind": "xid", "node": first, "code": 13})
    for node, value, ts in rows:
        builder.add(
            {"kind": "ecc_corrected", "ts": ts, "clock": "wall", "node": node, "value": value}
        )
    return builder.seal()


class Asked:
    """A ``key_of`` that counts the keys it was asked for."""

    def __init__(self) -> None:
        self.keys: list[Key] = []

    def __call__(self, batch: EventBatch, row: int) -> Key:
        key = (batch.strings[batch["node"].item(row)],)
        self.keys.append(key)
        return key


def slots_of(series: Series, batch: EventBatch, asked: Asked) -> np.ndarray:
    rows = np.flatnonzero(batch["kind"] == batch["kind"][-1])  # the samples
    ids = pack(batch["node"][rows])
    found = series.slots(batch, ids, rows, asked)
    series.update(found, batch, rows)
    return found


def test_a_series_key_is_asked_once_per_string_table() -> None:
    series, asked = Series(), Asked()
    batch = samples(("gpu-node-1", 1.0, 10.0), ("gpu-node-2", 5.0, 10.0))
    first = slots_of(series, batch, asked)
    assert asked.keys == [("gpu-node-1",), ("gpu-node-2",)]
    assert series.known[first].all() and len(series) == 2
    # the same table again (replay keeps one for every batch): nothing asked
    again = slots_of(series, batch.take(np.arange(len(batch))), asked)
    assert len(asked.keys) == 2 and again.tolist() == first.tolist()
    # another table, the same nodes under other ids: asked again, the same slots
    other = samples(("gpu-node-2", 6.0, 20.0), ("gpu-node-1", 2.0, 20.0), first="x")
    assert other["node"][2] != batch["node"][0]  # gpu-node-1
    found = slots_of(series, other, asked)
    assert found.tolist() == first[::-1].tolist() and len(asked.keys) == 4
    assert series.as_dict() == {
        ("gpu-node-1",): (2.0, 20.0, None),
        ("gpu-node-2",): (6.0, 20.0, None),
    }


def test_a_new_series_among_known_ones_gets_a_slot_of_its_own() -> None:
    series, asked = Series(), Asked()
    slots_of(series, samples(("gpu-node-1", 1.0, 10.0)), asked)
    batch = samples(("gpu-node-1", 1.0, 10.0), ("gpu-node-3", 3.0, 10.0))
    before = len(series)
    found = slots_of(series, batch, asked)
    assert len(series) == before + 1 and len(set(found.tolist())) == 2


def test_series_grow_past_their_first_room() -> None:
    series, asked = Series(), Asked()
    nodes = [f"gpu-node-{i}" for i in range(100)]
    found = slots_of(
        series, samples(*((node, float(i), 5.0) for i, node in enumerate(nodes))), asked
    )
    assert sorted(found.tolist()) == list(range(100))
    assert series.as_dict() == {(node,): (float(i), 5.0, None) for i, node in enumerate(nodes)}


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("sample"), st.sampled_from(NODES), st.floats(0, 1e6)),
        st.tuples(st.just("flush"), st.floats(0, 200)),
        st.tuples(st.just("restore")),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(OPERATIONS, st.floats(1, 100))
def test_series_forget_and_save_as_the_stamped_dict_did(ops: list[Any], keep: float) -> None:
    series, asked = Series(), Asked()
    table: dict[Key, tuple[float, float, float | None]] = {}
    now, ts = 0.0, 0.0
    for op in ops:
        if op[0] == "sample":
            ts += 1.0
            slots_of(series, samples((op[1], op[2], ts)), asked)
            table[(op[1],)] = (op[2], ts, None)
        elif op[0] == "flush":
            now += op[1]
            gone = series.expire(now, keep)
            assert len(gone) == expire_stamped(table, 3, now, keep)
            assert not set(gone) & set(table)
        else:  # saved and restored, as a checkpoint does
            series = Series.of(series.as_dict())
        assert series.as_dict() == table
        assert len(series) == len(table)


def test_a_value_saved_without_a_stamp_counts_as_sampled_since_the_last_flush() -> None:
    series = Series.of({("gpu-node-1",): (4.0, 10.0)})
    assert series.expire(1000.0, 10.0) == []  # stamped now, not forgotten
    assert series.as_dict() == {("gpu-node-1",): (4.0, 10.0, 1000.0)}
    assert series.expire(1011.0, 10.0) == [("gpu-node-1",)]
    assert len(series) == 0


def test_past_the_ids_pack_keeps_apart_nothing_is_kept_for_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # past them two series may pack alike: a kept id could name another series
    monkeypatch.setattr(series_module, "PACKED_IDS_APART", 2)
    series, asked = Series(), Asked()
    batch = samples(("gpu-node-1", 1.0, 10.0), ("gpu-node-2", 1.0, 10.0), first="x")
    slots_of(series, batch, asked)
    slots_of(series, batch, asked)
    assert len(asked.keys) == 4 and len(series) == 2

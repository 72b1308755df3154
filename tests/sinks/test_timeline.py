"""The report's event counts: every timed event counted once, in bounded memory."""

from __future__ import annotations

from collections import Counter

import numpy as np

from fleetwatch.events import BatchBuilder, EventBatch
from fleetwatch.sinks.timeline import Place, Timeline


def batch(*events: dict[str, object]) -> EventBatch:
    builder = BatchBuilder()
    for event in events:
        builder.add({"source": "kmsg", "clock": "wall", **event})
    return builder.seal()


def xid(
    ts: float, node: str = "n1", pci: str | None = "0000:3b:00.0", **more: object
) -> dict[str, object]:
    return {"kind": "xid", "ts": ts, "node": node, "pci": pci, "code": 79, **more}


def test_each_timed_event_is_counted_once_by_place_kind_and_time() -> None:
    timeline = Timeline()
    timeline.add(batch(xid(100.0), xid(100.0), xid(101.0), xid(100.0, pci="0000:18:00.0")))
    timeline.add(batch(xid(100.0), {"kind": "temperature", "ts": 100.0, "node": "n1", "gpu": 3}))
    counts = timeline.counts()
    got = {
        (timeline.keys[k], float(t), int(n))
        for k, t, n in zip(counts.key, counts.ts, counts.count, strict=True)
    }
    gpu = Place("wall", "n1", "0000:3b:00.0", None, None, None, None)
    other = Place("wall", "n1", "0000:18:00.0", None, None, None, None)
    sensor = Place("wall", "n1", None, None, 3, None, None)
    assert got == {
        ((gpu, "xid"), 100.0078125, 3),  # the middle of the 1/64 s bucket
        ((gpu, "xid"), 101.0078125, 1),
        ((other, "xid"), 100.0078125, 1),
        ((sensor, "temperature"), 100.0078125, 1),
    }
    assert (timeline.events, timeline.untimed) == (6, 0)


def test_events_without_a_usable_time_are_counted_apart() -> None:
    timeline = Timeline()
    timeline.add(
        batch(
            xid(5.0),
            {"kind": "nccl_init", "clock": "none", "node": "n1", "rank": 0, "job": "j"},
            xid(1e300),  # a forged stamp: no place on an axis
            xid(float("nan")),
        )
    )
    assert (timeline.events, timeline.untimed) == (4, 3)
    assert int(timeline.counts().count.sum()) == 1


def test_memory_is_bounded_buckets_widen_and_no_event_is_lost() -> None:
    timeline = Timeline(max_entries=64)
    rng = np.random.default_rng(7)
    times = np.sort(rng.uniform(1.7e9, 1.7e9 + 86400, 20_000))
    for start in range(0, len(times), 1000):
        timeline.add(
            batch(*(xid(float(t), node=f"n{int(t) % 3}") for t in times[start : start + 1000]))
        )
        assert len(timeline.counts().key) <= 64
    counts = timeline.counts()
    assert int(counts.count.sum()) == 20_000 and timeline.width_s > 1000
    # each event is in the bucket of its time: widths are powers of two, so the
    # widened buckets are exactly those of the final width
    expected = Counter(np.floor(times / timeline.width_s).astype(np.int64).tolist())
    got: Counter[int] = Counter()
    for t, n in zip(counts.ts, counts.count, strict=True):
        got[int(np.floor(t / timeline.width_s))] += int(n)
    assert got == expected

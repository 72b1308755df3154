"""The entry codec: batches round-trip; anything else is a ``CodecError``, never a crash."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetwatch.events import BatchBuilder, EventBatch, concat, empty_batch
from fleetwatch.fleet.codec import CodecError, decode, encode
from fleetwatch.simulate import simulate
from fleetwatch.sources import read_paths


def same(a: EventBatch, b: EventBatch) -> bool:
    return list(a.records()) == list(b.records())


events = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["xid", "temperature", "nccl_timeout", "pod_evicted"]),
        "ts": st.one_of(st.none(), st.floats(0, 2e9)),
        "node": st.one_of(st.none(), st.text(max_size=12)),
        "gpu": st.one_of(st.none(), st.integers(0, 2**31 - 1)),
        "code": st.one_of(st.none(), st.integers(0, 2**63 - 1)),
        "detail": st.one_of(st.none(), st.text(max_size=40)),
        "severity": st.sampled_from([None, "corrected", "fatal"]),
    }
)


# generating a list of dicts is slow on a loaded machine; the test itself is fast
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events, max_size=20))
def test_any_batch_round_trips(rows: list[dict[str, object]]) -> None:
    builder = BatchBuilder()
    for row in rows:
        builder.add(row)
    batch = builder.seal()
    assert same(decode(encode(batch)), batch)


def test_a_simulated_fleet_round_trips_and_a_part_carries_only_its_strings(
    tmp_path: Path,
) -> None:
    simulate("app-xid-job", tmp_path, nodes=2, lines_per_node=100)
    batch = concat(list(read_paths([str(tmp_path)])))
    assert same(decode(encode(batch)), batch)
    part = batch.take(np.arange(10))
    back = decode(encode(part))
    assert same(back, part) and len(back.strings) < len(batch.strings)
    assert same(decode(encode(empty_batch())), empty_batch())


@given(st.binary(max_size=200))
def test_garbage_is_a_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode(data)


@pytest.mark.parametrize("cut", [0, 5, 9, 50, -1])
def test_a_cut_or_flipped_entry_is_a_codec_error(cut: int) -> None:
    builder = BatchBuilder()
    builder.add({"kind": "xid", "node": "n1", "code": 79})
    data = encode(builder.seal())
    with pytest.raises(CodecError):
        decode(data[:cut])
    with pytest.raises(CodecError):  # a string id pointing past the table
        decode(data.replace(b'["n1"]', b"[]    "))
    with pytest.raises(CodecError):  # another version
        decode(data[:3] + struct.pack("<B", 9) + data[4:])


def _entry(header: bytes, rest: bytes = b"") -> bytes:
    return struct.pack("<3sBI", b"FWB", 1, len(header)) + header + rest


@pytest.mark.parametrize(
    "data",
    [
        _entry(b"[" * 100_000),  # nested past Python's stack
        _entry(b'{"rows":0,"columns":[[["a"],"<f8",0]],"strings":2}', b"[]"),  # a list name
        _entry(b'{"rows":0,"columns":[["ts","<f8",0.0]],"strings":2}', b"[]"),  # float bytes
        _entry(b'{"rows":true,"columns":[],"strings":2}', b"[]"),  # a boolean count
        _entry(b'{"rows":' + b"1" * 5000 + b',"columns":[],"strings":0}'),  # past 4300 digits
    ],
    ids=["deep", "list-name", "float-bytes", "bool-rows", "long-number"],
)
def test_a_hostile_header_is_a_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode(data)


def test_an_infinite_time_is_a_codec_error() -> None:
    builder = BatchBuilder()
    builder.add({"kind": "xid", "node": "n1", "code": 79, "ts": 1.0})
    batch = builder.seal()
    batch.columns["ts"][0] = np.inf
    with pytest.raises(CodecError):
        decode(encode(batch))

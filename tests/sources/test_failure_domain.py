"""Every record is its own failure domain: a bad one is counted, its neighbours are read.

The property: for any garbage put between two records, the events read from those two
are the events read without it. Garbage here is what the field throws: numbers past
any column, JSON nested a thousand deep, truncated JSON, NUL, invalid UTF-8, random
bytes and random text around the readers' keywords.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetwatch.events import BadRecord, BatchBuilder
from tests.conftest import parse_text

XID_79 = (
    "Jun  4 10:29:43 gpu-node-17 kernel: [ 1843.308145] NVRM: Xid (PCI:0000:3b:00): 79, "
    "pid=2761, name=python, GPU has fallen off the bus.\n"
)
JOURNAL_XID = (
    '{"__REALTIME_TIMESTAMP":"1722830053123456","_HOSTNAME":"gpu-node-7",'
    '"MESSAGE":"NVRM: Xid (PCI:0000:3b:00): 48, pid=1, name=x, DBE (Double Bit Error)"}\n'
)
K8S_EVICTED = (
    '{"kind":"Event","apiVersion":"v1","metadata":{"name":"p.1","namespace":"ml",'
    '"uid":"u1"},"involvedObject":{"kind":"Pod","name":"trainer-0","namespace":"ml"},'
    '"reason":"Evicted","message":"The node was low on resource: memory.",'
    '"source":{"host":"gpu-node-9"},"lastTimestamp":"2024-06-04T10:29:43Z","count":1}\n'
)
RECORDS = [XID_79, JOURNAL_XID, K8S_EVICTED]

HOSTILE = [
    "Jun  4 10:29:43 gpu-node-18 kernel: NVRM: Xid (PCI:0000:3b:00): 99999999999999999999, "
    "pid=2761, name=python, GPU has fallen off the bus.\n",
    "Jun  4 10:29:43 gpu-node-18 kernel: NVRM: Xid (PCI:0000:3b:00): 79, "
    "pid=99999999999999999999999, name=python, GPU has fallen off the bus.\n",
    '{"MESSAGE": ' + "[" * 5000 + "]" * 5000 + "}\n",
    "[" * 3000 + "\n",
    '{"kind": "xid", "ts": 1e999, "code": 184467440737095516160}\n',
    '{"kind": "xid", "ts":\n',
    'DCGM_FI_DEV_XID_ERRORS{gpu="99999999999",Hostname="gpu-node-1"} 79\n',
    "gpu-node-3:2345:2345 [0] NCCL INFO comm 0x1 rank 99999999999999999999 nranks 4 "
    "cudaDev 0 nvmlDev 99999999999 busId 7000 commId 0x1 - Init COMPLETE\n",
    "NVRM: Xid \x00 (PCI:0000:3b:00): 79\n",
]
KEYWORDS = ["NVRM: Xid", "SXid", "PCIe Bus Error", "NCCL", "DCGM_FI_", "Evicted", "{", "["]


def _garbage_line() -> st.SearchStrategy[bytes]:
    text = st.text(
        alphabet=st.characters(codec="utf-8", exclude_characters="\n"),
        max_size=80,
    )
    return st.one_of(
        st.sampled_from(HOSTILE).map(str.encode),
        st.binary(max_size=120).map(lambda b: b.replace(b"\n", b" ") + b"\n"),
        st.tuples(st.sampled_from(KEYWORDS), text, st.integers(min_value=2**62)).map(
            lambda t: f"{t[0]} {t[1]} {t[2]}\n".encode()
        ),
    )


def _events(tmp_path: Path, data: bytes, lines: set[int]) -> list[dict[str, Any]]:
    found = parse_text(tmp_path, data, name="gpu-node-1.log")
    return [{k: v for k, v in e.items() if k != "line"} for e in found if e["line"] in lines]


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    first=st.sampled_from(RECORDS),
    second=st.sampled_from(RECORDS),
    garbage=st.lists(_garbage_line(), min_size=1, max_size=5),
)
def test_garbage_between_two_records_never_changes_their_events(
    tmp_path: Path, first: str, second: str, garbage: list[bytes]
) -> None:
    clean = _events(tmp_path, (first + second).encode(), {1, 2})
    between = b"".join(garbage)
    dirty = _events(
        tmp_path, first.encode() + between + second.encode(), {1, 2 + between.count(b"\n")}
    )
    assert dirty == clean
    assert len(clean) == 2


def test_a_number_past_its_column_is_counted_and_its_neighbours_read(tmp_path: Path) -> None:
    found = parse_text(tmp_path, XID_79 + HOSTILE[0] + HOSTILE[1] + XID_79)
    assert [e["line"] for e in found] == [1, 4]
    assert found.stats.unreadable == {("kmsg", "out of range"): 2}


def test_json_a_thousand_deep_is_counted_as_too_deep(tmp_path: Path) -> None:
    found = parse_text(tmp_path, XID_79 + HOSTILE[2] + XID_79)
    assert [e["line"] for e in found] == [1, 3]
    assert sum(found.stats.unreadable.values()) == 1
    assert "too deep" in {reason for _, reason in found.stats.unreadable}


def test_a_builder_refuses_a_value_its_column_cannot_hold_and_adds_nothing() -> None:
    builder = BatchBuilder()
    builder.add({"kind": "xid", "source": "kmsg", "line": 1, "code": 79, "node": "a"})
    for bad in (
        {"kind": "xid", "source": "kmsg", "line": 2, "code": 2**63, "node": "b"},
        {"kind": "xid", "source": "kmsg", "line": 2, "gpu": 2**31, "node": "b"},
        {"kind": "xid", "source": "kmsg", "line": 2, "value": 10**400},
        {"kind": "no such kind", "source": "kmsg", "line": 2},
    ):
        with pytest.raises(BadRecord):
            builder.add(bad)
    builder.add({"kind": "xid", "source": "kmsg", "line": 3, "code": 2**63 - 1, "node": "c"})
    batch = builder.seal()
    assert [(r["line"], r.get("code")) for r in batch.records()] == [(1, 79), (3, 2**63 - 1)]


def test_a_folder_name_that_is_not_utf8_is_a_node_name_shown_escaped(tmp_path: Path) -> None:
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/gpu-\xff"))
    folder.mkdir()
    (folder / "kern.log").write_text(XID_79.replace("gpu-node-17 kernel:", "kernel:"))
    run = subprocess.run(
        [sys.executable, "-m", "fleetwatch", "replay", str(tmp_path), "--output", "jsonl"],
        capture_output=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    found = [json.loads(line) for line in run.stdout.splitlines()]
    assert {f["node"] for f in found} == {"gpu-\\xff"}

"""The watch store: one transaction for everything, an outbox, retention."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from fleetwatch.store import Commit, Outbox, Store, StoreError


def row(fid: str, status: str = "open", **kw: object) -> dict[str, object]:
    return {"id": fid, "detector": "hbm_ecc", "severity": "error", "status": status, **kw}


def test_a_commit_writes_findings_checkpoints_positions_outbox_and_meta(tmp_path: Path) -> None:
    store = Store(tmp_path / "w.db")
    store.commit(
        Commit(
            [row("a", node="n1")],
            {"hbm_ecc": {"x": 1}},
            {"file:/var/log/kern.log": {"offset": 10}},
            [("webhook", {"id": "a", "transition": "new"})],
            {"jsonl_bytes": "120"},
        )
    )
    store.commit(Commit([row("a", status="resolved")], {}, {}, [], {}))
    store.close()
    again = Store(tmp_path / "w.db")
    assert [f["status"] for f in again.findings()] == ["resolved"]
    assert again.checkpoints() == {"hbm_ecc": {"x": 1}}
    assert again.positions() == {"file:/var/log/kern.log": {"offset": 10}}
    assert again.meta("jsonl_bytes") == "120"
    mode = sqlite3.connect(tmp_path / "w.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    outbox = Outbox(tmp_path / "w.db", "webhook")
    pending = outbox.pending()
    assert [p.body for p in pending] == [{"id": "a", "transition": "new"}]
    outbox.done([p.seq for p in pending])
    assert outbox.pending() == []
    outbox.close()
    again.close()


def test_a_failed_transaction_writes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "w.db")
    with pytest.raises(KeyError):  # a finding without a severity: the whole commit fails
        store.commit(Commit([{"id": "a", "detector": "x", "status": "open"}], {}, {"s": 1}, [], {}))
    assert store.positions() == {} and store.findings() == []


def test_retention_drops_old_resolved_findings_never_open_ones(tmp_path: Path) -> None:
    store = Store(tmp_path / "w.db")
    big = "e" * 20_000
    store.commit(
        Commit([row(f"r{i}", status="resolved", pad=big) for i in range(200)], {}, {}, [], {})
    )
    store.commit(Commit([row("open-1", pad=big)], {}, {}, [], {}))
    assert store.retain(retention_days=30, max_bytes=1 << 30) == 0  # all young, small enough
    gone = store.retain(retention_days=30, max_bytes=500_000)
    assert gone > 0
    left = store.findings()
    assert "open-1" in {f["id"] for f in left}
    assert (tmp_path / "w.db").stat().st_size < 1_000_000  # the file itself shrank
    store.db.execute("UPDATE findings SET updated = ?", (time.time() - 40 * 86400,))
    store.retain(retention_days=30, max_bytes=1 << 30)
    assert [f["id"] for f in store.findings()] == ["open-1"]
    store.close()


def test_a_store_that_cannot_be_opened_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-db").write_text("plain text, not SQLite " * 100)
    with pytest.raises(StoreError, match="cannot open store"):
        Store(tmp_path / "not-a-db")


def test_silences_hold_until_their_end_and_can_be_removed(tmp_path: Path) -> None:
    store = Store(tmp_path / "w.db")
    first = store.add_silence("gpu-node-7", 3, None, 2000.0, "fan swap", "ops")
    second = store.add_silence(None, None, "thermal_throttle", 1000.0, "HVAC work", "ops")
    assert [s.id for s in store.silences(999.0)] == [first, second]
    assert [s.id for s in store.silences(1000.0)] == [first]  # ended at its until
    (row,) = store.silences(1500.0)
    assert (row.node, row.gpu, row.detector, row.reason, row.author) == (
        "gpu-node-7", 3, None, "fan swap", "ops"
    )  # fmt: skip
    assert store.remove_silence(first) and not store.remove_silence(first)
    assert [s.id for s in store.silences(0.0)] == [second]
    # retention takes silences that ended long ago, like resolved findings
    young = store.add_silence("gpu-node-8", None, None, time.time() - 86400, "ended", "ops")
    store.retain(retention_days=30, max_bytes=1 << 30)
    assert [s.id for s in store.silences(0.0)] == [young]
    store.close()


def test_a_version_2_store_gains_silences_and_keeps_what_it_held(tmp_path: Path) -> None:
    from fleetwatch.store import ACTIONS_SCHEMA, SCHEMA, SCHEMA_VERSION

    path = tmp_path / "w.db"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA + ACTIONS_SCHEMA)
        db.execute(
            "INSERT INTO findings VALUES ('x-1', 'x', 'error', 'open', 'n1', 1.0, 1.0, '{}')"
        )
        db.execute("INSERT INTO nodes VALUES ('n1', 1.0)")
        db.execute("PRAGMA user_version = 2")
    store = Store(path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    assert store.db.execute("SELECT count(*) FROM uplink").fetchone()[0] == 0  # v4
    assert len(store.findings()) == 1 and store.nodes() == {"n1"}
    assert store.silences(0.0) == []
    assert store.add_silence("n1", None, None, 10.0, "why", "") == 1
    store.close()

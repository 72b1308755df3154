"""The store's ``actions`` and ``nodes`` tables: a migration, and one request per finding."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fleetwatch.store import SCHEMA, SCHEMA_VERSION, Commit, Store


def test_a_version_1_store_gains_the_tables_and_keeps_its_findings(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)
        db.execute(
            "INSERT INTO findings VALUES ('x-1', 'x', 'error', 'open', 'n1', 1.0, 1.0, '{}')"
        )
        db.execute("PRAGMA user_version = 1")
    store = Store(path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    assert store.actions() == [] and store.nodes() == set() and store.silences(0.0) == []
    assert len(store.findings()) == 1


def test_a_finding_asks_once_and_keeps_its_outcome(tmp_path: Path) -> None:
    store = Store(tmp_path / "w.db")
    ask = {"finding_id": "x-1", "node": "n1", "detector": "x", "action": "drain_node"}
    store.commit(Commit([], {}, {}, [], {}, [{**ask, "reason": "why"}], ["n1", "n2"]))
    assert store.actions("pending")[0].detail == "why"
    store.decide("x-1", "acted", "why", 5.0)
    store.commit(Commit([], {}, {}, [], {}, [ask], ["n1"]))  # asked again: the same request
    (row,) = store.actions()
    assert (row.outcome, row.decided) == ("acted", 5.0)
    assert store.actions("acted", since=6.0) == []
    assert store.nodes() == {"n1", "n2"}

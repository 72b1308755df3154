"""The watch store: one SQLite file (WAL) that makes a restart safe.

It holds, written together in one transaction so that they never disagree:

* ``findings``: every finding's latest version and its lifecycle status;
* ``checkpoints``: each detector's state (``Detector.state``), as of the commit;
* ``positions``: each source's position (file identity and offset, kmsg boot and
  sequence, journal cursor, Kubernetes resourceVersion), as of the same events;
* ``outbox``: announcements (new, escalated, resolved) not yet delivered to a sink
  that sends them away (the webhook); a row leaves when it was delivered;
* ``meta``: small values, such as how many bytes of the JSONL output are committed;
* ``actions``: one row per finding that asked to take a node out of service: written
  ``pending`` with the transition, then decided by the breaker (``actions/``) and run,
  so a restart neither repeats an action nor forgets what the breaker counted;
* ``nodes``: every node the watch has read an event of (the breaker's "nodes seen");
* ``silences``: what ``fleetwatch silence`` added (node, GPU, detector, until when, and
  why): a running watch reads them again every second, so one takes hold without a
  restart; each ends at its ``until``;
* ``uplink``: what a fleet agent still has to send to the fleet's Redis (event batches
  for a shard, transitions for the fleet's output), in order; a row leaves once Redis
  took it, so Redis down for an hour costs nothing but disk (``fleet/uplink.py``).

After ``kill -9`` the last commit is what there is: the detectors restart from their
checkpoints and the sources from their positions, which describe the same moment, so
the events after it are read exactly once more and nothing before it again.

Retention: resolved findings older than ``retention_days`` are deleted, and while the
file is larger than ``max_bytes`` the oldest resolved findings go first. Open findings
are never deleted. Silences that ended more than ``retention_days`` ago go too.

Opening checks the file (``PRAGMA quick_check``) and its schema version
(``PRAGMA user_version``): a damaged file, or one a newer fleetwatch wrote, is a
``StoreError`` (one line for the user) before anything runs; an older schema is
brought up to date by ``MIGRATIONS``, in one transaction. A write that fails because
the disk is full (or a file size limit) is a ``StoreFull``: nothing of it is kept, and
the same commit can be tried again once there is room.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS findings (
    id TEXT PRIMARY KEY,
    detector TEXT NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL,
    node TEXT,
    last_ts REAL,
    updated REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS findings_by_status ON findings (status, updated);
CREATE TABLE IF NOT EXISTS checkpoints (detector TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS positions (source TEXT PRIMARY KEY, position TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    body TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
ACTIONS_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS actions (
    finding_id TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    detector TEXT NOT NULL,
    action TEXT NOT NULL,
    gpu TEXT,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    requested REAL NOT NULL,
    decided REAL
);
CREATE INDEX IF NOT EXISTS actions_by_outcome ON actions (outcome, decided);
CREATE TABLE IF NOT EXISTS nodes (node TEXT PRIMARY KEY, first_seen REAL NOT NULL);
"""
SILENCES_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS silences (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node TEXT,
    gpu INTEGER,
    detector TEXT,
    until REAL NOT NULL,
    reason TEXT NOT NULL,
    author TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS silences_by_until ON silences (until);
"""
UPLINK_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS uplink (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    shard INTEGER NOT NULL,
    family TEXT NOT NULL,
    body BLOB NOT NULL
);
"""
SCHEMA_VERSION: Final = 4
# version -> the script that brings a store of the version before it to it. A store of
# version 0 is either new or written before versions were kept: both take SCHEMA.
MIGRATIONS: Final[dict[int, str]] = {
    1: SCHEMA,
    2: ACTIONS_SCHEMA,
    3: SILENCES_SCHEMA,
    4: UPLINK_SCHEMA,
}
UPLINK_OUT: Final = -1
"""The ``shard`` of an uplink row bound for the fleet's output (a transition)."""
# SQLite's primary result codes for "no room" and "the disk failed": worth a retry.
_FULL_OR_IO: Final = frozenset({10, 13})  # SQLITE_IOERR, SQLITE_FULL


class Restorable(Protocol):
    """What a checkpoint restores: a detector, the lifecycle."""

    def restore(self, saved: dict[str, Any]) -> None: ...


class StoreError(RuntimeError):
    """A store file that cannot be opened, is damaged, or is not a fleetwatch store."""


class StoreFull(StoreError):
    """A write that found no room (disk full, file size limit); nothing of it was kept."""


@dataclass(frozen=True)
class Announcement:
    """One undelivered outbox row."""

    seq: int
    sink: str
    body: dict[str, Any]
    created: float


@dataclass(frozen=True)
class ActionRow:
    """One row of ``actions``: what a finding asked for and what became of it."""

    finding_id: str
    node: str
    detector: str
    action: str
    gpu: str | None
    outcome: str  # pending, acted, failed, held, would_act, would_hold, skipped
    detail: str  # pending: the reason to give; decided: what happened
    requested: float
    decided: float | None


@dataclass(frozen=True)
class SilenceRow:
    """One row of ``silences``: what not to announce, until when, who said so and why."""

    id: int
    node: str | None
    gpu: int | None
    detector: str | None
    until: float  # epoch seconds: the silence ends then
    reason: str
    author: str
    created: float


@dataclass
class Commit:
    """Everything one transaction writes."""

    findings: list[dict[str, Any]]  # each with id, detector, severity, status, ...
    checkpoints: dict[str, Any]  # detector -> state (empty: unchanged)
    positions: dict[str, Any]  # source -> position
    outbox: list[tuple[str, dict[str, Any]]]  # (sink, body)
    meta: dict[str, str]
    actions: list[dict[str, Any]] = field(default_factory=list)  # requests: actions.actor.requests
    nodes: list[str] = field(default_factory=list)  # nodes first seen since the last commit
    # (shard or UPLINK_OUT, family, body): what a fleet agent sends once this is committed
    uplink: list[tuple[int, str, bytes]] = field(default_factory=list)


class Store:
    """A watch store file. Use from one thread, except ``Outbox`` (its own connection)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = _connect(self.path)
            damage = self.db.execute("PRAGMA quick_check").fetchall()
            if damage != [("ok",)]:
                raise StoreError(
                    f"store {self.path} is damaged ({damage[0][0]}); move it aside to start afresh"
                )
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store {self.path} has schema {version}, written by a newer fleetwatch "
                f"(this one reads up to {SCHEMA_VERSION})"
            )
        if version == SCHEMA_VERSION:
            return
        script = "".join(MIGRATIONS[v] for v in range(version + 1, SCHEMA_VERSION + 1))
        # executescript commits first and runs outside a transaction: wrap it in one
        self.db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;")

    def close(self) -> None:
        self.db.close()

    # -- reading what the last run committed ----------------------------------------

    def checkpoints(self) -> dict[str, Any]:
        rows = self.db.execute("SELECT detector, state FROM checkpoints")
        return {name: json.loads(state) for name, state in rows}

    def restore(self, parts: Mapping[str, Restorable]) -> None:
        """Give each part (a detector, the lifecycle: by checkpoint name) its saved state.

        A state this version cannot read is a ``StoreError`` (one line), not a crash.
        """
        saved = self.checkpoints()
        try:
            for name, part in parts.items():
                if name in saved:
                    part.restore(saved[name])
        except (ValueError, KeyError, TypeError) as exc:  # StateError is a ValueError
            raise StoreError(
                f"store {self.path} holds state this version cannot read ({exc}); "
                "move it aside to start afresh"
            ) from exc

    def positions(self) -> dict[str, Any]:
        rows = self.db.execute("SELECT source, position FROM positions")
        return {name: json.loads(position) for name, position in rows}

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def findings(self, status: str | None = None) -> list[dict[str, Any]]:
        """Stored findings (each with its ``status``), oldest update first."""
        query = "SELECT body FROM findings"
        args: tuple[str, ...] = ()
        if status is not None:
            query += " WHERE status = ?"
            args = (status,)
        return [json.loads(body) for (body,) in self.db.execute(query + " ORDER BY updated", args)]

    # -- writing ----------------------------------------------------------------------

    def commit(self, change: Commit) -> None:
        """Write one transaction: findings, checkpoints, positions, outbox and meta.

        Raises ``StoreFull`` when there was no room (nothing was written: try again),
        ``StoreError`` when the file is damaged or gone bad (a retry will not help).
        """
        try:
            self._commit(change)
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc

    def _failed(self, exc: sqlite3.Error) -> StoreError:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code in _FULL_OR_IO:
            return StoreFull(f"store {self.path}: {exc}")
        return StoreError(f"store {self.path} failed: {exc}")

    def _commit(self, change: Commit) -> None:
        now = time.time()
        with self.db:
            self.db.executemany(
                "INSERT INTO findings"
                " (id, detector, severity, status, node, last_ts, updated, body)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                " severity = excluded.severity, status = excluded.status,"
                " last_ts = excluded.last_ts, updated = excluded.updated, body = excluded.body",
                [
                    (
                        f["id"],
                        f["detector"],
                        f["severity"],
                        f["status"],
                        f.get("node"),
                        f.get("last_ts"),
                        now,
                        json.dumps(f, sort_keys=True),
                    )
                    for f in change.findings
                ],
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO checkpoints (detector, state) VALUES (?, ?)",
                [(name, json.dumps(state)) for name, state in change.checkpoints.items()],
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO positions (source, position) VALUES (?, ?)",
                [(name, json.dumps(pos)) for name, pos in change.positions.items()],
            )
            self.db.executemany(
                "INSERT INTO outbox (sink, body, created) VALUES (?, ?, ?)",
                [(sink, json.dumps(body, sort_keys=True), now) for sink, body in change.outbox],
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(change.meta.items())
            )
            # a finding asks once: a request for one already recorded is the same request
            self.db.executemany(
                "INSERT OR IGNORE INTO actions"
                " (finding_id, node, detector, action, gpu, outcome, detail, requested)"
                " VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
                [
                    (
                        a["finding_id"],
                        a["node"],
                        a["detector"],
                        a["action"],
                        a.get("gpu"),
                        a.get("reason") or "",
                        now,
                    )
                    for a in change.actions
                ],
            )
            self.db.executemany(
                "INSERT OR IGNORE INTO nodes (node, first_seen) VALUES (?, ?)",
                [(node, now) for node in change.nodes],
            )
            self.db.executemany(
                "INSERT INTO uplink (shard, family, body) VALUES (?, ?, ?)", change.uplink
            )

    # -- actions (see actions/) ----------------------------------------------------------

    def actions(self, outcome: str | None = None, since: float | None = None) -> list[ActionRow]:
        """Recorded action rows, oldest request first; ``since``: decided at or after."""
        query = "SELECT * FROM actions WHERE 1"
        args: list[Any] = []
        if outcome is not None:
            query += " AND outcome = ?"
            args.append(outcome)
        if since is not None:
            query += " AND decided >= ?"
            args.append(since)
        rows = self.db.execute(query + " ORDER BY requested, finding_id", args)
        return [ActionRow(*row) for row in rows]

    def decide(self, finding_id: str, outcome: str, detail: str, when: float) -> None:
        """Record what became of one action (raises as ``commit``)."""
        try:
            with self.db:
                self.db.execute(
                    "UPDATE actions SET outcome = ?, detail = ?, decided = ? WHERE finding_id = ?",
                    (outcome, detail, when, finding_id),
                )
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc

    def nodes(self) -> set[str]:
        """Every node the watch has read an event of."""
        return {node for (node,) in self.db.execute("SELECT node FROM nodes")}

    # -- silences (fleetwatch silence writes them; a running watch reads them) ---------

    def add_silence(
        self,
        node: str | None,
        gpu: int | None,
        detector: str | None,
        until: float,
        reason: str,
        author: str,
    ) -> int:
        """Record a silence; return its id (raises as ``commit``)."""
        try:
            with self.db:
                cursor = self.db.execute(
                    "INSERT INTO silences (node, gpu, detector, until, reason, author, created)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (node, gpu, detector, until, reason, author, time.time()),
                )
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc
        assert cursor.lastrowid is not None  # an INSERT into a rowid table has one
        return cursor.lastrowid

    def silences(self, now: float) -> list[SilenceRow]:
        """The silences that have not ended at ``now``, oldest first (raises as ``commit``)."""
        try:
            rows = self.db.execute(
                "SELECT id, node, gpu, detector, until, reason, author, created"
                " FROM silences WHERE until > ? ORDER BY id",
                (now,),
            ).fetchall()
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc
        return [SilenceRow(*row) for row in rows]

    def remove_silence(self, silence_id: int) -> bool:
        """End a silence now by deleting it; False when there is none of that id."""
        try:
            with self.db:
                gone = self.db.execute("DELETE FROM silences WHERE id = ?", (silence_id,))
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc
        return gone.rowcount > 0

    def retain(self, retention_days: float, max_bytes: int) -> int:
        """Delete old resolved findings; return how many went (raises as ``commit``)."""
        try:
            return self._retain(retention_days, max_bytes)
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc

    def _retain(self, retention_days: float, max_bytes: int) -> int:
        cutoff = time.time() - retention_days * 86400
        with self.db:
            gone = self.db.execute(
                "DELETE FROM findings WHERE status = 'resolved' AND updated < ?", (cutoff,)
            ).rowcount
            self.db.execute("DELETE FROM silences WHERE until < ?", (cutoff,))
        while self._bytes() > max_bytes:
            with self.db:
                removed = self.db.execute(
                    "DELETE FROM findings WHERE id IN (SELECT id FROM findings"
                    " WHERE status = 'resolved' ORDER BY updated LIMIT 100)"
                ).rowcount
            if not removed:
                break  # only open findings left: they stay
            gone += removed
            # executescript runs it to the end (execute would free a single page)
            self.db.executescript("PRAGMA incremental_vacuum;")
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return gone

    def _bytes(self) -> int:
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        size = self.db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)


class Outbox:
    """The outbox of one sink, read and emptied from the sink's own thread."""

    def __init__(self, path: str | Path, sink: str) -> None:
        self.db = _connect(Path(path))
        self.db.executescript(SCHEMA)
        self.sink = sink

    def pending(self, limit: int = 100) -> list[Announcement]:
        rows = self.db.execute(
            "SELECT seq, sink, body, created FROM outbox WHERE sink = ? ORDER BY seq LIMIT ?",
            (self.sink, limit),
        )
        return [
            Announcement(seq, sink, json.loads(body), created) for seq, sink, body, created in rows
        ]

    def done(self, seqs: Iterable[int]) -> None:
        with self.db:
            self.db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    def close(self) -> None:
        self.db.close()


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA auto_vacuum = INCREMENTAL")  # takes effect on a new file
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")  # a commit survives power loss, not only kill -9
    db.isolation_level = "DEFERRED"
    return db

"""The CLI reads well at 80 columns: findings, help, bare usage, relative times (issue 14)."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest

from fleetwatch.cli import _moment
from fleetwatch.config import load
from fleetwatch.replay import replay
from fleetwatch.sinks.table import WIDE_AT, write_table
from fleetwatch.store import Commit, Store

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p for p in (ROOT / "examples").iterdir() if p.is_dir())
COMMANDS = (
    "parse", "replay", "watch", "findings", "silence", "slurm-health", "simulate", "explain",
    "detectors",
)  # fmt: skip


def fleetwatch(*args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": str(columns), "LC_ALL": "C.UTF-8"}
    return subprocess.run(
        [sys.executable, "-m", "fleetwatch", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def words(text: str) -> list[str]:
    return text.split()


@pytest.mark.parametrize("width", [80, 100, 200])
def test_every_example_reads_fully_at_this_width(width: int) -> None:
    for example in EXAMPLES:
        findings = replay([str(example)], load(None))
        out = StringIO()
        write_table(findings, out, width=width)
        text = out.getvalue()
        lines = text.splitlines()
        assert all(len(line) <= width for line in lines), example
        # nothing cut: every name and every word of every summary is there, in order
        flat = " ".join(words(text))
        unfolded = re.sub(r"[│┃]", " ", text)
        for f in findings:
            for name in (f.node, f.pci, str(f.action)):
                if name:
                    assert name in text.replace("\n", "") or name in flat, (name, example)
            if width < WIDE_AT:
                assert " ".join(words(f.summary)) in flat, (f.summary, example)
            else:  # the table wraps the summary inside its column
                assert all(word in unfolded for word in words(f.summary))


def test_a_node_name_longer_than_the_terminal_is_folded_never_cut() -> None:
    (finding, *_) = replay([str(ROOT / "examples" / "xid79-fallen-off-bus")], load(None))
    long_name = "gpu-node-" + "x" * 120 + ".cluster.local"
    out = StringIO()
    write_table([dataclasses.replace(finding, node=long_name)], out, width=80)
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert long_name in "".join(lines)


def test_wide_gives_the_table_whatever_the_width() -> None:
    findings = replay([str(ROOT / "examples" / "xid79-fallen-off-bus")], load(None))
    narrow, wide = StringIO(), StringIO()
    write_table(findings, narrow, width=100)
    write_table(findings, wide, width=100, wide=True)
    assert "┃" not in narrow.getvalue() and "┃ severity" in wide.getvalue()


def test_bare_fleetwatch_prints_a_short_usage_and_exits_0() -> None:
    done = fleetwatch()
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith("usage: fleetwatch COMMAND")
    assert "fleetwatch replay PATH" in done.stdout
    assert all(len(line) <= 80 for line in done.stdout.splitlines())


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_every_help_has_examples_and_exit_codes_and_fits_80_columns(command: str) -> None:
    done = fleetwatch(*filter(None, [command]), "--help")
    assert done.returncode == 0, done.stderr
    assert "Examples:" in done.stdout and "Exit codes:" in done.stdout
    assert all(len(line) <= 80 for line in done.stdout.splitlines()), done.stdout
    if command in ("", "watch"):
        assert "FLEETWATCH_WEBHOOK_SECRET" in done.stdout


@pytest.mark.parametrize(
    ("text", "seconds_back"),
    [("2h", 7200), ("30m", 1800), ("7d", 604800), ("90s", 90), ("1w", 604800), ("2h ago", 7200)],
)
def test_since_takes_a_span_back_from_now(text: str, seconds_back: int) -> None:
    assert _moment(text, "--since", None, now=lambda: 1_000_000.0) == 1_000_000.0 - seconds_back


def test_since_refuses_what_is_no_time() -> None:
    for text in ("nan", "inf", "2x", "-2h"):
        done = fleetwatch("replay", str(EXAMPLES[0]), "--since", text)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, (text, done.stderr)
    assert _moment("1717496983", "--since", None) == 1717496983.0


def test_findings_lists_what_a_watch_keeps_in_its_store(tmp_path: Path) -> None:
    found = replay([str(ROOT / "examples" / "xid79-fallen-off-bus")], load(None))
    rows = [f.to_json() for f in found]
    rows[-1]["status"] = "resolved"
    rows.append({"id": "broken", "detector": "x", "severity": "nonsense", "status": "open"})
    store = Store(tmp_path / "watch.db")
    store.commit(Commit(findings=rows, checkpoints={}, positions={}, outbox=[], meta={}))
    store.close()
    listed = fleetwatch("findings", "--store", str(tmp_path / "watch.db"), "--output", "jsonl")
    assert listed.returncode == 0, listed.stderr
    ids = [json.loads(line)["id"] for line in listed.stdout.splitlines()]
    assert ids == [f.id for f in found[:-1]]  # the open ones, most severe first
    assert (
        listed.stderr == f"fleetwatch: 2 open finding(s) in {tmp_path / 'watch.db'}; 1 unreadable\n"
    )
    every = fleetwatch(
        "findings", "--store", str(tmp_path / "watch.db"), "--all", "--output", "jsonl"
    )
    assert len(every.stdout.splitlines()) == 3
    table = fleetwatch("findings", "--store", str(tmp_path / "watch.db"), "--output", "table")
    assert "reboot_node" in table.stdout and all(len(x) <= 80 for x in table.stdout.splitlines())
    missing = fleetwatch("findings", "--store", str(tmp_path / "none.db"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert not (tmp_path / "none.db").exists()

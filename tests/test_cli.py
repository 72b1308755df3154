"""The fleetwatch command, run as a real process."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA

pytestmark = pytest.mark.slow

FLEETWATCH = [sys.executable, "-m", "fleetwatch"]


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FLEETWATCH, *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_parse_prints_one_json_event_per_line_and_a_summary_on_stderr() -> None:
    done = run("parse", str(DATA / "h100" / "dmesg-xid31-app-fault.txt"), "--tz", "UTC")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["kind"] for e in events] == ["gpu_identity", "xid"]
    assert events[1]["code"] == 31
    warning, summary = done.stderr.strip().split("\n")
    assert summary == "fleetwatch: read 1 file(s), 3 lines, 2 events; no unreadable records"
    # a dmesg names no host: the node is the file's name, and that is said once
    assert warning.startswith(
        "fleetwatch: records that name no host were given a node named after their file: "
        "dmesg-xid31-app-fault ("
    )


def test_parse_reads_stdin_and_gzip_from_stdin(tmp_path: Path) -> None:
    raw = (DATA / "kernel" / "sxid.dmesg").read_bytes()
    plain = run("parse", "-", stdin=raw)
    assert plain.returncode == 0 and len(plain.stdout.splitlines()) == 4
    packed = tmp_path / "sxid.gz"
    packed.write_bytes(gzip.compress(raw))
    with packed.open("rb") as handle:
        zipped = subprocess.run(
            [*FLEETWATCH, "parse", "-"], stdin=handle, capture_output=True, check=False, timeout=60
        )
    assert zipped.returncode == 0 and len(zipped.stdout.splitlines()) == 4
    assert json.loads(zipped.stdout.splitlines()[0])["node"] == "stdin"


def test_unreadable_records_are_reported_and_the_exit_code_stays_0() -> None:
    done = run("parse", str(DATA / "dcgm" / "scrape.prom"))
    assert done.returncode == 0
    assert done.stderr.strip().endswith(
        "17 events, 1 skipped (dcgm blank value: 1); 1 unreadable (dcgm malformed sample: 1)"
    )


def test_a_missing_file_is_one_line_and_exit_2() -> None:
    done = run("parse", "/no/such/dmesg.txt")
    assert done.returncode == 2
    assert done.stderr == "fleetwatch: error: no such file or folder: /no/such/dmesg.txt\n"
    assert done.stdout == ""


def test_a_bad_flag_or_value_is_one_line_and_exit_2() -> None:
    for args, message in (
        (["parse", "--bogus", "x"], "--bogus"),
        (["parse", str(DATA), "--tz", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
        (["parse", str(DATA), "--output", "xml"], "--output"),
        (["parse"], "PATHS"),
        (["frobnicate"], "frobnicate"),
    ):
        done = run(*args)
        assert done.returncode == 2, args
        assert done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith("fleetwatch: error: ") and message in done.stderr


def test_summary_output_is_a_table_of_kinds() -> None:
    done = run("parse", str(DATA / "kernel"), "--output", "summary")
    assert done.returncode == 0
    assert "xid" in done.stdout and "aer" in done.stdout and "kmsg" in done.stdout


def test_a_closed_pipe_is_not_an_error() -> None:
    proc = subprocess.Popen(
        [*FLEETWATCH, "parse", str(DATA)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 0
    assert b"Traceback" not in err


def test_summary_counts_nodes_per_kind_and_source(tmp_path: Path) -> None:
    (tmp_path / "gpu-1.log").write_text(
        "[ 1.0] NVRM: Xid (PCI:0000:3b:00): 48, pid=1, name=a, DBE\n"
    )
    (tmp_path / "gpu-2.log").write_text(
        "[ 1.0] NVRM: Xid (PCI:0000:3b:00): 48, pid=1, name=a, DBE\n"
    )
    (tmp_path / "scrape.prom").write_text(
        'DCGM_FI_DEV_XID_ERRORS{gpu="0",pci_bus_id="00000000:3B:00.0",Hostname="gpu-1"} 48\n'
    )
    done = run("parse", str(tmp_path), "--output", "summary")
    rows = [line.split("│")[1:5] for line in done.stdout.splitlines() if "│ xid" in line]
    assert [[cell.strip() for cell in row] for row in rows] == [
        ["xid", "kmsg", "2", "2"],
        ["xid", "dcgm", "1", "1"],
    ]

"""Bad input never crashes and never vanishes: it is counted by reader and reason."""

from __future__ import annotations

import gzip
import os
import random
import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetwatch.sources import ReadStats, read_paths
from tests.conftest import DATA, parse, parse_text

XID = (
    b"[ 1843.308145] NVRM: Xid (PCI:0000:3b:00): 79, pid=2761, name=python, "
    b"GPU has fallen off the bus.\n"
)


def test_binary_garbage_is_counted_not_read(tmp_path: Path) -> None:
    rng = random.Random(7)
    garbage = bytes(rng.randrange(256) for _ in range(200_000)) + b"\x00"
    events = parse_text(tmp_path, garbage, name="core.bin")
    assert list(events) == []
    assert events.stats.unreadable == {("file", "binary data"): 1}


def test_a_program_is_binary_data(tmp_path: Path) -> None:
    events = parse_text(tmp_path, Path(sys.executable).read_bytes()[: 1 << 20], name="python")
    assert list(events) == []
    assert events.stats.unreadable == {("file", "binary data"): 1}


def test_a_short_log_with_control_garbage_is_still_read(tmp_path: Path) -> None:
    """More control bytes than a log has, and a NUL, but lines of text: a log whose
    records are read (hypothesis found two Xid 79s lost to five such lines)."""
    garbage = b"\x00\x01\n\x01\x01\n" + b"\x01\x01\x01\x01\n" * 3
    events = parse_text(tmp_path, XID + garbage + XID)
    assert [e["line"] for e in events] == [1, 7]
    assert ("file", "binary data") not in events.stats.unreadable


def test_invalid_utf8_inside_a_record_still_reads(tmp_path: Path) -> None:
    line = XID.replace(b"python", b"pyth\xff\xfeon")
    events = parse_text(tmp_path, line + b"\xc3\x28 random \x80 noise\n")
    assert [(e["code"], e["process"]) for e in events] == [(79, "pyth\ufffd\ufffdon")]


def test_a_10_mb_line_is_skipped_and_counted_and_the_rest_still_reads(tmp_path: Path) -> None:
    huge_record = b"[ 1.0] NVRM: Xid (PCI:0000:3b:00): 13, " + b"A" * (10 << 20) + b"\n"
    huge_noise = b"[ 2.0] " + b"z" * (10 << 20) + b"\n"
    events = parse_text(tmp_path, XID + huge_record + huge_noise + XID)
    assert [e["line"] for e in events] == [1, 4]
    assert events.stats.unreadable == {("stream", "line too long"): 1}
    assert events.stats.lines == 4


def test_an_empty_file_reads_as_nothing(tmp_path: Path) -> None:
    events = parse_text(tmp_path, b"")
    assert list(events) == [] and events.stats.unreadable == {} and events.stats.files == 1


def test_gzip_is_recognised_by_content_and_a_truncated_one_keeps_what_was_read(
    tmp_path: Path,
) -> None:
    body = XID * 2000
    packed = gzip.compress(body)
    whole = tmp_path / "gpu-node-1.log.gz"
    whole.write_bytes(packed)
    misnamed = tmp_path / "gpu-node-2.txt"
    misnamed.write_bytes(packed)
    assert len(parse(whole)) == 2000
    assert len(parse(misnamed)) == 2000
    assert parse(whole)[0]["node"] == "gpu-node-1"
    cut = tmp_path / "gpu-node-3.log.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    events = parse(cut)
    assert 0 < len(events) < 2000
    assert events.stats.unreadable == {("file", "truncated gzip"): 1}


def test_folders_of_per_node_folders_name_the_node(tmp_path: Path) -> None:
    for node in ("gpu-node-1", "gpu-node-2"):
        (tmp_path / node).mkdir()
        (tmp_path / node / "kern.log").write_bytes(XID)
    (tmp_path / "gpu-node-9.dmesg.log").write_bytes(XID)
    (tmp_path / ".hidden").write_bytes(XID)
    events = parse(tmp_path)
    assert sorted(e["node"] for e in events) == ["gpu-node-1", "gpu-node-2", "gpu-node-9"]
    assert {e["node"] for e in parse(tmp_path, node="override")} == {"override"}


# --- property tests: no input crashes a reader ---------------------------------------

_SAMPLES = [
    line
    for path in sorted(DATA.rglob("*"))
    if path.is_file()
    and path.suffix in {".dmesg", ".log", ".json", ".jsonl", ".txt", ".prom", ".csv", ".syslog"}
    for line in path.read_bytes().splitlines(keepends=True)[:60]
]


def _read_all(data: bytes) -> ReadStats:
    stats = ReadStats()
    fd, name = tempfile.mkstemp(prefix="fuzz-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        for batch in read_paths([name], stats=stats):
            assert len(batch) >= 0
    finally:
        os.unlink(name)
    return stats


_line = st.one_of(
    st.sampled_from(_SAMPLES),
    st.sampled_from(_SAMPLES).flatmap(
        lambda s: st.integers(0, len(s)).map(lambda cut: s[:cut])  # cut anywhere
    ),
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass") + b"\n"),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_line, max_size=40))
def test_no_mix_of_real_lines_cuts_and_garbage_crashes_a_reader(lines: list[bytes]) -> None:
    stats = _read_all(b"".join(lines))
    assert stats.files == 1


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(_SAMPLES), st.binary(min_size=1, max_size=8), st.integers(0, 400))
def test_garbage_spliced_into_any_real_record_never_crashes(
    line: bytes, junk: bytes, at: int
) -> None:
    at = min(at, len(line))
    _read_all(line[:at] + junk + line[at:])

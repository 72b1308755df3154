"""Gzip input keeps every byte that decompresses, as ``gzip -d`` does, and counts the rest.

Every ``.gz`` here is made by the gzip program itself, and broken as files are broken
(cut short, members concatenated, garbage or zeros appended, a CRC flipped); what
``gzip -dc`` recovers from the same bytes is the answer.
"""

from __future__ import annotations

import errno
import io
import random
import shutil
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fleetwatch.cli import cli
from fleetwatch.sources import ReadStats
from fleetwatch.sources.gunzip import PIECE_BYTES, Gunzip
from tests.conftest import parse

GZIP = shutil.which("gzip")
pytestmark = pytest.mark.skipif(GZIP is None, reason="the gzip program is not installed")
EXAMPLE = Path(__file__).parents[2] / "examples" / "xid79-fallen-off-bus" / "gpu-node-17"
DMESG = (EXAMPLE / "dmesg.txt").read_bytes()


def gzipped(data: bytes) -> bytes:
    """``data`` as the gzip program writes it."""
    assert GZIP is not None
    return subprocess.run([GZIP, "-c", "-n"], input=data, capture_output=True, check=True).stdout


def gunzipped(data: bytes) -> tuple[bytes, str]:
    """What ``gzip -dc`` recovers from ``data``, and what it says about it."""
    assert GZIP is not None
    done = subprocess.run([GZIP, "-dc"], input=data, capture_output=True, check=False)
    return done.stdout, done.stderr.decode()


def unnamed(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events without the name of the file they came from."""
    return [{k: v for k, v in e.items() if k != "file"} for e in events]


def lines_read(path: Path) -> list[int]:
    """The line numbers of the events read from ``path``."""
    return sorted({e["line"] for e in parse(path)})


def lines_of(text: bytes, name: str, tmp_path: Path) -> list[int]:
    """The line numbers of the events read from ``text`` as a plain file."""
    plain = tmp_path / name
    plain.write_bytes(text)
    return lines_read(plain)


def test_a_small_gz_cut_short_keeps_what_it_holds_in_parse_and_replay(tmp_path: Path) -> None:
    """The trial's file: 300 bytes of a gzipped dmesg, cut inside its first piece."""
    cut = tmp_path / "gpu-node-17.dmesg.gz"
    cut.write_bytes(gzipped(DMESG)[:300])
    recovered, said = gunzipped(cut.read_bytes())
    assert b"Xid (PCI:0000:3b:00): 79" in recovered and "unexpected end of file" in said
    events = parse(cut)
    assert events.stats.unreadable == {("file", "truncated gzip"): 1}
    assert events.stats.lines == recovered.count(b"\n") + 1  # the partial last line too
    (xid,) = events.of("xid")
    assert xid["code"] == 79 and xid["line"] == recovered.count(b"\n") + 1
    done = CliRunner().invoke(cli, ["replay", str(cut), "--output", "jsonl"])
    assert done.exit_code == 0, done.output
    assert '"code": 79' in done.stdout and '"node": "gpu-node-17"' in done.stdout
    assert "1 unreadable (file truncated gzip: 1); 1 finding(s)" in done.stderr


def test_a_gz_cut_anywhere_reads_what_gzip_recovers(tmp_path: Path) -> None:
    """Cut points within the first piece, across pieces and inside the trailer: the
    events are those of the bytes ``gzip -dc`` recovers, read as a plain file."""
    body = DMESG * 40 + bytes(random.Random(3).randbytes(3 * PIECE_BYTES).hex(), "ascii")
    body += DMESG
    packed = gzipped(body)
    assert len(packed) > 3 * PIECE_BYTES  # the cuts cross pieces
    cut = tmp_path / "gpu-node-1.log.gz"
    for at in (11, 200, 4000, PIECE_BYTES + 17, len(packed) - 100, len(packed) - 4):
        cut.write_bytes(packed[:at])
        recovered, said = gunzipped(cut.read_bytes())
        assert "unexpected end of file" in said
        plain = tmp_path / "gpu-node-1.log"
        plain.write_bytes(recovered)
        events, answer = parse(cut), parse(plain)
        assert unnamed(events) == unnamed(answer), at
        answer.stats.bad("file", "truncated gzip")
        assert events.stats.unreadable == answer.stats.unreadable, at


def test_an_empty_gz_is_counted_as_cut_and_an_empty_member_is_fine(tmp_path: Path) -> None:
    empty = tmp_path / "kern.log.1.gz"
    empty.write_bytes(b"")
    assert "unexpected end of file" in gunzipped(b"")[1]
    events = parse(empty)
    assert list(events) == [] and events.stats.unreadable == {("file", "truncated gzip"): 1}
    nothing = tmp_path / "kern.log.2.gz"
    nothing.write_bytes(gzipped(b""))  # what logrotate makes of an empty log
    events = parse(nothing)
    assert list(events) == [] and events.stats.unreadable == {}


def test_concatenated_members_read_as_one_stream(tmp_path: Path) -> None:
    first, second = DMESG[:700], DMESG[700:]
    joined = tmp_path / "gpu-node-1.log.gz"
    joined.write_bytes(gzipped(first) + gzipped(second))
    recovered, said = gunzipped(joined.read_bytes())
    assert recovered == DMESG and said == ""
    events = parse(joined)
    assert events.stats.unreadable == {}
    assert lines_read(joined) == lines_of(DMESG, "gpu-node-1.log", tmp_path)
    assert events.of("xid")[0]["code"] == 79


def test_trailing_garbage_is_ignored_and_counted_and_zeros_are_padding(tmp_path: Path) -> None:
    path = tmp_path / "gpu-node-1.log.gz"
    whole = lines_of(DMESG, "gpu-node-1.log", tmp_path)
    path.write_bytes(gzipped(DMESG) + b"\x00" * 5000 + b"not gzip\n")
    recovered, said = gunzipped(path.read_bytes())
    assert recovered == DMESG and "trailing garbage ignored" in said
    assert parse(path).stats.unreadable == {("file", "trailing garbage after gzip"): 1}
    assert lines_read(path) == whole
    path.write_bytes(gzipped(DMESG) + b"\x00" * (PIECE_BYTES + 10))
    assert gunzipped(path.read_bytes()) == (DMESG, "")  # zeros: gzip says nothing
    assert parse(path).stats.unreadable == {}
    assert lines_read(path) == whole


def test_a_bad_crc_keeps_the_member_and_says_so(tmp_path: Path) -> None:
    packed = bytearray(gzipped(DMESG))
    packed[-8] ^= 0x01  # the CRC-32 of the trailer
    path = tmp_path / "gpu-node-1.log.gz"
    path.write_bytes(bytes(packed))
    recovered, said = gunzipped(path.read_bytes())
    assert recovered == DMESG and "crc error" in said
    assert parse(path).stats.unreadable == {("file", "gzip check failed"): 1}
    assert lines_read(path) == lines_of(DMESG, "gpu-node-1.log", tmp_path)


def byte_by_byte(data: bytes) -> tuple[bytes, str]:
    """The most any zlib reader keeps of ``data``: fed one byte at a time, the bytes
    out before the error, and the error (zlib drops the output of the call that fails)."""
    member, out = zlib.decompressobj(31), bytearray()
    try:
        for at in range(len(data)):
            out += member.decompress(data[at : at + 1])
    except zlib.error as exc:
        return bytes(out), str(exc)
    return bytes(out), ""


def test_corrupt_data_keeps_every_byte_before_the_bad_spot(tmp_path: Path) -> None:
    """A byte changed mid-member, where zlib finds it bad (not only at the CRC check):
    every byte decompressed before the bad spot is kept, as many as zlib fed one byte
    at a time gives. (Bytes just before the spot may already be garbled: deflate
    finds a change only when it makes no sense.)"""
    body = b"".join(
        b"[ %d.000000] NVRM: Xid (PCI:0000:3b:00): 13, pid=%d, name=python, Graphics\n"
        % (i, random.Random(i).randrange(99999))
        for i in range(4000)
    )
    packed = gzipped(body)
    for at in range(200, 4000, 13):
        broken = bytearray(packed)
        broken[at] ^= 0x55
        before, error = byte_by_byte(bytes(broken))
        if error and "check" not in error and b"\n" in before:
            break
    else:
        pytest.fail("no change made the stream corrupt")
    assert "invalid compressed data" in gunzipped(bytes(broken))[1]
    path = tmp_path / "gpu-node-1.log.gz"
    path.write_bytes(bytes(broken))
    kept = Gunzip(io.BufferedReader(io.BytesIO(bytes(broken))), ReadStats()).read(1 << 30)
    assert kept == before and 0 < len(kept) < len(body)
    events = parse(path)
    assert events.stats.unreadable == {("file", "corrupt gzip"): 1}
    assert lines_read(path) == lines_of(kept, "gpu-node-1.log", tmp_path) != []


class FailingDisk:
    """A file whose reads fail with EIO after ``good`` bytes (no real disk fails on cue)."""

    def __init__(self, data: bytes, good: int) -> None:
        self.data, self.good, self.at = data, good, 0

    def read(self, size: int) -> bytes:
        if self.at >= self.good:
            raise OSError(errno.EIO, "Input/output error")
        piece = self.data[self.at : min(self.at + size, self.good)]
        self.at += len(piece)
        return piece


def test_a_read_error_keeps_what_decompressed_before_it() -> None:
    body = DMESG + random.Random(5).randbytes(3 * PIECE_BYTES).hex().encode()
    packed = gzipped(body)
    stats = ReadStats()
    kept = Gunzip(FailingDisk(packed, PIECE_BYTES // 2), stats).read(1 << 30)
    assert kept == byte_by_byte(packed[: PIECE_BYTES // 2])[0] and body.startswith(kept)
    assert len(kept) > 1000 and stats.unreadable == {("file", "read error (OSError)"): 1}

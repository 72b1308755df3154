"""Following files: partial lines, rotation by rename, copytruncate, late files, restarts."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetwatch.events import concat
from fleetwatch.inputs.follow import FilePosition, Follower
from fleetwatch.sources import ReadOptions, ReadStats


def xid_line(pid: int) -> str:
    return (
        f"[Tue Jun  4 10:29:{pid % 60:02d} 2024] NVRM: Xid (PCI:0000:3b:00): 13, "
        f"pid={pid}, name=python, Graphics Exception\n"
    )


def noise(n: int) -> str:
    return "".join(f"[Tue Jun  4 10:00:00 2024] eth0: link up {i}\n" for i in range(n))


def pids(follower: Follower) -> list[int]:
    batches = follower.poll()
    return [int(r["pid"]) for r in concat(batches).records()] if batches else []


def append(path: Path, text: str) -> None:
    with path.open("a") as out:
        out.write(text)


OPENED: list[Follower] = []


@pytest.fixture(autouse=True)
def close_followers() -> Iterator[None]:
    yield
    while OPENED:
        OPENED.pop().close()


def follow(path: Path, **kw: object) -> Follower:
    follower = Follower(str(path), ReadOptions(), ReadStats(), **kw)  # type: ignore[arg-type]
    OPENED.append(follower)
    return follower


def test_a_partial_last_line_waits_for_its_end(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_text(noise(3))
    f = follow(log)
    assert pids(f) == []  # first start: history is for replay
    line = xid_line(1)
    append(log, line[:30])
    assert pids(f) == []
    append(log, line[30:] + xid_line(2))
    assert pids(f) == [1, 2]
    assert f.positions()[str(log)].offset == log.stat().st_size


def test_rotation_by_rename_loses_and_repeats_nothing(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_text("")
    f = follow(log)
    pids(f)
    append(log, xid_line(1))
    assert pids(f) == [1]
    append(log, xid_line(2))  # written before the rename, not yet read
    log.rename(tmp_path / "kern.log.1")
    append(tmp_path / "kern.log.1", xid_line(3))  # the writer still had the old file open
    log.write_text(xid_line(4))
    assert pids(f) == [2, 3, 4]
    append(log, xid_line(5))
    assert pids(f) == [5]


def followed_folder(tmp_path: Path) -> tuple[Path, Follower]:
    """A folder with an empty ``kern.log``, followed from its start."""
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "kern.log").write_text("")
    f = follow(folder)
    pids(f)
    return folder / "kern.log", f


def test_a_file_that_leaves_the_folder_and_comes_back_renamed_is_read_on(tmp_path: Path) -> None:
    # What a rotation looks like when it falls between the folder's listing and each
    # file's stat: the file is missing from one poll, then listed under its new name
    log, f = followed_folder(tmp_path)
    append(log, noise(2) + xid_line(1))
    assert pids(f) == [1]
    append(log, xid_line(2))  # not yet read when the file leaves
    aside = log.rename(tmp_path / "kern.log.moving")
    assert pids(f) == [2]  # read to its end as it left
    append(aside, xid_line(3))  # the writer still had it open
    back = aside.rename(log.with_name("kern.log.1"))
    records = concat(f.poll()).records()
    assert [(r["pid"], r["line"]) for r in records] == [(3, 5)]
    append(back, xid_line(4))
    assert pids(f) == [4]


def test_a_file_back_with_other_first_bytes_is_read_from_its_start(tmp_path: Path) -> None:
    log, f = followed_folder(tmp_path)
    append(log, xid_line(1))
    assert pids(f) == [1]
    aside = log.rename(tmp_path / "kern.log.moving")
    assert pids(f) == []
    aside.write_text(xid_line(7) + xid_line(8))  # the same inode, rewritten while away
    aside.rename(log.with_name("kern.log.1"))
    assert pids(f) == [7, 8]


def test_copytruncate_starts_the_file_over(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_text("")
    f = follow(log)
    pids(f)
    append(log, noise(20) + xid_line(1))
    assert pids(f) == [1]
    shutil.copy(log, tmp_path / "kern.log.1")
    with log.open("r+") as out:
        out.truncate(0)
    append(log, xid_line(2))  # shorter than before
    assert pids(f) == [2]
    with log.open("r+") as out:
        out.truncate(0)
    append(log, noise(40) + xid_line(3))  # longer than before: its first bytes tell
    assert pids(f) == [3]


def test_a_file_that_appears_later_is_read_from_its_start(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    f = follow(folder)
    assert pids(f) == []  # the folder is not there yet
    (folder / "gpu-node-7").mkdir(parents=True)
    (folder / "gpu-node-7" / "kern.log").write_text(noise(2) + xid_line(1))
    batches = f.poll()
    records = concat(batches).records()
    assert [(r["pid"], r["node"], r["line"]) for r in records] == [(1, "gpu-node-7", 3)]


def test_a_restart_reads_on_from_the_saved_offset(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_text(xid_line(1))
    f = follow(log, from_start=True)
    assert pids(f) == [1]
    saved = {k: FilePosition.from_json(p.to_json()) for k, p in f.positions().items()}
    f.close()
    append(log, xid_line(2))  # while fleetwatch was down
    again = follow(log, saved=saved)
    records = concat(again.poll()).records()
    assert [(r["pid"], r["line"]) for r in records] == [(2, 2)]


def test_a_rotation_while_down_is_caught_up_from_the_rotated_file(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_text(xid_line(1))
    f = follow(log, from_start=True)
    assert pids(f) == [1]
    saved = f.positions()
    f.close()
    append(log, xid_line(2))
    os.rename(log, tmp_path / "kern.log.1")
    log.write_text(xid_line(3))
    assert pids(follow(log, saved=saved)) == [2, 3]


@pytest.mark.skipif(shutil.which("gzip") is None, reason="the gzip program is not installed")
def test_a_compressed_rotation_is_not_read_again_and_is_counted(tmp_path: Path) -> None:
    """logrotate's ``compress`` in a followed folder: ``kern.log.1`` moves on to
    ``kern.log.2``, which gzip writes as ``kern.log.2.gz`` and removes. Its lines were
    read as ``kern.log``; the .gz is counted once, not read as text nor read again."""
    node = tmp_path / "gpu-node-7"
    node.mkdir()
    log = node / "kern.log"
    log.write_text("")
    f = follow(tmp_path)
    pids(f)
    append(log, xid_line(1))
    assert pids(f) == [1]
    log.rename(node / "kern.log.1")
    log.write_text(xid_line(2))
    assert pids(f) == [2]
    (node / "kern.log.1").rename(node / "kern.log.2")
    subprocess.run(["gzip", str(node / "kern.log.2")], check=True)
    assert sorted(p.name for p in node.iterdir()) == ["kern.log", "kern.log.2.gz"]
    append(log, xid_line(3))
    assert pids(f) == [3]
    assert pids(f) == []
    assert f.stats.unreadable == {("follow", "gzip file, not followed"): 1}

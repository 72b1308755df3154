"""The report's file: what ``--out`` replaces, keeps, follows and refuses.

Everything happens under ``tmp_path``: the devices are nodes made there with
``os.mknod`` (as root; skipped otherwise) and only looked at, never opened; the write
error is a real one, the kernel's ``EFBIG`` under a file-size limit set in a child
process.
"""

from __future__ import annotations

import os
import re
import resource
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from fleetwatch.cli import cli
from fleetwatch.sinks import report_file
from tests.sinks.report_inputs import ROOT

EXAMPLE = str(ROOT / "examples" / "xid79-fallen-off-bus")
PAGE = "<!doctype html><p>a report</p>\n"


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def only(folder: Path) -> list[str]:
    """The names in ``folder``: no temporary file is ever left."""
    return sorted(p.name for p in folder.iterdir())


def device(kind: int, major: int, minor: int) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        if os.geteuid() != 0:
            pytest.skip("making a device node needs root")
        try:
            os.mknod(path, kind | 0o600, os.makedev(major, minor))
        except PermissionError:
            pytest.skip("this container may not make device nodes")

    return make


def unix_socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_a_new_file_gets_0666_less_the_umask(tmp_path: Path, mask: int) -> None:
    out = tmp_path / "report.html"
    with umask(mask):
        assert report_file.write(out, PAGE) == out
    assert out.read_text() == PAGE
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask
    assert only(tmp_path) == ["report.html"]


def test_an_existing_file_keeps_its_mode_and_owner(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    out.write_text("the old page")
    out.chmod(0o600)
    owner = (os.getuid(), os.getgid())
    if os.geteuid() == 0:  # root may give it away: the new file must take it back
        owner = (1234, 4321)
        os.chown(out, *owner)
    with umask(0o022):  # would make a new file 0644
        report_file.write(out, PAGE)
    status = out.stat()
    assert out.read_text() == PAGE
    assert stat.S_IMODE(status.st_mode) == 0o600
    assert (status.st_uid, status.st_gid) == owner
    assert only(tmp_path) == ["report.html"]


def test_a_symlink_is_followed_and_stays_a_link(tmp_path: Path) -> None:
    (tmp_path / "here").mkdir()
    (tmp_path / "there").mkdir()
    target = tmp_path / "there" / "latest.html"
    target.write_text("the old page")
    target.chmod(0o640)
    link = tmp_path / "here" / "report.html"
    link.symlink_to(target)
    assert report_file.write(link, PAGE) == target
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == PAGE and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert only(tmp_path / "here") == ["report.html"]
    assert only(tmp_path / "there") == ["latest.html"]


def test_a_dangling_symlink_makes_its_target(tmp_path: Path) -> None:
    link = tmp_path / "report.html"
    link.symlink_to(tmp_path / "new.html")
    report_file.write(link, PAGE)
    assert link.is_symlink() and (tmp_path / "new.html").read_text() == PAGE


@pytest.mark.parametrize(
    ("make", "says", "is_kind"),
    [
        (Path.mkdir, "is a directory", stat.S_ISDIR),
        (os.mkfifo, "is a FIFO (named pipe)", stat.S_ISFIFO),
        (unix_socket, "is a socket", stat.S_ISSOCK),
        (device(stat.S_IFCHR, 1, 7), "is a character device", stat.S_ISCHR),  # as /dev/full
        (device(stat.S_IFBLK, 7, 0), "is a block device", stat.S_ISBLK),  # as /dev/loop0
    ],
    ids=["directory", "fifo", "socket", "char-device", "block-device"],
)
def test_what_is_not_a_file_is_refused_and_left_as_it_is(
    tmp_path: Path, make: Callable[[Path], None], says: str, is_kind: Callable[[int], bool]
) -> None:
    node = tmp_path / "n"  # short: a socket's path has a 108-byte limit
    make(node)
    link = tmp_path / "link.html"
    link.symlink_to(node)
    for path in (node, link):  # through a link too: the link is followed, then refused
        with pytest.raises(report_file.NotAFile, match=f"^{re.escape(says)}, not a file: refused$"):
            report_file.write(path, PAGE)
        assert is_kind(node.lstat().st_mode) and link.is_symlink()
    assert only(tmp_path) == ["link.html", "n"]
    # the command says so in one line, exit 2, before it reads anything: the input
    # named here does not exist, and it is the --out that is refused
    done = CliRunner().invoke(cli, ["report", str(tmp_path / "no-such-log"), "--out", str(node)])
    assert done.exit_code == 2
    assert done.stderr == (
        f"fleetwatch: error: --out {node} {says}, not a file: refused "
        "(--out - writes the page to standard output)\n"
    )
    assert is_kind(node.lstat().st_mode) and only(tmp_path) == ["link.html", "n"]


@pytest.mark.parametrize(
    ("out", "says"),
    [
        ("", "--out '' is empty: name the HTML file to write"),
        ("{tmp}/new/", "--out {tmp}/new/ ends in /: it names a directory, not a file"),
        ("{tmp}/none/r.html", "--out {tmp}/none/r.html: No such file or directory"),
    ],
    ids=["empty", "trailing-slash", "no-folder"],
)
def test_a_path_that_names_no_file_is_a_usage_error(tmp_path: Path, out: str, says: str) -> None:
    out = out.replace("{tmp}", str(tmp_path))
    done = CliRunner().invoke(cli, ["report", EXAMPLE, "--out", out])
    assert done.exit_code == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"fleetwatch: error: {says.replace('{tmp}', str(tmp_path))}")
    assert only(tmp_path) == []


def test_a_write_error_is_one_line_and_leaves_the_old_file(tmp_path: Path) -> None:
    """The kernel refuses to grow a file past RLIMIT_FSIZE (EFBIG; Python ignores
    SIGXFSZ): a real error from ``write``, as ENOSPC would be."""
    out = tmp_path / "report.html"
    out.write_text("the old page")
    out.chmod(0o600)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))

    done = subprocess.run(
        [sys.executable, "-m", "fleetwatch", "report", EXAMPLE, "--out", str(out)],
        capture_output=True,
        text=True,
        preexec_fn=limit,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},  # .pyc files may be large
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"fleetwatch: error: --out {out}: File too large\n"
    assert out.read_text() == "the old page" and stat.S_IMODE(out.stat().st_mode) == 0o600
    assert only(tmp_path) == ["report.html"]


def test_dash_writes_the_page_to_standard_output(tmp_path: Path) -> None:
    done = CliRunner().invoke(cli, ["report", EXAMPLE, "--out", "-"])
    assert done.exit_code == 0, done.stderr
    assert done.stdout.startswith("<!doctype html>") and done.stdout.endswith("</html>\n")
    size = len(done.stdout.encode())
    assert done.stderr.endswith(f"3 finding(s); wrote standard output ({size:,} bytes)\n")

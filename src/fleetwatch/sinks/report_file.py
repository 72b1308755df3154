"""The report's file: written whole or not at all, and never over anything but a file.

``fleetwatch report --out PATH`` writes a temporary file next to ``PATH`` and renames
it over ``PATH``, so a reader never sees half a page and a failed write leaves what was
there. A rename replaces whatever the name held, so before it:

* a path that exists and is not a regular file (a directory, a device such as
  ``/dev/full`` or ``/dev/null``, a FIFO, a socket) is refused: ``NotAFile``;
* a symlink is followed, as an editor does: the page is written next to the link's
  final target and renamed over the target, and the link stays a link;
* an existing file keeps its permission bits and, where the process may set them, its
  owner and group (a ``chmod 600`` report of private logs stays private);
* a new file gets ``0o666`` less the umask, as a shell redirection would (the umask is
  the operator's say on who may read what they write).

Every write error (ENOSPC, EFBIG, EACCES, EIO at ``fsync``) raises ``OSError`` after
the temporary file is removed. ``-`` names standard output to the command; here it is
a file named ``-`` like any other.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path
from typing import Final

_KINDS: Final = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
)
_TRIES: Final = 100  # temporary names taken by others before giving up (mkstemp's habit)


class NotAFile(ValueError):
    """The path names something that a report must not replace (or names nothing)."""


def target(path: str) -> tuple[Path, os.stat_result | None]:
    """The regular file that writing ``path`` would replace (a symlink's final target)
    and its status, or its status ``None`` where nothing is there yet.

    Raises ``NotAFile`` for an empty path, one ending in ``/``, or one that names a
    directory, a device, a FIFO or a socket; ``OSError`` where it cannot be looked at
    (a symlink loop, a folder it may not search)."""
    if not path:
        raise NotAFile("is empty: name the HTML file to write")
    if path.endswith(os.sep):
        raise NotAFile("ends in /: it names a directory, not a file")
    try:
        status = os.stat(path)  # through every link, /proc's magic ones too (/dev/stdout)
    except FileNotFoundError:  # nothing there, or a dangling link: its target is made
        return Path(os.path.realpath(path)), None
    if not stat.S_ISREG(status.st_mode):
        what = next((name for test, name in _KINDS if test(status.st_mode)), "not a regular file")
        raise NotAFile(f"is {what}, not a file: refused")
    return Path(os.path.realpath(path)), status


def write(path: str | os.PathLike[str], page: str) -> Path:
    """Write ``page`` (UTF-8) to the file ``path`` names, whole or not at all; return
    the file written (a symlink's target). See the module for what is kept and refused."""
    real, existing = target(os.fspath(path))
    data = page.encode("utf-8")
    handle, temporary = _create_next_to(real, private=existing is not None)
    try:
        try:
            if existing is not None:
                _keep_owner_and_mode(handle, existing)
            view = memoryview(data)
            while view:
                view = view[os.write(handle, view) :]
            os.fsync(handle)  # a full disk or quota may only say so here
        finally:
            os.close(handle)
        os.replace(temporary, real)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return real


def _create_next_to(real: Path, private: bool) -> tuple[int, Path]:
    """A new temporary file in ``real``'s folder, open for writing: private (0o600)
    until it takes an existing file's mode, else 0o666 less the umask (the kernel
    applies the umask, and the folder's default ACL, as for a shell redirection)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(_TRIES):
        temporary = real.with_name(f".{real.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(temporary, flags, 0o600 if private else 0o666), temporary
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name next to {real}")


def _keep_owner_and_mode(handle: int, existing: os.stat_result) -> None:
    """Give the new file the old one's owner and group where this process may (root
    may; anyone may keep a group they are in), then its permission bits (after the
    owner: a chown clears set-user-ID)."""
    if hasattr(os, "fchown"):
        mine = os.fstat(handle)
        if (mine.st_uid, mine.st_gid) != (existing.st_uid, existing.st_gid):
            try:
                os.fchown(handle, existing.st_uid, existing.st_gid)
            except PermissionError:
                # not root: keep the group if this user is in it; the file becomes
                # this user's, as an editor's save would make it
                with contextlib.suppress(PermissionError):
                    os.fchown(handle, -1, existing.st_gid)
    os.fchmod(handle, stat.S_IMODE(existing.st_mode))

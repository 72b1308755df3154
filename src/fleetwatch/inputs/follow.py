"""Follow log files as they grow: ``tail -F`` that never loses or repeats a line.

A ``Follower`` watches one path: a file, or a folder whose files (and the files that
appear in it later) are each followed, in sub-folders too; a file's node is named as
``replay`` names it (``incident/gpu-node-7/kern.log`` is ``gpu-node-7``), and a file
with no node folder is this machine's (its host name). Every
``poll`` reads what was appended since the last one and hands it to that file's
``LineStream``, which keeps a partial last line (or a record still being written)
until the rest arrives.

What happens to a file, and what the follower does:

* **rotation by rename** (``kern.log`` -> ``kern.log.1``, a new ``kern.log``): the path
  now names another inode. The old file is read to its end through the handle still
  open, then the new one from its start. A file missing from one poll (renamed between
  the folder's listing and its stat, or moved out and back) is read to its end then;
  listed again under a new name, with the same first bytes, it is read on from there.
* **copytruncate** (the file is copied, then cut to zero and written again): the file
  is shorter than the offset read, or its first bytes changed. It is read again from
  its start.
* **a file that appears later**: read from its start.
* **a ``.gz`` file** (logrotate's ``compress``: ``kern.log.1`` becomes
  ``kern.log.2.gz``): not followed, counted once (``follow``, ``gzip file, not
  followed``). It is a compressed copy of lines read already, and a gzip stream is
  history, not a log that grows: ``replay`` reads it.
* **a quiet tail**: a record that may go on (an AER report) is held for the lines
  after it; once the file has been quiet for ``quiet_s`` (0.2 s) it is read as it is.
  A position never passes a held record, so a restart reads it again.
* **a restart**: each file's position (device, inode, first bytes, offset, line) is
  saved with the findings. A file that is still the same is read on from its offset.
  One that was rotated while fleetwatch was down is found by its inode next to the
  path, read to its end, and the new file is read from its start; nothing written
  during the downtime is lost or read twice.

On the first start, without a saved position, a file that already exists is read from
its end (``from_start = false``, the default): old history is for ``replay``.
"""

from __future__ import annotations

import glob
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

from fleetwatch.events import BatchBuilder, EventBatch
from fleetwatch.sources.context import (
    CHUNK_BYTES,
    FileContext,
    Identities,
    ReadOptions,
    ReadStats,
)
from fleetwatch.sources.files import Input, InputError, expand, shown
from fleetwatch.sources.stream import LineStream

HEAD_BYTES: Final = 256  # the fingerprint that tells a rewritten file from its old self
GONE_KEPT: Final = 64  # how many files that left the listing are remembered, newest kept


@dataclass(frozen=True)
class FilePosition:
    """Where reading of one file stands: saved with the findings, resumed after a restart."""

    path: str
    device: int
    inode: int
    head: str  # hex of the file's first bytes when it was opened (up to HEAD_BYTES)
    offset: int  # every byte before this was read (a partial line after it was not)
    line: int  # the line number at ``offset``

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FilePosition:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def _head(handle: BinaryIO) -> bytes:
    return os.pread(handle.fileno(), HEAD_BYTES, 0)


class _Open:
    """One open file being followed."""

    def __init__(
        self,
        path: Path,
        handle: BinaryIO,
        offset: int,
        line: int,
        ctx: FileContext,
    ) -> None:
        st = os.fstat(handle.fileno())
        self.path = path
        self.handle = handle
        self.device, self.inode = st.st_dev, st.st_ino
        self.head = _head(handle)
        self.offset = offset  # bytes handed to the stream so far
        self.stream = LineStream(ctx, line=line)
        self.grew = time.monotonic()  # when bytes last arrived

    def position(self) -> FilePosition:
        consumed = self.offset - len(self.stream.carry)
        return FilePosition(
            str(self.path), self.device, self.inode, self.head.hex(), consumed, self.stream.line
        )

    def read_new(self) -> bool:
        """Hand what was appended to the stream; True if anything was."""
        got = False
        size = self.stream.ctx.options.chunk_bytes  # the stream's chunks, as replay's
        while chunk := os.pread(self.handle.fileno(), size, self.offset):
            self.offset += len(chunk)
            self.stream.feed(chunk)
            got = True
        if got:
            self.grew = time.monotonic()
            if len(self.head) < HEAD_BYTES:
                self.head = _head(self.handle)
        return got

    def rewritten(self) -> bool:
        """Cut and rewritten in place (copytruncate): shorter, or other first bytes."""
        size = os.fstat(self.handle.fileno()).st_size
        if size < self.offset:
            return True
        return _head(self.handle)[: len(self.head)] != self.head

    def close(self) -> None:
        self.handle.close()


class Follower:
    """Follows one file, or every file under one folder; ``poll`` returns new events.

    Files are known by identity (device, inode), not by name: a renamed file is the
    same file, read on from where it was (a rotation inside a followed folder), and a
    new inode at a known name is a new file.
    """

    def __init__(
        self,
        path: str,
        options: ReadOptions,
        stats: ReadStats,
        saved: dict[str, FilePosition] | None = None,
        from_start: bool = False,
        quiet_s: float = 0.2,
    ) -> None:
        self.root = Path(path)
        self.quiet_s = quiet_s
        self.options = options
        self.stats = stats
        self.identities = Identities()
        self.builder = BatchBuilder()
        self._ready: list[EventBatch] = []  # batches the builder sealed, every file's
        self._saved = {(p.device, p.inode): p for p in (saved or {}).values()}
        self._skip_history = not saved and not from_start
        self._open: dict[tuple[int, int], _Open] = {}
        self._inputs: dict[str, Input] = {}  # path -> its node (its folder, or this host)
        self._compressed: set[str] = set()  # the .gz files counted as not followed
        self._host = socket.gethostname()
        # path -> the stream of the file that left it (renamed or gone): a new file at
        # that path goes on with it, so a record the rotation cut in two is joined;
        # with the time it left, to read a held record once no file came
        self._left: dict[str, tuple[LineStream, float]] = {}
        # (device, inode) -> (offset, line, head) of a file that left the listing after
        # being read to its end: a rotation seen between listing and stat, or a move out
        # and back, shows it again under a new name, to be read on, not from its start
        self._gone: dict[tuple[int, int], tuple[int, int, bytes]] = {}

    def holding(self) -> bool:
        """Whether a record is held for lines that may continue it (read once quiet)."""
        return any(f.stream.held for f in self._open.values()) or any(
            stream.held for stream, _ in self._left.values()
        )

    def positions(self) -> dict[str, FilePosition]:
        """Each followed file's position, by path (what the store keeps)."""
        return {str(f.path): f.position() for f in self._open.values()}

    def poll(self) -> list[EventBatch]:
        """Read everything new in the followed files; the events, as batches."""
        listed: dict[tuple[int, int], Path] = {}
        for path in self._paths():
            try:
                st = os.stat(path)
            except OSError:
                continue  # gone between listing and looking
            listed.setdefault((st.st_dev, st.st_ino), path)
        for key in [k for k in self._open if k not in listed]:
            old = self._open.pop(key)  # renamed away or deleted: read to its end
            old.read_new()
            old.close()
            self._left[str(old.path)] = (old.stream, old.grew)  # a new file goes on with it
            self._gone[key] = (old.offset, old.stream.line, old.head)
            if len(self._gone) > GONE_KEPT:
                del self._gone[next(iter(self._gone))]
        for key, path in listed.items():  # files already followed first, then new ones
            current = self._open.get(key)
            if current is None:
                continue
            if current.path != path:  # renamed (rotated) inside the folder: read on
                current.read_new()
                self._left[str(current.path)] = (current.stream, current.grew)
                current.stream = LineStream(current.stream.ctx, line=current.stream.line)
                current.path = path
            self._check(current)
        for key, path in listed.items():
            if key not in self._open:
                self._start(path, key)
        self._skip_history = False  # files that appear from now on are read whole
        self._flush_quiet()
        if len(self.builder):
            self._ready.append(self.builder.seal())
        ready = list(self._ready)
        self._ready.clear()  # the same list every file's context appends to
        return ready

    def _flush_quiet(self) -> None:
        """Read the records held in files that have been quiet for ``quiet_s``."""
        quiet_since = time.monotonic() - self.quiet_s
        for current in self._open.values():
            if current.grew <= quiet_since and current.stream.held:
                current.stream.flush()
        for stream, grew in self._left.values():
            if grew <= quiet_since and stream.held:
                stream.flush()

    def close(self) -> None:
        for current in self._open.values():
            current.close()
        self._open.clear()

    def _paths(self) -> list[Path]:
        try:
            found = expand([str(self.root)], host=self._host)
        except InputError:
            return []  # not there yet
        paths = []
        for item in found:
            if item.path is None or item.unreadable is not None:
                continue  # a FIFO or a dangling link in the folder: nothing to follow
            if item.path.name.endswith(".gz"):
                if item.name not in self._compressed:
                    self._compressed.add(item.name)
                    self.stats.bad("follow", "gzip file, not followed")
                continue
            self._inputs[str(item.path)] = item
            paths.append(item.path)
        return paths

    def _context(self, path: Path) -> FileContext:
        item = self._inputs.get(str(path))
        ctx = FileContext(
            shown(str(path)),
            item.node if item else self._host,
            self.options,
            self.stats,
            self.identities,
            self.builder,
            time.time(),
        )
        ctx.ready = self._ready
        ctx.job = item.job if item else None
        return ctx

    def _start(self, path: Path, key: tuple[int, int]) -> None:
        """Begin following a file not followed before: resume, or start."""
        try:
            handle = path.open("rb")
        except OSError as exc:
            self.stats.bad("follow", f"cannot open ({exc.strerror or type(exc).__name__})")
            return
        size = os.fstat(handle.fileno()).st_size
        offset, line = 0, 1
        saved = self._saved.pop(key, None)
        gone = self._gone.pop(key, None)
        if saved is not None:
            head = bytes.fromhex(saved.head)
            if size >= saved.offset and _head(handle)[: len(head)] == head:
                offset, line = saved.offset, saved.line  # the same file: read on
        elif gone is not None:
            end, at_line, head = gone
            if size >= end and _head(handle)[: len(head)] == head:
                offset, line = end, at_line  # the file that left, back under a new name
        elif self._skip_history:
            offset, line = size, 1 + _count_lines(handle, size)
        if not self._open and self._saved and not self.root.is_dir():
            self._catch_up(path)  # the one followed file was rotated while we were down
        self.stats.files += 1
        opened = _Open(path, handle, offset, line, self._context(path))
        if gone is None and str(path) in self._left:
            opened.stream = self._left.pop(str(path))[0]
        self._open[key] = opened
        opened.read_new()

    def _catch_up(self, path: Path) -> None:
        """Read the rest of the file a rotation moved aside while we were down."""
        for sibling in sorted(path.parent.glob(glob.escape(path.name) + "?*")):
            try:
                st = sibling.stat()
            except OSError:
                continue
            saved = self._saved.pop((st.st_dev, st.st_ino), None)
            if saved is not None:
                with sibling.open("rb") as handle:
                    old = _Open(sibling, handle, saved.offset, saved.line, self._context(path))
                    old.read_new()
                    old.stream.feed(b"", eof=True)
                return

    def _check(self, current: _Open) -> None:
        if current.rewritten():  # copytruncate: the file starts over
            current.stream.feed(b"", eof=True)
            current.offset = 0
            current.head = _head(current.handle)
            current.stream = LineStream(current.stream.ctx)
        current.read_new()


def _count_lines(handle: BinaryIO, end: int) -> int:
    lines, at = 0, 0
    while at < end and (chunk := os.pread(handle.fileno(), min(CHUNK_BYTES, end - at), at)):
        lines += chunk.count(b"\n")
        at += len(chunk)
    return lines

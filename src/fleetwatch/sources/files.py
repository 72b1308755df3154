"""Inputs: files, folders, gzip and stdin, and which node a file speaks for.

``read_paths`` is the one entry point ``parse`` and ``replay`` use. It walks folders
recursively (sorted, hidden files skipped), opens gzip by its magic bytes rather
than its name (``gunzip.py``: a cut, concatenated or corrupt ``.gz`` gives what
``gzip -d`` gives; an empty ``.gz`` is counted as cut), reads ``-`` as stdin, and
picks how to read each input from its first bytes:

* an XML document (``nvidia-smi -q -x``) or a multi-line JSON document (``kubectl get
  events -o json``) is read whole;
* a ``--query-gpu`` CSV is read as a table under its header;
* anything else is a line stream of mixed formats (``stream.py``);
* a file whose first block is binary (NUL bytes among many other control bytes) is
  counted, not read. NUL bytes in text (the padding an unclean shutdown leaves in
  syslog) cost only the lines they are on.

The node of a record that names none: ``--node``; else the folder that directly holds
the file when it is not the folder named on the command line
(``incident/gpu-node-7/dmesg.txt`` -> ``gpu-node-7``, whether ``incident`` or its
parent is named); else the file name without its
extensions (``gpu-node-7.dmesg.log.gz`` -> ``gpu-node-7``) or ``stdin``, which
``ReadStats.file_nodes`` records so that the CLI says so once. Two files' GPUs are thus
never merged into one node by accident.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from fleetwatch.events import BatchBuilder, EventBatch
from fleetwatch.sources import json_document
from fleetwatch.sources.context import FileContext, Identities, ReadOptions, ReadStats
from fleetwatch.sources.gunzip import MAGIC, Gunzip
from fleetwatch.sources.registry import DOCUMENT_READERS
from fleetwatch.sources.stream import LineStream

HEAD_BYTES: Final = 64 << 10
MAX_DOCUMENT_BYTES: Final = 1 << 30


class InputError(OSError):
    """An input path that does not exist or cannot be opened."""


@dataclass(frozen=True)
class Input:
    """One file to read: where it is, how to show its name, its fallback node and job."""

    path: Path | None  # None: stdin
    name: str
    node: str
    job: str | None = None  # the folder of its logs, for NCCL records without a job id
    node_is_file_name: bool = False  # ``node`` is the file's name or "stdin": say so
    unreadable: str | None = None  # why a file found in a folder is not read (counted)


def shown(text: str) -> str:
    """A path's text as it can be written anywhere: bytes that are not UTF-8 as ``\\xNN``.

    Python keeps such bytes of a file name as lone surrogates, which no UTF-8 output
    (JSON, SQLite, a webhook body) can hold.
    """
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def node_from_name(path: Path) -> str:
    name = shown(path.name)
    return name.split(".", 1)[0] or name


def _folder_name(path: Path) -> str:
    return shown(path.resolve().name) or "/"


def _not_a_log(path: Path) -> str | None:
    """Why a file found in a folder cannot be read as a log, or None: a dangling link,
    a symlink loop, a FIFO, a socket or a device (opening a FIFO waits for a writer)."""
    try:
        mode = path.stat().st_mode
    except (OSError, RuntimeError):
        return "cannot read"
    return None if stat.S_ISREG(mode) else "not a regular file"


def _again(path: Path, seen: set[Path]) -> bool:
    """Whether ``path`` was listed already (by another spelling); notes it if not."""
    try:
        real = path.resolve()
    except (OSError, RuntimeError):  # 3.11 raises RuntimeError for a symlink loop
        return False
    if real in seen:
        return True
    seen.add(real)
    return False


def expand(paths: list[str], host: str | None = None) -> list[Input]:
    """The files behind the command line's paths, in a stable order, with their nodes.

    The node of a file's records that name none: the folder that directly holds the
    file, when that is not the folder named here (``incident/gpu-node-7/dmesg``, named
    as ``incident`` or as its parent: ``gpu-node-7`` either way, so a parent folder
    reads as its children do); else ``host`` (a live source's machine);
    else the file's own name, or ``stdin``, flagged so the caller can say so. A file
    named here directly takes its own name: the folder above it is as often
    ``/var/log`` as a node. ``--node`` overrides all of these (``ReadOptions.node``).

    The job of NCCL records that name none is the folder that holds the log
    (``incident/job-42/rank3.log`` -> ``job-42``), by its name alone, so it is the same
    from any working directory and whichever folder above it is named.
    """
    inputs: list[Input] = []
    seen: set[Path] = set()  # a file named twice (a folder and a file in it) is read once
    for raw in paths:
        if raw == "-":
            inputs.append(Input(None, "<stdin>", host or "stdin", "stdin", host is None))
            continue
        path = Path(raw)
        if path.is_dir():
            named = _folder_name(path)
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for file in sorted(f for f in files if not f.startswith(".")):
                    found = Path(root, file)
                    if _again(found, seen):
                        continue
                    folders = [named, *map(shown, found.relative_to(path).parts[:-1])]
                    job = folders[-1]
                    if len(folders) > 1:
                        item = Input(found, shown(str(found)), folders[-1], job)
                    else:
                        node = host or node_from_name(found)
                        item = Input(found, shown(str(found)), node, job, host is None)
                    # found in a folder: only a regular file is a log (a FIFO would block)
                    inputs.append(dataclasses.replace(item, unreadable=_not_a_log(found)))
        elif path.exists():
            if _again(path, seen):
                continue
            node = host or node_from_name(path)
            job = _folder_name(path.parent)
            inputs.append(Input(path, shown(str(path)), node, job, host is None))
        else:
            raise InputError(f"no such file or folder: {raw}")
    return inputs


class _Reader:
    """An input's bytes, decompressed when gzip (``gunzip.py``), where a read error
    ends the data: a failing disk keeps everything read before the error, which is
    counted once."""

    def __init__(self, raw: BinaryIO, stats: ReadStats) -> None:
        self._raw = raw
        self._stats = stats
        peek = raw.peek(2)[:2] if hasattr(raw, "peek") else None
        self.empty = peek == b""  # no byte at all (peek sees the end only at the end)
        self._gzip = Gunzip(raw, stats) if peek == MAGIC else None
        self._failed = False

    def read(self, size: int) -> bytes:
        if self._gzip is not None:
            return self._gzip.read(size)
        if self._failed:
            return b""
        pieces: list[bytes] = []
        wanted = size
        try:
            while wanted > 0:
                piece = self._raw.read(wanted)
                if not piece:
                    break
                pieces.append(piece)
                wanted -= len(piece)
        except OSError as exc:
            self._failed = True
            self._stats.bad("file", f"read error ({type(exc).__name__})")
        return b"".join(pieces)

    def close(self) -> None:
        if self._raw is not sys.stdin.buffer:
            self._raw.close()


def _open(item: Input) -> tuple[BinaryIO, float]:
    """The input's bytes and its modification time."""
    if item.path is None:
        return sys.stdin.buffer, time.time()
    try:
        raw = item.path.open("rb")
        mtime = item.path.stat().st_mtime
    except OSError as exc:
        raise InputError(f"cannot read {item.name}: {exc.strerror or exc}") from exc
    return raw, mtime


_CONTROL_BYTES: Final = bytes(c for c in range(32) if c not in b"\t\n\r\x1b") + b"\x7f"


_NOT_TEXT: Final = _CONTROL_BYTES + b"\x00"
_TEXT_LINE: Final = 32  # a line this long without either is text


def _binary(block: bytes) -> bool:
    """A block of a program or a core dump, not of a log: NULs and other control bytes,
    and no line of text among them.

    A log with a few garbage lines (a crash's NULs, a serial console's noise) still has
    lines of text, and its records must be read; a program's or an image's head has
    control bytes in nearly every "line" (between two newline bytes that happen to be
    there), and reading it would only count bad lines.
    """
    if b"\x00" not in block:
        return False
    rest = block.replace(b"\x00", b"")
    controls = len(rest) - len(rest.translate(None, _CONTROL_BYTES))
    if controls * 20 <= len(rest):
        return False
    return not any(
        len(line) >= _TEXT_LINE and len(line.translate(None, _NOT_TEXT)) == len(line)
        for line in block.split(b"\n")
    )


def _unclaimed(head: bytes) -> str | None:
    """What kind of document no reader claimed, or None for a line stream."""
    if head.lstrip().startswith(b"<?xml"):
        return "unknown xml document"
    if json_document.is_document(head):
        return "unknown json document"
    return None


def _read_one(stream: _Reader, ctx: FileContext) -> Iterator[None]:
    head = stream.read(HEAD_BYTES)
    if not head:
        if stream.empty and ctx.name.endswith(".gz"):
            ctx.stats.bad("file", "truncated gzip")  # as gzip -d says: not even a header
        return
    if _binary(head[:4096]):
        ctx.stats.bad("file", "binary data")
        return
    reader = next((r for r in DOCUMENT_READERS if r.sniff and r.sniff(head)), None)
    unclaimed = _unclaimed(head) if reader is None else None
    if reader is None and unclaimed is None:
        yield from LineStream(ctx).run(stream, head)
        return
    data = head + stream.read(MAX_DOCUMENT_BYTES)
    ctx.stats.lines += data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    if reader is None or reader.read_document is None:
        ctx.stats.bad("file", unclaimed or "unknown document")  # whole, and nobody's
    else:
        try:
            reader.read_document(data, ctx)
        except Exception as exc:  # a document no reader survives is one record
            ctx.stats.failed(reader.source, exc)
    yield


def read_input(raw: BinaryIO, ctx: FileContext) -> Iterator[None]:
    """Read one input's bytes into ``ctx``, yielding after each chunk; ``raw`` is closed.

    The events wait in ``ctx.ready`` (``ctx.take()`` seals the last ones). ``read_paths``
    reads every file so; bytes in memory read the same way through
    ``io.BufferedReader(io.BytesIO(data))`` (the fuzzer, tests).
    """
    stream = _Reader(raw, ctx.stats)
    try:
        yield from _read_one(stream, ctx)
    finally:
        stream.close()


def read_paths(
    paths: list[str], options: ReadOptions | None = None, stats: ReadStats | None = None
) -> Iterator[EventBatch]:
    """Every event in ``paths``, as batches, in file order then line order.

    Raises ``InputError`` for a path that does not exist before anything is read.
    """
    yield from read_items(expand(paths), options, stats)


def read_items(
    items: Iterable[Input],
    options: ReadOptions | None = None,
    stats: ReadStats | None = None,
    identities: Identities | None = None,
) -> Iterator[EventBatch]:
    """Every event of ``items`` (``expand``'s inputs), as batches, in order;
    ``identities``: what is known of the GPUs before them (default: nothing)."""
    options = options or ReadOptions()
    stats = stats if stats is not None else ReadStats()
    identities = identities if identities is not None else Identities()
    builder = BatchBuilder()
    for item in items:
        if item.unreadable is not None:
            stats.bad("file", item.unreadable)
            continue
        raw, mtime = _open(item)
        stats.files += 1
        ctx = FileContext(item.name, item.node, options, stats, identities, builder, mtime)
        ctx.job = item.job
        ctx.node_is_file_name = item.node_is_file_name and options.node is None
        for _ in read_input(raw, ctx):
            yield from ctx.ready
            ctx.ready.clear()
        yield from ctx.ready
    if len(builder):
        yield builder.seal()

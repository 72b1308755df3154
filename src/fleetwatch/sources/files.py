"""Inputs: files, folders, gzip and stdin, and which node a file speaks for.

``read_paths`` is the one entry point ``parse`` and ``replay`` use. It walks folders
recursively (sorted, hidden files skipped), opens ``.gz`` by its magic bytes rather
than its name, reads ``-`` as stdin, and picks how to read each input from its first
bytes:

* an XML document (``nvidia-smi -q -x``) or a multi-line JSON document (``kubectl get
  events -o json``) is read whole;
* a ``--query-gpu`` CSV is read as a table under its header;
* anything else is a line stream of mixed formats (``stream.py``);
* a file whose first block is binary (NUL bytes among many other control bytes) is
  counted, not read. NUL bytes in text (the padding an unclean shutdown leaves in
  syslog) cost only the lines they are on.

The node of a record that names none: ``--node``; else, for a file inside a folder of
per-node folders (``incident/gpu-node-7/dmesg.txt``), that folder's name; else the
file name without its extensions (``gpu-node-7.dmesg.log.gz`` -> ``gpu-node-7``). Two
files' GPUs are thus never merged into one node by accident.
"""

from __future__ import annotations

import gzip
import os
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

from fleetwatch.events import BatchBuilder, EventBatch
from fleetwatch.sources import json_document
from fleetwatch.sources.context import FileContext, Identities, ReadOptions, ReadStats
from fleetwatch.sources.registry import DOCUMENT_READERS
from fleetwatch.sources.stream import LineStream

HEAD_BYTES: Final = 64 << 10
MAX_DOCUMENT_BYTES: Final = 1 << 30
_GZIP_MAGIC: Final = b"\x1f\x8b"


class InputError(OSError):
    """An input path that does not exist or cannot be opened."""


@dataclass(frozen=True)
class Input:
    """One file to read: where it is, how to show its name, its fallback node."""

    path: Path | None  # None: stdin
    name: str
    node: str


def shown(text: str) -> str:
    """A path's text as it can be written anywhere: bytes that are not UTF-8 as ``\\xNN``.

    Python keeps such bytes of a file name as lone surrogates, which no UTF-8 output
    (JSON, SQLite, a webhook body) can hold.
    """
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def node_from_name(path: Path) -> str:
    name = shown(path.name)
    return name.split(".", 1)[0] or name


def expand(paths: list[str]) -> list[Input]:
    """The files behind the command line's paths, in a stable order."""
    inputs: list[Input] = []
    for raw in paths:
        if raw == "-":
            inputs.append(Input(None, "<stdin>", "stdin"))
            continue
        path = Path(raw)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for file in sorted(f for f in files if not f.startswith(".")):
                    found = Path(root, file)
                    relative = found.relative_to(path)
                    if len(relative.parts) > 1:
                        node = shown(relative.parts[0])
                    else:
                        node = node_from_name(found)
                    inputs.append(Input(found, shown(str(found)), node))
        elif path.exists():
            inputs.append(Input(path, shown(str(path)), node_from_name(path)))
        else:
            raise InputError(f"no such file or folder: {raw}")
    return inputs


class _Reader:
    """An input's bytes, decompressed when gzip, where a read error ends the data.

    A truncated ``.gz`` or a failing disk keeps everything read before the error: the
    error is counted once and the input ends there. Gzip is read in small pieces so
    that little is lost with the piece that failed.
    """

    _PIECE: Final = 64 << 10

    def __init__(self, raw: BinaryIO, stats: ReadStats) -> None:
        self._raw = raw
        self._stats = stats
        peek = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
        self._gzip = gzip.GzipFile(fileobj=raw, mode="rb") if peek == _GZIP_MAGIC else None
        self._failed = False

    def read(self, size: int) -> bytes:
        if self._failed:
            return b""
        source: Any = self._gzip or self._raw
        step = self._PIECE if self._gzip else size
        pieces: list[bytes] = []
        wanted = size
        try:
            while wanted > 0:
                piece = source.read(min(step, wanted))
                if not piece:
                    break
                pieces.append(piece)
                wanted -= len(piece)
        except (OSError, EOFError, zlib.error) as exc:
            self._failed = True
            self._stats.bad("file", f"read error ({type(exc).__name__})")
        return b"".join(pieces)

    def close(self) -> None:
        if self._gzip is not None:
            self._gzip.close()
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


def _binary(block: bytes) -> bool:
    """A block of a program or a core dump, not of a log: NULs and other control bytes."""
    if b"\x00" not in block:
        return False
    rest = block.replace(b"\x00", b"")
    controls = len(rest) - len(rest.translate(None, _CONTROL_BYTES))
    return controls * 20 > len(rest)


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
    options = options or ReadOptions()
    stats = stats if stats is not None else ReadStats()
    identities = Identities()
    builder = BatchBuilder()
    for item in expand(paths):
        raw, mtime = _open(item)
        stats.files += 1
        ctx = FileContext(item.name, item.node, options, stats, identities, builder, mtime)
        for _ in read_input(raw, ctx):
            yield from ctx.ready
            ctx.ready.clear()
        yield from ctx.ready
    if len(builder):
        yield builder.seal()

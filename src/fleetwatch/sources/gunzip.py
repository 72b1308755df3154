"""Gzip input, read as ``gzip -d`` reads it: every byte that decompresses is kept.

``gzip.GzipFile.read`` raises at a cut-off end before it returns the piece it was
decompressing, so a small ``.gz`` cut within its first piece lost everything it held.
Here the compressed bytes go to zlib in small pieces and what each piece decompresses
is kept before anything else is looked at:

* members written one after another (``cat a.gz b.gz``, ``pigz``, an appended
  rotation) read as one stream, as gzip reads them;
* after the last member, zeros (the padding of a tape or a block device) are ignored,
  as gzip ignores them; other bytes that are no member are ignored and counted once,
  ``trailing garbage after gzip`` (gzip's "decompression OK, trailing garbage
  ignored");
* a stream that ends inside a member (a copy cut short, a full disk) keeps all that
  decompressed; its last partial line is read as any last line without a newline; it
  is counted ``truncated gzip``;
* corrupt data keeps what decompressed before the bad spot (``corrupt gzip``); a
  member whose CRC or length check fails keeps all of it, since the check follows the
  data (``gzip check failed``): the lines are read, and the count says to doubt them.

The bad spot is found by trying again from a copy of the decompressor with half the
piece, then a half of that, so an error costs only the few bytes around it and a
healthy stream pays one copy of zlib's state per piece.
"""

from __future__ import annotations

import contextlib
import zlib
from typing import Any, Final

from fleetwatch.sources.context import ReadStats
from fleetwatch.sources.stream import Readable

MAGIC: Final = b"\x1f\x8b"
PIECE_BYTES: Final = 16 << 10  # compressed bytes per step: at most ~16 MiB out
_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS  # a gzip header and trailer, checked by zlib
_CHECK_FAILED: Final = ("incorrect data check", "incorrect length check")


class Gunzip:
    """The decompressed bytes of the gzip stream ``raw``; what goes wrong is counted.

    ``read(size)`` returns up to ``size`` bytes and ``b""`` at the end, which comes
    after the last member, or at the first error (counted in ``stats`` as a ``file``
    record of its reason); it never raises for the data.
    """

    def __init__(self, raw: Readable, stats: ReadStats) -> None:
        self._raw = raw
        self._stats = stats
        self._member: Any = zlib.decompressobj(_GZIP_WBITS)
        self._member_fed = False  # whether the current member has had any bytes
        self._ahead = b""  # compressed bytes read, not yet fed (the next member's)
        self._out = bytearray()
        self._ended = False

    def read(self, size: int) -> bytes:
        while len(self._out) < size and not self._ended:
            self._step()
        data = bytes(self._out[:size])
        del self._out[:size]
        return data

    def _step(self) -> None:
        piece = self._ahead or self._read_raw()
        self._ahead = b""
        if self._ended:
            return
        if not piece:
            if self._member_fed and not self._member.eof:
                with contextlib.suppress(zlib.error):  # the cut is what is counted
                    self._out += self._member.flush()
                self._end("truncated gzip")
            self._ended = True
            return
        self._member_fed = True
        self._member, out, error = _inflate(self._member, piece)
        self._out += out
        if error is not None:
            reason = "gzip check failed" if str(error).endswith(_CHECK_FAILED) else "corrupt gzip"
            self._end(reason)
        elif self._member.eof:
            self._next_member(self._member.unused_data)

    def _next_member(self, rest: bytes) -> None:
        """After a member's end: the next member, or the bytes that follow, counted."""
        while len(rest) < len(MAGIC) and (more := self._read_raw()):
            rest += more
        if self._ended or not rest:
            return  # the end of the stream (or a read error, counted)
        if rest.startswith(MAGIC):
            self._member = zlib.decompressobj(_GZIP_WBITS)
            self._member_fed = False
            self._ahead = rest
            return
        while not rest.strip(b"\x00") and (more := self._read_raw()):
            rest = more  # padding so far: garbage only if something else follows
        if rest.strip(b"\x00"):
            self._end("trailing garbage after gzip")
        self._ended = True

    def _read_raw(self) -> bytes:
        try:
            return self._raw.read(PIECE_BYTES)
        except OSError as exc:  # a failing disk: what was read is kept
            self._end(f"read error ({type(exc).__name__})")
            return b""

    def _end(self, reason: str) -> None:
        self._stats.bad("file", reason)
        self._ended = True


def _inflate(member: Any, data: bytes) -> tuple[Any, bytes, zlib.error | None]:
    """``data`` decompressed by ``member``: the decompressor to go on with, the bytes,
    and the error that stopped it, if any, with every byte before the bad spot."""
    saved = member.copy()  # zlib drops a call's output when it raises
    try:
        return member, member.decompress(data), None
    except zlib.error as exc:
        if len(data) == 1:
            return saved, b"", exc
    half = len(data) // 2
    member, head, error = _inflate(saved, data[:half])
    if error is not None:
        return member, head, error
    member, tail, error = _inflate(member, data[half:])
    return member, head + tail, error

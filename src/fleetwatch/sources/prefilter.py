"""The prefilter: where in a chunk of log the records might be.

Most lines of a real log are noise, so the stream asks one question of each whole
chunk: at which offsets does any record keyword occur? Each reader lists its own
keywords (``registry.KEYWORDS`` gathers them); a line that contains none cannot hold
a record.

Two engines answer it with the same patterns:

* ``hyperscan`` (Intel's multi-pattern matcher; the ``hyperscan`` wheel bundles it)
  scans all keywords at once at GB/s, faster than ``grep`` over the same bytes;
* Python's ``re`` is the fallback where that wheel cannot load (it ships for x86-64).
  An alternation in ``re`` scans byte by byte, about ten times slower, with the same
  answers; ``tests/sources/test_prefilter.py`` holds the two to that.
"""

from __future__ import annotations

import re
from typing import Any


class _HyperscanPrefilter:
    def __init__(self, hyperscan: Any, keywords: tuple[bytes, ...]) -> None:
        self._hs = hyperscan
        self._db = hyperscan.Database()
        self._db.compile(
            expressions=list(keywords),
            ids=list(range(len(keywords))),
            elements=len(keywords),
            flags=[hyperscan.HS_FLAG_MULTILINE] * len(keywords),
        )

    def offsets(self, buf: bytes, end: int, start: int = 0) -> list[int]:
        found: list[int] = []
        add = found.append

        if start:

            def on_match(_id: int, _from: int, to: int, _flags: int, _ctx: object) -> None:
                add(to + start)

        else:

            def on_match(_id: int, _from: int, to: int, _flags: int, _ctx: object) -> None:
                add(to)

        if start == 0 and end == len(buf):
            self._db.scan(buf, match_event_handler=on_match)
        else:  # a view, not a slice: a copy of a chunk costs more than scanning it
            with memoryview(buf) as whole, whole[start:end] as part:
                self._db.scan(part, match_event_handler=on_match)
        return found


class _RePrefilter:
    def __init__(self, keywords: tuple[bytes, ...]) -> None:
        self._pattern = re.compile(b"|".join(keywords), re.MULTILINE)

    def offsets(self, buf: bytes, end: int, start: int = 0) -> list[int]:
        return [m.end() for m in self._pattern.finditer(buf, start, end)]


def _engine(keywords: tuple[bytes, ...]) -> _HyperscanPrefilter | _RePrefilter:
    try:
        import hyperscan
    except ImportError:  # no wheel for this platform
        return _RePrefilter(keywords)
    return _HyperscanPrefilter(hyperscan, keywords)


class Prefilter:
    """Offsets in a chunk just past each keyword, ascending; one call per chunk."""

    def __init__(self, keywords: tuple[bytes, ...], engine: str = "auto") -> None:
        self.keywords = keywords
        self.engine = _RePrefilter(keywords) if engine == "re" else _engine(keywords)
        self.name = "re" if isinstance(self.engine, _RePrefilter) else "hyperscan"

    def offsets(self, buf: bytes, end: int, start: int = 0) -> list[int]:
        """Where keywords end in ``buf[start:end]`` (a line may appear more than once);
        ``start`` begins a line."""
        return self.engine.offsets(buf, end, start)

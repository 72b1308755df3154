"""What a reader is: the one shape every input format plugs in with.

A reader reads one format into events. It says what it is (``name``, the ``source``
its events carry, the ``kinds`` it emits) and how it finds its records, in one or
both of two ways:

* **records in a line stream** (a kernel line, a dcgm-exporter sample, an NCCL
  line): ``keywords`` are the prefilter's patterns for its records (bytes, a regular
  expression each; most are plain words); ``claims(line)`` says whether a candidate
  line is its record; ``read_line`` reads it, with a ``Cursor`` over the lines after
  it for a record that spans lines;
* **whole documents** (``nvidia-smi -q -x`` XML, a ``kubectl get events -o json``
  list, a ``--query-gpu`` CSV): ``sniff(head)`` says from the first bytes of an input
  whether the input is its document; ``read_document`` reads the whole of it.

``registry.py`` lists the readers in the order they are asked; adding a format is
its module, its tests and one row there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleetwatch.sources.context import FileContext

# (line, its envelope, its line number, the lines after it, the file); a reader that
# ``nests`` is also handed the dispatcher, to read the formats inside its records
LineRead = Callable[..., None]
# (the compiled loop, buf, pos, limit, line number before pos, max line bytes, the run's
# envelope, the file) -> (pos, where its last line starts, its number), or None
RunRead = Callable[..., "tuple[int, int, int] | None"]
DocumentRead = Callable[[bytes, "FileContext"], None]


@dataclass(frozen=True)
class Reader:
    """One format: its name, its events' ``source`` and kinds, and how it is found."""

    name: str
    source: str
    kinds: frozenset[str]
    description: str
    keywords: tuple[bytes, ...] = ()
    claims: Callable[[str], bool] | None = None
    read_line: LineRead | None = None
    sniff: Callable[[bytes], bool] | None = None
    read_document: DocumentRead | None = None
    nests: bool = False  # a journal entry's MESSAGE may hold any other format
    line_starts: tuple[str, ...] = ()
    """Set where every record is one line that starts with one of these (each holding
    a keyword, none a stamp): a run of such lines is read in one loop, without an
    envelope or a dispatch per line (``stream.py``)."""
    read_run: RunRead | None = None
    """Reads a run of its lines with the compiled loop (``_kmsgscan.c``), for as long as
    it knows each line whole; ``read_line`` stays the definition, held equal to it."""

    def __post_init__(self) -> None:
        halves = ((self.claims, self.read_line), (self.sniff, self.read_document))
        if any((first is None) != (second is None) for first, second in halves):
            raise ValueError(f"reader {self.name}: claims/read_line, sniff/read_document: pairs")
        if self.claims is None and self.sniff is None:
            raise ValueError(f"reader {self.name}: reads neither lines nor documents")
        if (self.claims is None) != (not self.keywords):
            raise ValueError(f"reader {self.name}: a line reader needs keywords, and only it")
        for start in self.line_starts:
            # a run's lines have no envelope: a start may hold no digit or bracket, of
            # which a stamp is made, and must be the reader's own line
            if any(c.isdigit() or c in "[]" for c in start) or not (
                self.claims is not None and self.claims(start)
            ):
                raise ValueError(f"reader {self.name}: line start {start!r} is not its own")
            if not any(re.search(word, start.encode()) for word in self.keywords):
                raise ValueError(f"reader {self.name}: line start {start!r} holds no keyword")

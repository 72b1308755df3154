"""The line stream: finds the records in a log of any mix of formats, fast.

Formats are recognised per record, not per file: a syslog file mixes kernel lines
with kubelet lines, a bug report mixes everything. Most lines of a real log are
noise, so the stream never looks at a line one by one. It reads the input in large
chunks and runs one prefilter (every reader's keywords) over the whole chunk; only
the lines that contain a keyword are decoded, given an envelope (time, host) and
handed to the first reader that claims them, in the order of ``registry.py``: a JSON
object line, an ``nvidia-smi -q`` report, a dcgm-exporter sample, an NCCL line, a
kernel line, a kubectl or kubelet line.

Where it is built, a compiled twin of this loop (``kmsg_compiled.py``) reads the
candidate lines it knows whole (the common kernel records behind the common stamps)
straight into the batch's columns, and hands each other line to the Python loop here:
the same events either way.

Line numbers come from counting newlines between candidates (one C-speed pass).
A record that continues past the chunk is read again with the next chunk appended.
Records without a stamp (NCCL INFO) take the time of the nearest stamped line before
them; ``dmesg -H`` deltas are summed from the last absolute stamp.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Final, Protocol

from fleetwatch.sources import json_line, kmsg_compiled
from fleetwatch.sources.context import FileContext
from fleetwatch.sources.cursor import NeedMore
from fleetwatch.sources.envelope import NO_ENVELOPE, STAMPED_LINE, Envelope, parse
from fleetwatch.sources.prefilter import Prefilter
from fleetwatch.sources.reader import RunRead
from fleetwatch.sources.registry import KEYWORDS, LINE_READERS


class Readable(Protocol):
    """Anything with ``read(size) -> bytes``."""

    def read(self, size: int, /) -> bytes: ...


_RELATIVE_LINE: Final = re.compile(
    rb"^\[(?:\s*\+\s*(\d{1,11}\.\d+)|([A-Za-z]{3})\s*(\d{1,2}) (\d\d):(\d\d)(?::(\d\d))?)\]",
    re.MULTILINE,
)


def dispatch(
    text: str,
    env: Envelope,
    line: int,
    cursor: _BufferCursor | json_line.MessageCursor,
    ctx: FileContext,
) -> None:
    """Hand one candidate line to the first reader that claims it (``registry``)."""
    for claims, read, nests in _DISPATCH:
        if claims(text):
            if nests:
                read(text, env, line, cursor, ctx, dispatch)
            else:
                read(text, env, line, cursor, ctx)
            return


_DISPATCH: Final[tuple[tuple[Callable[[str], bool], Callable[..., None], bool], ...]] = tuple(
    (r.claims, r.read_line, r.nests)
    for r in LINE_READERS
    if r.claims is not None and r.read_line is not None
)
# Readers whose records are single lines with known starts (``Reader.line_starts``):
# their starts, their read_line, the claims of the readers asked before them, and
# their reader of a run with the compiled loop (``Reader.read_run``), if any.
_RUNS: Final[
    tuple[
        tuple[
            tuple[bytes, ...],
            Callable[..., None],
            tuple[Callable[[str], bool], ...],
            RunRead | None,
        ],
        ...,
    ]
] = tuple(
    (
        tuple(start.encode() for start in r.line_starts),
        r.read_line,
        tuple(e.claims for e in LINE_READERS[:at] if e.claims is not None),
        r.read_run,
    )
    for at, r in enumerate(LINE_READERS)
    if r.line_starts and r.read_line is not None
)
_RUN_STARTS: Final = tuple(start for starts, _, _, _ in _RUNS for start in starts)
_DEFAULT: list[Prefilter] = []


def default_prefilter() -> Prefilter:
    """The fastest prefilter this machine has for every reader's keywords, built once."""
    if not _DEFAULT:
        _DEFAULT.append(Prefilter(KEYWORDS))
    return _DEFAULT[0]


class _BufferCursor:
    """The lines after a candidate, inside the current chunk."""

    __slots__ = ("_buf", "_end", "_eof", "consumed_to")

    def __init__(self, buf: bytes, pos: int, end: int, eof: bool) -> None:
        self._buf = buf
        self._end = end
        self._eof = eof
        self.consumed_to = pos

    def peek(self, n: int) -> list[str]:
        lines: list[str] = []
        pos = self.consumed_to
        buf = self._buf
        end = self._end
        while len(lines) < n and pos < end:
            nl = buf.find(b"\n", pos, end)
            if nl < 0:
                nl = end
            lines.append(buf[pos:nl].decode("utf-8", "replace").rstrip("\r"))
            pos = nl + 1
        if len(lines) < n and not self._eof:
            raise NeedMore
        return lines

    def skip(self, n: int) -> None:
        buf = self._buf
        for _ in range(n):
            nl = buf.find(b"\n", self.consumed_to, self._end)
            self.consumed_to = self._end if nl < 0 else nl + 1


# The last stamped line of a range in one search: ``.*`` runs to the end, then backs up
# to the last line start where a stamp matches. ``finditer`` made a match object for
# every stamped line between two records, so noise cost allocations per line.
# ``_STAMPED_HERE`` is the same test at one place (a lookahead: STAMPED_LINE itself
# costs one allocation more when it fails).
_STAMP_AHEAD: Final = rb"^(?=" + STAMPED_LINE.pattern[1:] + rb")"
_LAST_STAMPED: Final = re.compile(rb"(?s:.*)" + _STAMP_AHEAD, re.MULTILINE)
_STAMPED_HERE: Final = re.compile(_STAMP_AHEAD, re.MULTILINE)


def _last_stamped(buf: bytes, floor: int, start: int) -> int | None:
    """Where the last line of ``buf[floor:start]`` that starts with a stamp begins."""
    # A range of one line (a JSON line after a JSON line) is tried at once: ``.*`` would
    # back up through it a byte at a time. (Counts, not positions: no int is made.)
    breaks = buf.count(b"\n", floor, start)
    if breaks == 0 or (breaks == 1 and buf.endswith(b"\n", floor, start)):
        # A JSON line holds no stamp but glog's "[I1126 …" after up to 60 bytes: without a
        # "[" there it is not one (the regex would cost two allocations and 60 lazy steps).
        if buf.startswith(b"{", floor):
            bracket = buf.find(b"[", floor, start)
            if bracket < 0 or bracket - floor > 60:
                return None
        return floor if _STAMPED_HERE.match(buf, floor, start) else None  # its ``^`` as here
    found = _LAST_STAMPED.match(buf, floor, start)
    return None if found is None else found.end()


def _claimed(readers: tuple[Callable[[str], bool], ...], text: str) -> bool:
    """Whether one of ``readers`` claims ``text`` (by index: no generator per line)."""
    at = 0
    while at < len(readers):
        if readers[at](text):
            return True
        at += 1
    return False


class LineStream:
    """Reads one input's bytes and emits the events of every record in it."""

    def __init__(
        self,
        ctx: FileContext,
        read_envelope: Callable[..., Envelope] = parse,
        prefilter: Prefilter | None = None,
        line: int = 1,
    ) -> None:
        self.ctx = ctx
        self._prefilter = prefilter or default_prefilter()
        self._envelope = read_envelope
        self._line = line  # line number at the start of the current buffer
        self._stamp_env: Envelope = NO_ENVELOPE  # the nearest stamped line so far
        self._stamp_pos = 0
        self._relative_ts: float | None = None  # dmesg -H running clock, once seen
        self._relative_pos = 0
        self.carry = b""  # bytes read but not yet consumed
        # the compiled twin of _scan's loop, for the lines it knows whole (kmsg_compiled)
        self._compiled = kmsg_compiled.compiled_for(ctx) if read_envelope is parse else None
        # runs of single-line records (``_run``): their lines have no envelope of their own
        self._runs = _RUNS
        self._run_starts = _RUN_STARTS if read_envelope is parse else ()

    def run(self, stream: Readable, first: bytes = b"") -> Iterator[None]:
        """Read all of ``stream`` (after ``first``), yielding after each chunk."""
        self.carry = first
        while True:
            chunk = stream.read(self.ctx.options.chunk_bytes)
            self.feed(chunk, eof=not chunk)
            yield
            if not chunk:
                break

    def feed(self, chunk: bytes, eof: bool = False) -> None:
        """Read the records in ``chunk``, after what an earlier call left unread.

        What cannot be read yet (a partial last line, a record that goes on past the
        chunk) is kept in ``carry`` for the next call; at ``eof`` everything is read.
        A live follower calls this with each piece appended to a file.
        """
        buf = self.carry + chunk if self.carry else chunk
        if not buf:
            return
        if eof:
            done = self._scan(buf, len(buf), eof=True)
        else:
            last_nl = buf.rfind(b"\n")
            if last_nl < 0 and len(buf) <= self.ctx.options.max_line_bytes:
                self.carry = buf
                return
            # a line longer than the limit is skipped in pieces, never held whole
            limit = len(buf) if last_nl < 0 else last_nl + 1
            done = self._scan(buf, limit, eof=False)
        self.carry = buf[done:]

    def flush(self) -> None:
        """Read the records held for lines that have not come: the input went quiet.

        A record that may go on (an AER report, a three-line "fallen off the bus") waits
        for the lines after it; when none come, a live source calls this and the
        complete lines held are read as if the input ended after them. A partial last
        line stays held: it is still being written.
        """
        buf = self.carry
        last_nl = buf.rfind(b"\n")
        if last_nl < 0:
            return
        done = self._scan(buf, last_nl + 1, eof=True)
        self.carry = buf[done:]

    @property
    def held(self) -> int:
        """How many complete lines are read but held (a record waiting for more)."""
        return self.carry.count(b"\n")

    @property
    def line(self) -> int:
        """The line number of the first byte not yet read (the start of ``carry``)."""
        return self._line

    def _scan(self, buf: bytes, limit: int, eof: bool) -> int:
        """Read the records in ``buf[:limit]``; return how far it was consumed."""
        ctx = self.ctx
        max_line = ctx.options.max_line_bytes
        pos = 0  # everything before pos is consumed
        counted = 0  # newlines counted up to here
        begin = line = self._line
        self._stamp_pos = 0
        self._relative_pos = 0
        consumed = limit
        if buf.startswith(self._run_starts):
            # a file of runs (a dcgm-exporter scrape): read them before asking the
            # prefilter, which would find a keyword on every line of them
            run_end = self._run(buf, 0, limit, line)
            if run_end is not None:
                pos, counted, line = run_end
        hits = self._prefilter.offsets(buf, limit, pos) if pos < limit else []
        compiled = self._compiled
        for hit in hits:  # (an index would cost an int object per hit past 256)
            if hit <= pos:
                continue  # a second keyword on a line already read, or inside a record
            if compiled is not None:
                # the compiled loop reads from this hit on while it knows each line whole
                ran = compiled.scan(buf, limit, hits, pos, counted, line, eof, max_line)
                if ran is not None:
                    pos, counted, line, stamped, stamp_end = ran
                    # the last line it read is the nearest stamp now
                    text = buf[stamped:stamp_end].decode("ascii").rstrip("\r")
                    self._stamp_env = self._envelope(text, ctx.rules, None)
                    self._stamp_pos = stamp_end
                    if hit <= pos:
                        continue  # read there, as were the hits up to the line it stopped at
            start = buf.rfind(b"\n", 0, hit - 1) + 1
            end = buf.find(b"\n", hit - 1, limit)
            if end < 0:
                end = limit
            line += buf.count(b"\n", counted, start)
            counted = start
            pos = end + 1
            if end - start > max_line:
                ctx.stats.bad("stream", "line too long")
                continue
            if buf.startswith(self._run_starts, start):  # (a loop would cost an iterator)
                run_end = self._run(buf, start, limit, line)
                if run_end is not None:
                    pos, counted, line = run_end  # a run was read, from this line on
                    continue
            text = buf[start:end].decode("utf-8", "replace").rstrip("\r")
            if "\x00" in text:
                ctx.stats.bad("stream", "binary data")
                continue
            cursor = _BufferCursor(buf, min(pos, limit), limit, eof)
            try:
                env = self._envelope(text, ctx.rules, hit - start)
                env = self._place_in_time(buf, start, end, env)
                dispatch(text, env, line, cursor, ctx)
            except NeedMore:
                consumed = start
                break
            except Exception as exc:  # one record's failure is its own alone
                ctx.stats.failed("stream", exc)
                continue  # the line is skipped; the records after it are read
            pos = max(cursor.consumed_to, pos)
        line += buf.count(b"\n", counted, consumed)
        if eof and consumed == limit and limit and buf[limit - 1 : limit] != b"\n":
            line += 1  # a last line without a newline
        self._line = line
        ctx.stats.lines += line - begin
        self._finish_relative(buf, consumed)
        return consumed

    def _run(
        self,
        buf: bytes,
        start: int,
        limit: int,
        line: int,
    ) -> tuple[int, int, int] | None:
        """Read the run of one reader's lines from ``start`` (line number ``line``) in
        one loop; return where it ends, where its last line starts and that line's number,
        or None when the line at ``start`` is not one (``_scan`` reads it then).

        Each line is read as ``_scan`` would read it: a run line has no envelope (its
        start holds no stamp), so it takes the time of the nearest stamped line before
        it, the same for every line of the run. The run stops before a line ``_scan``
        must see (too long, binary, claimed by an earlier reader, or not the reader's)
        and after one that is itself a stamped line: the lines after it take its time.
        """
        for run in self._runs:
            if buf.startswith(run[0], start):
                starts, read, earlier, read_run = run
                break
        else:
            return None
        ctx = self.ctx
        compiled = self._compiled
        max_line = ctx.options.max_line_bytes
        env: Envelope | None = None
        pos = counted = start
        number = line - 1  # the line number of the last line read
        stopped = False  # the compiled loop stopped before this line: it is read here
        while pos < limit and buf.startswith(starts, pos):
            if env is not None and read_run is not None and compiled is not None and not stopped:
                # the compiled loop reads the lines it knows whole; this loop the others
                found = read_run(compiled, buf, pos, limit, number, max_line, env, ctx)
                if found is not None:
                    pos, counted, number = found
                    self._stamp_pos = counted  # as after each line without a stamp
                    stopped = True
                    continue
            stopped = False
            end = buf.find(b"\n", pos, limit)
            if end < 0:
                end = limit
            if end - pos > max_line or buf.find(b"\x00", pos, end) >= 0:
                break
            text = buf[pos:end].decode("utf-8", "replace").rstrip("\r")
            if _claimed(earlier, text):
                break
            if env is None:  # the nearest stamped line's time, as _scan finds it
                env = self._place_in_time(buf, pos, end, NO_ENVELOPE)
            else:
                self._stamp_pos = pos  # as _place_in_time leaves it after a line without
            number += 1
            try:
                read(text, env, number, None, ctx)
            except Exception as exc:  # one record's failure is its own alone
                ctx.stats.failed("stream", exc)
            counted, pos = pos, end + 1
            if STAMPED_LINE.match(buf, counted, end):
                break  # the lines after it take its time: _scan reads the next one
        return None if env is None else (pos, counted, number)

    def _place_in_time(self, buf: bytes, start: int, end: int, env: Envelope) -> Envelope:
        if env.boot is not None and env.ts is not None:
            self.ctx.stats.boot_anchors[env.host or self.ctx.node] = env.ts - env.boot
        if env.relative:
            return self._relative(buf, start, end, env)
        if env.clock != "none":
            self._stamp_env = env
            self._stamp_pos = end
            return env
        # No stamp: take the nearest stamped line's time (and keep this line's host).
        nearest = _last_stamped(buf, self._stamp_pos, start)
        if nearest is not None:
            line_end = buf.find(b"\n", nearest)
            text = buf[nearest:line_end].decode("utf-8", "replace")
            found = self._envelope(text, self.ctx.rules, None)
            if found.clock != "none" and not found.relative:
                self._stamp_env = found
        self._stamp_pos = start
        stamp = self._stamp_env
        if stamp.host == env.host and stamp.boot is None and not stamp.relative:
            return stamp  # the same envelope: no need for a new one
        return Envelope(stamp.ts, stamp.clock, env.host)

    def _relative(self, buf: bytes, start: int, end: int, env: Envelope) -> Envelope:
        self._advance_relative(buf, start)
        if self._relative_ts is None:
            self._relative_pos = end
            return Envelope(None, "none", env.host)
        assert env.ts is not None
        self._relative_ts += env.ts
        self._relative_pos = end
        return Envelope(self._relative_ts, "wall", env.host)

    def _advance_relative(self, buf: bytes, upto: int) -> None:
        rules = self.ctx.rules
        for m in _RELATIVE_LINE.finditer(buf, self._relative_pos, upto):
            if m[1] is not None:
                if self._relative_ts is not None:
                    self._relative_ts += float(m[1])
            else:
                env = self._envelope(m[0].decode("ascii", "replace"), rules, None)
                if env.clock == "wall":
                    self._relative_ts = env.ts
        self._relative_pos = upto

    def _finish_relative(self, buf: bytes, upto: int) -> None:
        if self._relative_ts is not None:
            self._advance_relative(buf, upto)

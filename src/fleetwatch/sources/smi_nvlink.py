"""``nvidia-smi nvlink -e``: each GPU's NVLink error counters, link by link.

The format (source ``smi``), as pasted from real machines (``tests/data/nvlink/``)::

    GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-abcdefab-cdef-abdc-abcd-abababababab)
             Link 0: Replay Errors: 0
             Link 0: Recovery Errors: 0
             Link 0: CRC Errors: 0

             Link 1: Replay Errors: 0
             ...

A GPU line (its NVML index, name and, before the GB300-era drivers, its UUID), then
for each link three counters, indented by spaces or a tab and a space, links apart by
a blank line. One GPU's block is one record: each counter becomes an event of kind
``nvlink_replay``, ``nvlink_recovery`` or ``nvlink_crc``, with ``link`` and the
cumulative count in ``value``, for the GPU's index (``gpu``) and ``uuid``. The output
names no PCI address: the ``nvlink`` detector joins it to the GPU's other records by
its UUID or index. It carries no time either: a snapshot takes the time of the nearest
stamped line before it, if any.

A ``Link N: <name>: <count>`` line of a counter this reader does not know (a newer driver's) is
counted as skipped; one whose count no column holds is "out of range"; a counter line
without a GPU line above it names no GPU and is counted as skipped. ``[...]`` (a
shortened paste) and blank lines inside a block are passed over. A ``GPU N:`` line not
followed by counter lines (``nvidia-smi -L``; ``nvlink -s``, whose links read
"Link 0: 26.562 GB/s") is no record of this format and adds nothing. Every pattern
runs in time linear in the line.
"""

from __future__ import annotations

import re
from typing import Any, Final

from fleetwatch.sources.context import FileContext
from fleetwatch.sources.cursor import Cursor
from fleetwatch.sources.envelope import Envelope
from fleetwatch.sources.numbers import INT32_MAX, OUT_OF_RANGE, whole
from fleetwatch.sources.reader import Reader

SOURCE: Final = "smi"
# "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-…)"; no space after the colon is "-q"'s
# "GPU 00000000:3B:00.0", not this.
_HEADER: Final = re.compile(
    r"^\s*GPU (?P<gpu>\d{1,10}): (?P<name>[^()]*?)"
    r"(?: \(UUID: (?P<uuid>GPU-[0-9A-Fa-f-]{1,64})\))?\s*$"
)
# Any value is matched, so that a count that is no count ("-5", "NaN") is counted as
# unreadable inside its block rather than ending the block and vanishing.
_COUNTER: Final = re.compile(
    r"^\s*Link (?P<link>[-+]?\d{1,30}): (?P<name>[A-Za-z ]{1,40}): (?P<n>\S{1,40})\s*$"
)
_KINDS: Final = {
    "Replay Errors": "nvlink_replay",
    "Recovery Errors": "nvlink_recovery",
    "CRC Errors": "nvlink_crc",
}
_LINKS: Final = 64  # NVML_NVLINK_MAX_LINKS is 18 today; a link number past 63 is no link
_LINK_BLOCK_LINES: Final = 72  # 18 links (NVML_NVLINK_MAX_LINKS) x 4 lines
_MAX_BLOCK_LINES: Final = 4096  # a block never runs this long


def _passable(text: str) -> bool:
    """A line inside a block that is neither counter nor end: blank, or ``[...]``."""
    stripped = text.strip()
    return not stripped or stripped in ("[...]", "...")


def _block(cursor: Cursor) -> list[str]:
    """The lines of one GPU's block after its GPU line (trailing blank lines left).

    Looked at a few lines at a time, more while the block goes on: a ``GPU N:`` line of
    another listing costs a few lines, not 4096, and a follower reads a block once a few
    lines past its end have come (``peek`` waits for all it is asked for). Eight lines
    more at a time up to a whole block of 18 links, then twice as many: linear.
    """
    want = 8
    while True:
        lines = cursor.peek(want)
        end = 0
        for i, text in enumerate(lines):
            if _COUNTER.match(text):
                end = i + 1
            elif not _passable(text):
                return lines[:end]
        if len(lines) < want or want >= _MAX_BLOCK_LINES:  # the input's end, or the limit
            return lines[:end]
        want = min(want + 8 if want < _LINK_BLOCK_LINES else want * 2, _MAX_BLOCK_LINES)


def read_block(text: str, env: Envelope, line: int, cursor: Cursor, ctx: FileContext) -> None:
    """Read one GPU's counters (``text`` is its GPU line) or a stray counter line."""
    header = _HEADER.match(text)
    if header is None:  # a counter line with no GPU line above it
        ctx.stats.skip(SOURCE, "nvlink counter without its GPU line")
        return
    lines = _block(cursor)
    if not lines:
        return  # "GPU 0: …" of another listing (nvidia-smi -L, nvlink -s): not ours
    cursor.skip(len(lines))
    gpu = whole(header["gpu"], INT32_MAX)
    if gpu is None:
        ctx.stats.bad(SOURCE, OUT_OF_RANGE)
        return
    base: dict[str, Any] = {
        "source": SOURCE,
        "ts": env.ts,
        "clock": env.clock,
        "node": env.host or ctx.node,
        "gpu": gpu,
        "uuid": header["uuid"],
    }
    for offset, raw in enumerate(lines, start=1):
        counter = _COUNTER.match(raw)
        if counter is None:  # blank or "[...]"
            continue
        kind = _KINDS.get(counter["name"])
        if kind is None:
            ctx.stats.skip(SOURCE, "unknown nvlink counter")
            continue
        if not (counter["n"].isdecimal() and counter["link"].isdecimal()):
            ctx.stats.bad(SOURCE, "malformed nvlink counter")
            continue
        link = whole(counter["link"], _LINKS - 1)
        value = whole(counter["n"])
        if link is None or value is None:
            ctx.stats.bad(SOURCE, OUT_OF_RANGE)
            continue
        ctx.emit({**base, "kind": kind, "line": line + offset, "link": link, "value": float(value)})


def _claims(text: str) -> bool:
    # a regex call costs allocations even when it fails: the words each needs first
    return ("GPU " in text and _HEADER.match(text) is not None) or (
        "Link " in text and _COUNTER.match(text) is not None
    )


READER: Final = Reader(
    name="smi_nvlink",
    source=SOURCE,
    kinds=frozenset(_KINDS.values()),
    description="nvidia-smi nvlink -e: NVLink replay, recovery and CRC errors per link",
    # " Errors: ", the literal every counter line holds, not "Link [0-9]+: [A-Za-z ]+
    # Errors: ": Hyperscan scanned a kernel log three times slower for that pattern
    # alone (the readers' claims decide, on the few lines that have the words)
    keywords=(rb"^[ \t]*GPU [0-9]+: ", rb" Errors: "),
    claims=_claims,
    read_line=read_block,
)

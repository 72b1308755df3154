"""The compiled twin of the kernel-record loop: used when it is built and wanted.

Most candidate lines of a kernel log are a few record shapes behind a few stamps: an
Xid, an SXid, a GPU's identity, "fallen off the bus", a PCIe AER record (its first line
and its device's lines after it), a prefilter hit no reader claims,
behind ``[ 1843.308145]``, a syslog or an ISO stamp. Read one at a time in Python, each
costs a decode, an envelope, the dispatch, the reader's regexes, ``emit`` and
``BatchBuilder.add``: most of what ``fleetwatch parse`` spends on a kernel log.
``_kmsgscan.c`` reads runs of such lines in C, straight into the batch's typed columns,
and hands every other line back to the Python path (``LineStream._scan``), which stays
the definition: the two give the same events, field by field
(``tests/sources/test_compiled.py``).

The same extension reads runs of dcgm-exporter samples of the series ``dcgm.py`` has
told it about (``dcgm._read_run``, ``Scanner.samples``): on a fleet's logs, most lines.

The extension is optional: a wheel built without a compiler has none, and the Python
path reads everything. ``FLEETWATCH_PURE_PYTHON=1`` turns it off where it is built.

The C loop knows which reader claims a line from the words given here. It reads only
lines that start with a stamp it parses (``[``, a digit, a letter), so the readers asked
before ``kmsg`` whose claim is the line's start (a JSON object, an nvidia-smi block or
title, an nvlink counter, a dcgm sample) cannot claim them; of the others, a line with
one of their words is left to the Python path. ``READER_ORDER`` is the registry this
was written against: another order turns the loop off (``compiled_for``) until the
words here are checked against it.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

from fleetwatch.catalog import aer_bits
from fleetwatch.events import BATCH_SIZE, CLOCK_ID, KIND_ID, SEVERITY_ID, SOURCE_ID
from fleetwatch.sources import dcgm, k8s, kmsg
from fleetwatch.sources.context import Identities
from fleetwatch.sources.envelope import EARLIEST, LATEST
from fleetwatch.sources.numbers import OUT_OF_RANGE
from fleetwatch.sources.registry import LINE_READERS
from fleetwatch.timestamps import month_number

if TYPE_CHECKING:
    from fleetwatch.sources._kmsgscan import Scanner
    from fleetwatch.sources.context import FileContext

_COMPILED: ModuleType | None
try:
    from fleetwatch.sources import _kmsgscan

    _COMPILED = _kmsgscan
except ImportError:  # built without a compiler: the Python path reads everything
    _COMPILED = None

PURE_PYTHON_VARIABLE: Final = "FLEETWATCH_PURE_PYTHON"
READER_ORDER: Final = ("json_line", "smi_text", "smi_nvlink", "dcgm", "nccl", "kmsg", "k8s_text")
# The words of the readers asked before kmsg whose claim can be anywhere in a line
# (nccl: "NCCL"; smi: "NVSMI LOG"), and of those asked after it (k8s), for the lines
# kmsg does not claim.
_BEFORE: Final = (b"NCCL", b"NVSMI LOG")
_AFTER: Final = tuple(word.encode() for word in k8s.TEXT_WORDS)
# Of the readers asked before dcgm, the one whose claim can be anywhere in a line that
# starts as a sample does (smi: "NVSMI LOG"); the others' claims are the line's start.
_BEFORE_SAMPLES: Final = (b"NVSMI LOG",)


def _configure(module: Any) -> None:
    bits = aer_bits()  # the names of an AER record's error bits
    module.configure(
        {
            "kinds": KIND_ID,
            "clocks": CLOCK_ID,
            "severities": SEVERITY_ID,
            "numbers": {
                "source": SOURCE_ID[kmsg.SOURCE],
                "dcgm_source": SOURCE_ID[dcgm.SOURCE],
                "batch_size": BATCH_SIZE,
                "earliest": EARLIEST,
                "latest": LATEST,
            },
            "claims": tuple(word.encode() for word in kmsg.CLAIM_WORDS),
            "before": _BEFORE,
            "after": _AFTER,
            "sample_starts": tuple(start.encode() for start in dcgm.READER.line_starts),
            "sample_before": _BEFORE_SAMPLES,
            "aer": (dict(bits.correctable), dict(bits.uncorrectable)),
            "identities": Identities,
        }
    )


if _COMPILED is not None:
    _configure(_COMPILED)


def built() -> bool:
    """Whether the extension was built (a wheel made without a compiler has none)."""
    return _COMPILED is not None


def available() -> bool:
    """Whether the compiled loop is built, wanted and written for this registry."""
    return (
        _COMPILED is not None
        and os.environ.get(PURE_PYTHON_VARIABLE, "") != "1"
        and tuple(reader.name for reader in LINE_READERS) == READER_ORDER
    )


class Hooks:
    """What the compiled loop asks of Python for one file: what its records teach the
    file's state, and its time rules (asked once per value: the loop keeps the answers)."""

    __slots__ = ("ctx",)

    def __init__(self, ctx: FileContext) -> None:
        self.ctx = ctx

    def learn_index(self, node: str, index: int, pci: str) -> None:
        kmsg.learn_index(self.ctx, node, index, pci)

    def learn_identity(self, node: str, pci: str, uuid: str, serial: str | None) -> None:
        kmsg.learn_identity(self.ctx, node, pci, uuid, serial)

    def saw_endpoint(self, node: str, dev: str, driver: str, line: int) -> None:
        kmsg.saw_endpoint(self.ctx, node, line, dev, driver)

    def out_of_range(self) -> None:
        """A GPU index learned for the record's PCI address that no column holds: the
        record is counted, not emitted (what ``FileContext.emit`` does)."""
        self.ctx.stats.bad(kmsg.SOURCE, OUT_OF_RANGE)

    def blank_samples(self, count: int) -> None:
        """``count`` dcgm samples of DCGM's "blank" (dcgm.is_blank): read, no value."""
        self.ctx.stats.skip(dcgm.SOURCE, dcgm.BLANK, count)

    def month(self, token: str) -> int | None:
        return month_number(token)

    def year(self, month: int, day: int) -> int:
        return self.ctx.rules.infer_year(month, day)

    def minute(self, y: int, mo: int, d: int, h: int, mi: int) -> float | None:
        return self.ctx.rules.local(y, mo, d, h, mi, 0.0)


def compiled_for(ctx: FileContext) -> Scanner | None:
    """The compiled loop for one file's stream, or None: the Python path reads it all."""
    if _COMPILED is None or not available():
        return None
    scanner: Scanner = _COMPILED.Scanner(ctx, Hooks(ctx))
    return scanner

"""Every reader, in the order it is asked: one row per format.

``LINE_READERS`` are asked in order whether a candidate line of a line stream is
their record; the first that claims it reads it. The order is the order of
precedence: a JSON line first (a journal entry may hold any other format in its
``MESSAGE``, and goes back through the dispatcher), then the formats whose lines say
what they are, the kernel's and the kubelet's last (their words occur inside others).

``DOCUMENT_READERS`` are asked in order whether a whole input is their document, from
its first bytes. A JSON or XML document that none claims is counted as unreadable,
never read as lines.

``KEYWORDS`` are the line readers' prefilter patterns, compiled once per process.
"""

from __future__ import annotations

from typing import Final

from fleetwatch.events import KINDS, SOURCES
from fleetwatch.sources import dcgm, json_line, k8s, kmsg, nccl, prometheus_api, smi, smi_nvlink
from fleetwatch.sources.reader import Reader

LINE_READERS: Final[tuple[Reader, ...]] = (
    json_line.READER,
    smi.TEXT,
    smi_nvlink.READER,
    dcgm.READER,
    nccl.READER,
    kmsg.READER,
    k8s.TEXT,
)
DOCUMENT_READERS: Final[tuple[Reader, ...]] = (
    smi.XML,
    prometheus_api.READER,
    k8s.DOCUMENT,
    smi.CSV,
)
READERS: Final[tuple[Reader, ...]] = LINE_READERS + DOCUMENT_READERS
KEYWORDS: Final[tuple[bytes, ...]] = tuple(
    dict.fromkeys(word for reader in LINE_READERS for word in reader.keywords)
)


def _check() -> None:
    names: set[str] = set()
    for reader in READERS:
        if reader.name in names:
            raise ValueError(f"two readers are named {reader.name!r}")
        names.add(reader.name)
        if reader.source not in SOURCES:
            raise ValueError(f"reader {reader.name}: unknown source {reader.source!r}")
        if unknown := reader.kinds - set(KINDS):
            raise ValueError(f"reader {reader.name}: unknown kinds {sorted(unknown)}")
    for reader in LINE_READERS:
        if reader.claims is None:
            raise ValueError(f"reader {reader.name} is in LINE_READERS but reads no lines")
    for reader in DOCUMENT_READERS:
        if reader.sniff is None:
            raise ValueError(f"reader {reader.name} is in DOCUMENT_READERS but reads no documents")


_check()

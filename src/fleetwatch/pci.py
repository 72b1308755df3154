"""PCI addresses in one spelling: ``dddd:bb:dd.f``, lowercase hex.

Every source names a GPU's slot its own way: the kernel ``PCI:0000:CB:00`` (no
function), NVML ``00000000:CB:00.0`` (an 8-digit domain), NCCL ``busId cb000`` (the
address as one hex number), VMD ``10003:00:00.0`` (a 5-digit domain). Joining events
from different sources needs one form: the domain keeps at least 4 digits, the
function is ``0`` when the source leaves it out.
"""

from __future__ import annotations

import re
from typing import Final

_ADDRESS: Final = re.compile(
    r"(?:PCI:)?(?:(?P<domain>[0-9a-fA-F]{1,8}):)?(?P<bus>[0-9a-fA-F]{2}):"
    r"(?P<device>[0-9a-fA-F]{2})(?:\.(?P<function>[0-7]))?"
)


_SEEN: dict[str, str | None] = {}  # a fleet has few addresses and names them often


def normalize_pci(text: str) -> str | None:
    """``dddd:bb:dd.f`` for any common spelling of a PCI address, else None."""
    found = _SEEN.get(text, "")
    if found != "":
        return found
    if len(_SEEN) > 65536:
        _SEEN.clear()
    found = _SEEN[text] = _normalize(text)
    return found


def _normalize(text: str) -> str | None:
    m = _ADDRESS.fullmatch(text.strip())
    if m is None:
        return None
    domain = int(m["domain"] or "0", 16)
    return f"{domain:04x}:{m['bus'].lower()}:{m['device'].lower()}.{m['function'] or '0'}"


def pci_from_nccl_bus_id(bus_id: str) -> str | None:
    """The address behind NCCL's ``busId`` (``7000`` -> ``0000:07:00.0``).

    NCCL prints ``dddd:bb:dd.f`` with the punctuation removed, as one hex number.
    """
    try:
        value = int(bus_id, 16)
    except ValueError:
        return None
    function = value & 0xF
    device = (value >> 4) & 0xFF
    bus = (value >> 12) & 0xFF
    domain = value >> 20
    if function > 7 or device > 0x1F:
        return None
    return f"{domain:04x}:{bus:02x}:{device:02x}.{function}"

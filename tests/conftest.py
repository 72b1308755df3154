"""Shared helpers: read test data the way ``fleetwatch parse`` does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st

from fleetwatch.events import CLOCKS, FIELDS, KINDS, SCOPES, SEVERITIES, SOURCES
from fleetwatch.sources import ReadOptions, ReadStats, read_paths
from fleetwatch.timestamps import parse_zone

DATA = Path(__file__).parent / "data"
UTC = parse_zone("UTC")


class Parsed(list[dict[str, Any]]):
    """The events of one read, plus its stats."""

    stats: ReadStats

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self if e["kind"] == kind]


def parse(*paths: str | Path, **options: Any) -> Parsed:
    """All events in ``paths`` as dicts (UTC unless told otherwise)."""
    options.setdefault("zone", UTC)
    stats = ReadStats()
    out = Parsed()
    for batch in read_paths([str(p) for p in paths], ReadOptions(**options), stats):
        out.extend(batch.records())
    out.stats = stats
    return out


def parse_text(
    tmp_path: Path, text: str | bytes, name: str = "node-a.log", **options: Any
) -> Parsed:
    """Write ``text`` to a file called ``name`` and parse it."""
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return parse(path, **options)


@pytest.fixture
def data() -> Path:
    return DATA


# `make verify` runs fewer property examples; CI and `make test` run them all.
settings.register_profile("quick", max_examples=25)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


_ENUMS: dict[str, tuple[str | None, ...]] = {
    "kind": KINDS,
    "clock": CLOCKS,
    "source": SOURCES,
    "severity": SEVERITIES,
    "scope": SCOPES,
}


def _value(name: str) -> st.SearchStrategy[Any]:
    shown = FIELDS[name][2]
    if shown == "int":
        return st.integers(0, 2**31 - 1)
    if shown == "float":
        return st.floats(-1e300, 1e300, allow_nan=False)
    if shown == "str":
        return st.text(st.characters(exclude_categories=()), min_size=1, max_size=4)
    return st.sampled_from([v for v in _ENUMS[name] if v is not None])


# Any event BatchBuilder takes: a kind, and any of the other fields with a value of
# its type (text of any character, a lone surrogate included).
EVENT = st.fixed_dictionaries(
    {"kind": st.sampled_from(KINDS)},
    optional={name: _value(name) for name in FIELDS if name != "kind"},
)

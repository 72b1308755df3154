"""Shared helpers: read test data the way ``fleetwatch parse`` does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

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

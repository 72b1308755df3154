"""Run the pattern library over lines written in real formats."""

from __future__ import annotations

from pathlib import Path

from fleetwatch.config import load
from fleetwatch.findings import Finding
from fleetwatch.replay import replay
from fleetwatch.sources import ReadOptions
from fleetwatch.timestamps import parse_zone


def findings(
    tmp_path: Path, files: dict[str, str], only: str | None = None, **config: object
) -> list[Finding]:
    """Write ``files`` (relative path -> text) under ``tmp_path``; replay the folder."""
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    configs = load(None)
    for name, value in config.items():
        detector, key = name.split("__")
        configs[detector] = type(configs[detector])(**{**configs[detector].__dict__, key: value})
    out = replay([str(tmp_path)], configs, ReadOptions(year=2024, zone=parse_zone("UTC")))
    return [f for f in out if only is None or f.detector == only]

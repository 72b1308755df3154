"""The layout shows the path of an event, and lower layers never import upper ones.

``LAYERS`` is the order, lowest first: the data and text every part shares; the
format readers (``sources``) and the live inputs above them (``inputs``); detectors
and the engine; what replays, remembers and links findings; the sinks; acting on
nodes; the watch (one node); the fleet (agents, transport, correlators); the
command. A module may import its own layer and those below, never one above: a test
over every ``import`` of ``src/fleetwatch`` (the AST, not a run, so an import inside
a function counts as much as one at the top).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS: list[tuple[str, ...]] = [
    (  # data and text every part shares
        "fleetwatch.events",
        "fleetwatch.findings",
        "fleetwatch.catalog",
        "fleetwatch.timestamps",
        "fleetwatch.pci",
        "fleetwatch.hostnames",
        "fleetwatch.extras",
        "fleetwatch.records",
        "fleetwatch.sinks.one_line",
        "fleetwatch.sinks.json_line",
    ),
    ("fleetwatch.sources",),  # formats
    ("fleetwatch.inputs",),  # live inputs (they read with the formats)
    ("fleetwatch.detectors", "fleetwatch.config", "fleetwatch.engine"),
    (  # replaying, remembering and linking findings
        "fleetwatch.merge",
        "fleetwatch.spill",
        "fleetwatch.replay",
        "fleetwatch.simulate",
        "fleetwatch.lifecycle",
        "fleetwatch.store",
        "fleetwatch.incidents",
    ),
    ("fleetwatch.sinks",),
    ("fleetwatch.actions",),
    ("fleetwatch.watch",),  # one node
    ("fleetwatch.fleet",),  # node agents, transport, correlators
    ("fleetwatch.cli", "fleetwatch.__main__"),
]


def layer(module: str) -> int:
    """The layer of ``module``: its longest matching prefix in ``LAYERS``."""
    best, found = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), index
    if found < 0:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS")
    return found


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted((SRC / "fleetwatch").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts != ("fleetwatch",):  # the package's own API sits above nothing
            out.append((".".join(parts), path))
    return out


def imported(path: Path, module: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("fleetwatch."))
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative: resolve against this module's package
                base = ".".join([*module.split(".")[: -node.level], node.module])
            if base == "fleetwatch":  # from fleetwatch import config: the module itself
                names.update(f"fleetwatch.{a.name}" for a in node.names)
            elif base.startswith("fleetwatch."):
                names.add(base)
    return names


@pytest.mark.parametrize(("module", "path"), modules(), ids=[m for m, _ in modules()])
def test_no_module_imports_a_layer_above_its_own(module: str, path: Path) -> None:
    own = layer(module)
    above = sorted(name for name in imported(path, module) if layer(name) > own)
    assert not above, f"{module} (layer {own}) imports {above}"

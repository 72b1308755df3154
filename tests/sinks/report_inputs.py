"""Inputs and a shared check for the report's tests: hostile names, incidents, rows.

Node names come from input: a dcgm-exporter ``Hostname`` label can hold anything, a
folder name anything but ``/``. Each hostile node here has one Xid 79 finding of its
own, so each name reaches the page's headings, row attributes, tooltips, summaries and
evidence.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fleetwatch.findings import Finding
from fleetwatch.sinks import report

ROOT = Path(__file__).parents[2]
EXAMPLES = sorted(p for p in (ROOT / "examples").iterdir() if p.is_dir())
ABOUT = report.About(inputs=("logs/",), generated="2026-12-02 10:00:00 UTC", version="0.1.0")

# dcgm-exporter Hostname labels: markup, attribute breakouts, a closing </svg>, a
# javascript: URL, a bidi override and a terminal escape
HOSTILE_HOSTS = [
    "<script>alert(1)</script>",
    '"onload=alert(2) x="',
    "</svg><img src=x onerror=alert(3)>",
    "</style><script>alert(4)</script>",
    "javascript:alert(5)",
    "gpu\u202e-evil",
    "gpu\x1b[31m-red",
]
# a folder name (no "/"): its plain dmesg has no wall-clock anchor, so its finding is on
# the boot clock, in a timeline of its own headed by the name
HOSTILE_FOLDER = "<img src=x onerror=alert(6)>'\"onmouseover=alert(7)"
HOSTILE_SUMMARY = '</li></ol><script>alert(8)</script><a href="https://example.com/">x</a>\'"'
XID79_DMESG = (
    "[ 1843.308145] NVRM: Xid (PCI:0000:3b:00): 79, pid=2761, name=<script>alert(9)</script>, "
    "GPU has fallen off the bus.\n"
)
XID79_AT_MS = 1717496983000


def _label(text: str) -> str:
    """A Prometheus label value: backslash, quote and newline escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def hostile_fleet(root: Path) -> list[str]:
    """Write the fleet under ``root``; return its hostile node names."""
    scrapes = root / "scrapes"
    scrapes.mkdir(parents=True)
    lines = ["# TYPE DCGM_FI_DEV_XID_ERRORS gauge\n"]
    for n, host in enumerate(HOSTILE_HOSTS):
        lines.append(
            f'DCGM_FI_DEV_XID_ERRORS{{gpu="{n % 8}",UUID="GPU-5fc0bcec-8a5a-7f5e-c1a3-9d6b2e0f4a1{n}",'
            f'pci_bus_id="00000000:3B:00.0",Hostname="{_label(host)}"}} 79 {XID79_AT_MS + n * 1000}\n'
        )
    (scrapes / "dcgm-scrape.prom").write_text("".join(lines))
    node = root / HOSTILE_FOLDER
    node.mkdir()
    (node / "dmesg").write_text(XID79_DMESG)
    return [*HOSTILE_HOSTS, HOSTILE_FOLDER]


def incidents_of(findings: list[Finding]) -> list[dict[str, Any]]:
    """Incidents in the incidents pass's JSON form, built from real findings' ids: the
    first finding the root of the others; one more that names a finding not in the
    report, with a severity that is no severity."""
    wall = [f for f in findings if f.clock == "wall"]
    root, *effects = wall
    return [
        {
            "incident_id": "inc-0123456789abcdef",
            "rule": "hardware_on_gpu",
            "root_cause": "hardware",
            "root": root.id,
            "effects": [f.id for f in effects],
            "finding_ids": [root.id, *(f.id for f in effects)],
            "action": "drain_node",
            "severity": "critical",
            "nodes": sorted({f.node for f in wall if f.node}),
            "gpus": [],
            "first_ts": root.first_ts,
            "last_ts": max(f.last_ts or 0.0 for f in wall),
            "clock": "wall",
            "summary": HOSTILE_SUMMARY,
        },
        {
            "incident_id": "inc-fedcba9876543210",
            "rule": "<b>rule</b>",
            "root_cause": "application",
            "root": "xid_correlation-0000000000000000",
            "effects": [effects[0].id],
            "finding_ids": ["xid_correlation-0000000000000000", effects[0].id],
            "action": "restart_job",
            "severity": 'critical" onmouseover="alert(10)',
            "nodes": [],
            "gpus": [],
            "first_ts": None,
            "last_ts": None,
            "clock": "wall",
            "summary": "a second incident whose root is not in this report",
        },
    ]


def affected(findings: list[Finding]) -> tuple[set[tuple[str, str, str]], set[tuple[str, str]]]:
    """The GPUs and the nodes (findings naming no GPU) of ``findings``, by clock.

    A GPU is named by its PCI address; a finding that gives only a UUID or an index
    names the GPU of another finding of its node that gives it with an address.
    """
    gpus, nodes = set(), set()
    for f in findings:
        if f.node is None or f.clock is None:
            continue
        if f.pci is None and f.uuid is None and f.gpu is None:
            nodes.add((f.clock, f.node))
            continue
        same = [
            g.pci
            for g in findings
            if (g.node, g.clock) == (f.node, f.clock)
            and g.pci is not None
            and (
                (f.uuid is not None and g.uuid == f.uuid) or (f.gpu is not None and g.gpu == f.gpu)
            )
        ]
        if f.pci is not None:
            key = f"pci:{f.pci}"
        elif same:
            key = f"pci:{same[0]}"
        else:
            key = f"uuid:{f.uuid}" if f.uuid is not None else f"gpu:{f.gpu}"
        gpus.add((f.clock, f.node, key))
    return gpus, nodes


LONG_NAME = "n" + "x" * 4999
"""A 5,000-character node name with no space in it."""


def long_name_fleet(root: Path) -> str:
    """A dcgm-exporter scrape with an Xid 79 on a node of ``LONG_NAME`` and one on a
    node of a short name, under ``root``; return the long name."""
    scrapes = root / "scrapes"
    scrapes.mkdir(parents=True)
    (scrapes / "dcgm.prom").write_text(
        "# TYPE DCGM_FI_DEV_XID_ERRORS gauge\n"
        f'DCGM_FI_DEV_XID_ERRORS{{gpu="0",pci_bus_id="00000000:3B:00.0",Hostname="{LONG_NAME}"}}'
        f" 79 {XID79_AT_MS}\n"
        'DCGM_FI_DEV_XID_ERRORS{gpu="1",pci_bus_id="00000000:3C:00.0",Hostname="gpu-node-2"}'
        f" 79 {XID79_AT_MS + 10_000}\n"
    )
    return LONG_NAME


def curve_points(d: str, steps: int = 400) -> list[tuple[float, float]]:
    """Points along an SVG path ``M x,y C x,y x,y x,y`` (one cubic curve)."""
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", d)]
    assert len(numbers) == 8 and d.startswith("M") and " C" in d, d
    (x0, y0, x1, y1, x2, y2, x3, y3) = numbers
    points = []
    for k in range(steps + 1):
        t = k / steps
        u = 1 - t
        points.append(
            (
                u**3 * x0 + 3 * u * u * t * x1 + 3 * u * t * t * x2 + t**3 * x3,
                u**3 * y0 + 3 * u * u * t * y1 + 3 * u * t * t * y2 + t**3 * y3,
            )
        )
    return points

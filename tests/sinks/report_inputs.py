"""Inputs for the report's tests: a fleet whose names are hostile HTML, and incidents.

Node names come from input: a dcgm-exporter ``Hostname`` label can hold anything, a
folder name anything but ``/``. Each hostile node here has one Xid 79 finding of its
own, so each name reaches the page's headings, row attributes, tooltips, summaries and
evidence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fleetwatch.findings import Finding

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
            "rule": "hardware_then_nccl",
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

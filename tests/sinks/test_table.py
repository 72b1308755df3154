"""A very long name from input is cut in the table and the lists, never the findings.

A syslog host of 5,000 characters beside a real incident (examples/xid79-fallen-off-bus)
once left the table's severity column ``de…`` and its gpu, action, count and summary
empty on every row. Now the name is cut (``…``, a note under the findings) and every
other field of every finding is shown whole, at every width.
"""

from __future__ import annotations

import dataclasses
from io import StringIO
from pathlib import Path

import pytest
from rich.cells import cell_len

from fleetwatch.config import load
from fleetwatch.findings import Finding
from fleetwatch.incidents import link
from fleetwatch.replay import replay
from fleetwatch.sinks import write
from fleetwatch.sinks.incidents import write_incidents
from fleetwatch.sinks.table import LIST_NAME_CAP, NAME_CAP, WIDE_AT, cut, when, write_table

ROOT = Path(__file__).resolve().parents[2]
XID79 = "kernel: NVRM: Xid (PCI:0000:3b:00): 79, pid=2761, name=python, GPU has fallen off the bus."
LONG = "n" * 5000


@pytest.fixture(scope="module")
def findings(tmp_path_factory: pytest.TempPathFactory) -> list[Finding]:
    folder = tmp_path_factory.mktemp("long")
    (folder / "syslog").write_text(f"Jun  4 10:30:00 {LONG} {XID79}\n")
    found = replay(
        [str(folder / "syslog"), str(ROOT / "examples" / "xid79-fallen-off-bus")], load(None)
    )
    assert LONG in {f.node for f in found} and "gpu-node-17" in {f.node for f in found}
    return found


def rendered(findings: list[Finding], width: int, wide: bool = False) -> list[str]:
    out = StringIO()
    if wide:
        write(findings, "table", out, wide=True)  # as replay --wide: a pipe's width
    else:
        write_table(findings, out, width=width)
    return out.getvalue().splitlines()


@pytest.mark.parametrize(
    ("width", "wide"), [(80, False), (100, False), (160, False), (200, False), (100, True)]
)
def test_a_5000_character_name_leaves_every_other_field_whole(
    findings: list[Finding], width: int, wide: bool
) -> None:
    lines = rendered(findings, width, wide)
    limit = 220 if wide else width
    assert all(cell_len(line) <= limit for line in lines), max(map(cell_len, lines))
    text = "\n".join(lines)
    table = wide or width >= WIDE_AT
    assert ("┃ severity ┃" in text) == table
    cap = NAME_CAP if table else LIST_NAME_CAP
    # the name is cut, said once; never whole, and not more than the cap, anywhere
    assert "… a name over " in lines[-1] and "--output jsonl has it whole" in lines[-1]
    assert "n" * (cap + 1) not in text.replace("\n", "").replace("│", "").replace(" ", "")
    assert "n" * 16 + "…" in text
    for f in findings:  # every finding's own words, whole (the bug: "de…", empty cells)
        for word in (str(f.severity), f.detector, str(f.action), when(f.first_ts, f.clock)):
            assert word in text, (word, width)
        if f.pci:
            assert f.pci in text
    rows = [line for line in lines if "nnnnnnnnnnnnnnnn" in line]
    if table:  # the long name's row has all its cells, and the summary column has room
        (row,) = [r for r in rows if "critical" in r]
        cells = [c.strip() for c in row.split("│")[1:-1]]
        assert cells[0] == "critical" and cells[1] == "xid_correlation"
        assert cells[3:6] == ["0000:3b:00.0", "reboot_node", "1"]
        assert len(cells[2]) <= NAME_CAP and cells[2].endswith("…")
        assert cells[7].startswith("Xid 79 (GPU has") and len(row.split("│")[-2]) >= 30
    for f in findings:  # the short names are never cut
        if f.node == "gpu-node-17":
            assert "gpu-node-17" in text


def test_a_long_host_name_is_folded_whole_in_the_list_and_cut_to_the_room_in_a_table(
    findings: list[Finding],
) -> None:
    fqdn = "gpu-node-17." + "rack-4.hall-b.datacenter-west." * 3 + "example.com"  # 113
    renamed = [f for f in findings if f.node == "gpu-node-17"]
    renamed = [
        dataclasses.replace(f, node=fqdn, summary=f.summary.replace("gpu-node-17", fqdn))
        for f in renamed
    ]
    listed = "".join(line.strip() for line in rendered(renamed, 80))
    assert fqdn in listed and "cut here" not in listed
    at_160 = rendered(renamed, 160)
    assert all(cell_len(line) <= 160 for line in at_160)
    assert cut(fqdn, 34) in "\n".join(at_160) and "cut here" in at_160[-1]
    at_200 = "\n".join(rendered(renamed, 200))
    assert cut(fqdn, NAME_CAP) in at_200 and "over 64 characters" in at_200


def test_the_incidents_table_cuts_the_name_and_keeps_the_rest(findings: list[Finding]) -> None:
    out = StringIO()
    write_incidents(link(findings), "incidents-table", out, width=80)
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 80 for line in lines)
    text = "".join(line.strip() for line in lines)
    assert cut(LONG, LIST_NAME_CAP) in text and "n" * LIST_NAME_CAP not in text
    assert "critical reboot_node" in "\n".join(lines)
    assert "hardware cause, reboot_node advised" in "\n".join(lines)
    assert "cut here" in lines[-1]


def test_cut_counts_terminal_columns() -> None:
    assert cut("gpu-node-17", 64) == "gpu-node-17"
    assert cut("x" * 65, 64) == "x" * 63 + "…"
    wide = cut("節点" * 40, 64)  # each character two columns wide
    assert cell_len(wide) <= 64 and wide.endswith("…")

"""The HTML report without a browser: well-formed, loads nothing, input stays text.

``test_report_browser.py`` opens the same pages in headless Chromium (``make test-e2e``).
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from fleetwatch.cli import cli
from fleetwatch.config import load
from fleetwatch.events import CLOCK_ID, FIELDS, KIND_ID, SOURCE_ID, EventBatch
from fleetwatch.findings import Action, Finding, Severity, finding_id
from fleetwatch.replay import replay
from fleetwatch.simulate import simulate
from fleetwatch.sinks import report
from fleetwatch.sinks.one_line import one_line
from fleetwatch.sinks.timeline import Timeline
from fleetwatch.sources import ReadStats
from tests.sinks.report_inputs import (
    ABOUT,
    EXAMPLES,
    HOSTILE_FOLDER,
    HOSTILE_SUMMARY,
    ROOT,
    affected,
    curve_points,
    hostile_fleet,
    incidents_of,
    long_name_fleet,
)

VOID = {"meta", "link", "br", "img", "input", "hr", "area", "base", "col", "embed", "wbr"}


class Page(HTMLParser):
    """A page parsed: its elements with their attributes, its text, its style; and
    every way it is not well-formed (a tag closed that was not open, one left open)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.style: list[str] = []
        self.errors: list[str] = []
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {name: value or "" for name, value in attrs}))
        if tag not in VOID:
            self._open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if not self._open or self._open[-1] != tag:
            self.errors.append(f"</{tag}> closes {self._open[-1:]}")
            return
        self._open.pop()

    def handle_data(self, data: str) -> None:
        (self.style if self._open[-1:] == ["style"] else self.text).append(data)

    def close(self) -> None:
        super().close()
        if self._open:
            self.errors.append(f"left open: {self._open}")

    def all(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [
            a
            for t, a in self.elements
            if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]


def parse(page: str) -> Page:
    parsed = Page()
    parsed.feed(page)
    parsed.close()
    return parsed


def build(
    paths: list[Path], incidents: list[dict[str, Any]] | None = None
) -> tuple[str, list[Finding]]:
    """The report of ``paths`` as the command makes it (with ``incidents``)."""
    stats, timeline = ReadStats(), Timeline()
    findings = replay([str(p) for p in paths], load(None), stats=stats, observe=timeline.add)
    return report.render(findings, incidents or [], timeline, stats, ABOUT), findings


def assert_loads_nothing(page: Page) -> None:
    """No script, no handler, no style attribute, no link out of the page, no source."""
    tags = {tag for tag, _ in page.elements}
    assert not tags & {"script", "iframe", "object", "embed", "img", "form", "base", "frame"}
    for tag, attrs in page.elements:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            assert name not in ("style", "src", "srcset", "xlink:href", "action"), (tag, name)
            if not name.startswith("data-") and name != "aria-label":  # inert: may hold input
                assert not re.search(r"(?i)\b(https?|ftp|javascript|file):", value), (tag, name)
            if name == "href":
                assert value.startswith("#") or (tag, value) == ("link", "data:,"), value
    (policy,) = page.all("meta", http_equiv="Content-Security-Policy")
    assert policy["content"] == report.CSP
    assert "default-src 'none'" in report.CSP and "script-src" not in report.CSP
    # the one stylesheet is allowed by its hash, and is the page's one style element
    (css,) = page.style
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}';" in report.CSP


def gpu_rows(page: Page) -> list[tuple[str, str, str]]:
    return [(a["data-clock"], a["data-node"], a["data-gpu"]) for a in page.all("g", data_row="gpu")]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_each_example_is_a_well_formed_page_that_loads_nothing(example: Path) -> None:
    text, findings = build([example])
    page = parse(text)
    assert page.errors == []
    assert_loads_nothing(page)
    assert not re.search(r"(?i)https?://", text)  # not even as text
    # one row per affected GPU, one per node whose findings name no GPU, and no other
    gpus, nodes = affected(findings)
    rows = gpu_rows(page)
    assert len(rows) == len(set(rows)) and set(rows) == gpus
    assert {(a["data-clock"], a["data-node"]) for a in page.all("g", data_row="node")} == nodes
    assert len(page.all("g", **{"class": "row"})) == len(gpus) + len(nodes)
    # every finding is listed, with its evidence and where it came from
    body = "".join(page.text)
    for n, f in enumerate(findings, start=1):
        (card,) = page.all("article", id=f"finding-{n}")
        assert card["data-finding"] == f.id and one_line(f.summary) in body
        for line in f.evidence:
            where = re.match(r"(\S.*?:\d+) ", line)
            assert (where[1] if where else line) in body


def test_the_xid79_example_shows_its_gpu_its_node_and_the_read_counts() -> None:
    text, _ = build([ROOT / "examples" / "xid79-fallen-off-bus"])
    page = parse(text)
    assert gpu_rows(page) == [("wall", "gpu-node-17", "pci:0000:3b:00.0")]
    (row,) = page.all("g", data_row="gpu")
    assert row["data-findings"] == "2"  # the Xid 79 and the AER error of the same GPU
    body = "".join(page.text)
    assert "GPU 3 · 0000:3b:00.0" in body
    assert "examples/xid79-fallen-off-bus/gpu-node-17/dmesg.txt:6" in body
    assert "Read 3 file(s), 26 lines, 8 events." in body and "blank value" in body
    assert "2024-06-04 10:29:43 → 2024-06-04 10:29:43 UTC" in body  # the finding's clock


def test_unreadable_records_are_counted_by_reader_and_reason(tmp_path: Path) -> None:
    node = tmp_path / "gpu-node-5"
    node.mkdir()
    (node / "dcgm.prom").write_text(
        "# TYPE DCGM_FI_DEV_XID_ERRORS gauge\n"
        'DCGM_FI_DEV_XID_ERRORS{gpu="0",pci_bus_id="00000000:3B:00.0"} 79 1717496983000\n'
        'DCGM_FI_DEV_XID_ERRORS{gpu="0",pci_bus_id="00000000:3B:00.0" 79\n'  # torn
        'DCGM_FI_DEV_XID_ERRORS{gpu="0",pci_bus_id="00000000:3B:00.0"} 79 x\n'
    )
    stats, timeline = ReadStats(), Timeline()
    findings = replay([str(tmp_path)], load(None), stats=stats, observe=timeline.add)
    assert stats.unreadable  # the input is what this test thinks it is
    page = parse(report.render(findings, [], timeline, stats, ABOUT))
    assert len(page.all("table", **{"class": "unreadable"})) == 1
    body = "".join(page.text)
    total = sum(stats.unreadable.values())
    assert f"Unreadable records: {total:,}" in body
    for (reader, reason), n in stats.unreadable.items():
        assert reader in body and reason in body and f"{n:,}" in body


def test_hostile_names_and_summaries_stay_text(tmp_path: Path) -> None:
    names = hostile_fleet(tmp_path / "in")
    stats, timeline = ReadStats(), Timeline()
    findings = replay([str(tmp_path / "in")], load(None), stats=stats, observe=timeline.add)
    assert sorted(f.node or "" for f in findings) == sorted(names)  # each name has a finding
    text = report.render(findings, incidents_of(findings), timeline, stats, ABOUT)
    page = parse(text)
    assert page.errors == []
    assert_loads_nothing(page)
    body = "".join(page.text)
    for name in names:  # shown as written (a bidi override or an escape, escaped)
        assert one_line(name) in body
    assert HOSTILE_SUMMARY in body
    assert "<script" not in text and "<img" not in text and "</svg><img" not in text
    # each name is the value of its row's attribute, whole: no attribute broke out
    assert {a["data-node"] for a in page.all("g", **{"class": "row"})} == {
        one_line(n) for n in names
    }
    # the plain dmesg has no wall-clock anchor: its node has a boot-clock timeline
    (boot,) = page.all("svg", data_clock="boot")
    assert (
        boot["aria-label"]
        == f"{one_line(HOSTILE_FOLDER)}: seconds since its boot (no wall-clock time for it)"
    )
    assert re.search(r"\+1843(\.\d)?s", body)  # its axis counts from boot
    assert "boot+1843s → boot+1843s since boot" in body
    # a severity that is no severity gets no class of its own
    listed = [a["class"] for a in page.all("li") if a.get("id", "").startswith("incident-")]
    assert listed == ["sev-critical", "sev-unknown"]


def test_an_incident_links_its_root_to_each_effect(tmp_path: Path) -> None:
    hostile_fleet(tmp_path / "in")
    stats, timeline = ReadStats(), Timeline()
    findings = replay([str(tmp_path / "in")], load(None), stats=stats, observe=timeline.add)
    incidents = incidents_of(findings)
    page = parse(report.render(findings, incidents, timeline, stats, ABOUT))
    number = {f.id: n for n, f in enumerate(findings, start=1)}
    first = incidents[0]
    # one connector (a path and its arrowhead) from the root to each effect
    assert len(page.all("g", data_incident="1")) == 1
    paths = [a for t, a in page.elements if t == "path" and "link" in a.get("class", "")]
    assert len(paths) == len(first["effects"]) > 0
    # the second incident's root is not in the report: listed, not drawn
    assert page.all("g", data_incident="2") == []
    body = "".join(page.text)
    assert "not in this report: xid_correlation-0000000000000000" in body
    # the list at the top names each finding; each finding names its incidents
    assert len(page.all("li", id="incident-1")) == 1
    refs = [a["href"] for t, a in page.elements if t == "a" and a.get("href", "").startswith("#")]
    assert f"#finding-{number[first['root']]}" in refs
    for effect in first["effects"]:
        assert f"#finding-{number[effect]}" in refs
    assert refs.count("#incident-1") == 1 + len(first["effects"])
    assert refs.count("#incident-2") == 1


def test_a_long_name_is_cut_to_fit_its_label_and_kept_whole_in_its_tooltip(
    tmp_path: Path,
) -> None:
    name = long_name_fleet(tmp_path / "in")
    text, _ = build([tmp_path / "in"])
    page = parse(text)
    assert page.errors == []
    assert_loads_nothing(page)
    assert name in "".join(page.text)  # the finding's card shows it whole (it wraps)
    labels = re.findall(
        r'<text class="group-label" [^>]*clip-path="url\(#([\w-]+)\)">([^<]*)<title>([^<]*)<',
        text,
    )
    assert {whole for _, _, whole in labels} == {name, "gpu-node-2"}
    for clip, shown, whole in labels:
        assert f'<clipPath id="{clip}">' in text  # what the estimate misses is clipped
        if whole == name:  # cut, with an ellipsis: ~40 of its characters fit
            assert shown.endswith("…") and name.startswith(shown[:-1]) and len(shown) < 60
        else:
            assert shown == whole
    rows = re.findall(r'<text class="row-label" [^>]*clip-path="url\(#[\w-]+\)">', text)
    assert len(rows) == 2


def evidence_page(evidence: tuple[str, ...]) -> Page:
    finding = Finding(
        "xid_correlation-00000000000000aa", "xid_correlation", Severity.CRITICAL,
        Action.REBOOT_NODE, "Xid 79", 1717496983.0, 1717496993.0, count=46, clock="wall",
        node="n1", pci="0000:3b:00.0", evidence=evidence,
    )  # fmt: skip
    page = parse(report.render([finding], [], Timeline(), ReadStats(), ABOUT))
    assert page.errors == []
    return page


@pytest.mark.parametrize(
    ("skipped", "start", "css"),
    [("1", "5", "evidence"), ("40", "44", "evidence"), ("12,345", "12349", "evidence wide")],
)
def test_evidence_left_out_is_a_gap_in_the_numbering_not_an_item(
    skipped: str, start: str, css: str
) -> None:
    """1-3, "… 40 more", 44-46: the records after the gap are numbered on from the
    records it stands for, and the gap itself is no item of the list."""
    kept = [f"/logs/n1/kern.log:{n} xid code=79" for n in (1, 2, 3)]
    last = [f"/logs/n1/dcgm.prom:{n} xid code=79" for n in (4610, 4690, 4770)]
    page = evidence_page((*kept, f"… {skipped} more", *last))
    lists = page.all("ol")
    assert [(a["class"], a.get("start")) for a in lists] == [(css, None), (css, start)]
    assert len(page.all("li")) == 6  # the six records, and no more
    # the gap between the two lists, saying how many records it stands for
    order = [(t, a.get("class")) for t, a in page.elements if t in ("ol", "p") and "class" in a]
    assert order[-3:] == [("ol", css), ("p", css.replace("evidence", "more")), ("ol", css)]
    assert f"… {skipped} more" in page.text
    # a line like it but for its words is a record like any other
    page = evidence_page((*kept, "… 40 more lines", *last))
    assert [a.get("start") for a in page.all("ol")] == [None] and len(page.all("li")) == 7


def incident_labels(text: str) -> list[tuple[float, float, list[tuple[float, float]]]]:
    """Each drawn incident's label (its right end and baseline) and its connectors'
    points."""
    found = []
    for group in re.findall(r'<g class="incident".*?</g>', text, re.DOTALL):
        ((x, y),) = re.findall(r'<text class="link-label [^"]*" x="([\d.-]+)" y="([\d.-]+)"', group)
        points = [p for d in re.findall(r'<path class="link [^"]*" d="([^"]*)"', group)
                  for p in curve_points(d)]  # fmt: skip
        found.append((float(x), float(y), points))
    return found


@pytest.mark.parametrize("scenario", ["xid79-hangs-nccl-job", "app-xid31-nccl-job", "nvlink-storm"])
def test_an_incident_s_label_is_at_its_connectors(tmp_path: Path, scenario: str) -> None:
    simulate(scenario, tmp_path / "fleet", 1, 4, 50)
    out = tmp_path / "report.html"
    done = CliRunner().invoke(cli, ["report", str(tmp_path / "fleet"), "--out", str(out)])
    assert done.exit_code == 0, done.output
    labels = incident_labels(out.read_text())
    assert labels, "the scenario draws no incident: the test would see nothing"
    for x, y, points in labels:
        middle = y - 3.5  # the baseline, and half the text's height above it
        nearest = min(math.dist((x, middle), p) for p in points)
        assert nearest < 6, (x, y, nearest)  # right by the connectors
        assert x <= min(px for px, _ in points)  # and to their left, across none of them


def samples(node: str, start: float, seconds: int, every_s: int) -> EventBatch:
    """dcgm-exporter samples of 5 kinds for each of 8 GPUs of ``node``."""
    kinds = ("temperature", "power", "clock_event", "ecc_corrected", "xid")
    times = start + np.arange(0, seconds, every_s, dtype=np.float64)
    gpus = np.arange(8)
    strings = (node, *(f"0000:{0x18 + g:02x}:00.0" for g in gpus))
    grid = np.stack(np.meshgrid(times, gpus, [KIND_ID[k] for k in kinds], indexing="ij"), -1)
    ts, gpu, kind = grid.reshape(-1, 3).T
    n = len(ts)
    columns = {name: np.full(n, absent, dtype) for name, (dtype, absent, _) in FIELDS.items()}
    columns.update(
        kind=kind.astype(np.int8),
        ts=ts,
        clock=np.full(n, CLOCK_ID["wall"], np.int8),
        source=np.full(n, SOURCE_ID["dcgm"], np.int8),
        node=np.zeros(n, np.int32),
        pci=(gpu + 1).astype(np.int32),
        gpu=gpu.astype(np.int32),
    )
    return EventBatch(columns, strings)


def test_a_hundred_affected_nodes_stay_under_five_megabytes() -> None:
    """100 nodes x 8 GPUs, each GPU with a finding and an hour of samples of 5 kinds
    every 10 s: the marks are binned, so the page stays small all the same."""
    findings, timeline = [], Timeline()
    start = 1717496983.0
    for n in range(100):
        node = f"gpu-node-{n:03d}"
        for gpu in range(8):
            pci = f"0000:{0x18 + gpu:02x}:00.0"
            first = start + n * 30
            findings.append(
                Finding(
                    finding_id("xid_correlation", f"{node}/{pci}", first),
                    "xid_correlation",
                    Severity.CRITICAL,
                    Action.REBOOT_NODE,
                    f"Xid 79 (GPU has fallen off the bus) on GPU {pci} of {node}",
                    first,
                    first + 600,
                    count=9,
                    clock="wall",
                    node=node,
                    pci=pci,
                    gpu=gpu,
                    evidence=tuple(f"/logs/{node}/kern.log:{i} xid code=79" for i in range(7)),
                )
            )
        timeline.add(samples(node, start, 3600, 10))
    text = report.render(findings, [], timeline, ReadStats(), ABOUT)
    assert text.count('data-row="gpu"') == 800
    assert len(text.encode()) < 5_000_000, len(text.encode())  # 3.7 MB when written


def test_a_finding_at_a_forged_time_is_listed_not_drawn() -> None:
    """A stamp in the year 10^292 is input too: the page is made, the span left out."""
    forged = Finding(
        "xid_correlation-00000000000000ff", "xid_correlation", Severity.CRITICAL,
        Action.REBOOT_NODE, "Xid 79", 1e300, 1e300, clock="wall", node="n1", pci="0000:3b:00.0",
    )  # fmt: skip
    page = parse(report.render([forged], [], Timeline(), ReadStats(), ABOUT))
    assert page.errors == [] and len(gpu_rows(page)) == 1
    spans = [r for r in page.all("rect", **{"class": "span sev-critical"}) if "x" in r]
    assert spans == []  # the legend's swatch is the one such rect
    assert len(page.all("article", id="finding-1")) == 1


def test_the_command_writes_the_page(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    example = ROOT / "examples" / "xid79-fallen-off-bus"
    done = CliRunner().invoke(cli, ["report", str(example), "--out", str(out)])
    assert done.exit_code == 0, done.output
    page = parse(out.read_text())
    assert page.errors == [] and len(gpu_rows(page)) == 1
    # the incidents pass: the Xid 79 the root of the AER and the evictions, one incident
    assert len(page.all("li", id="incident-1")) == 1 and page.all("li", id="incident-2") == []
    assert "First, Xid 79 (GPU has fallen off the bus)" in "".join(page.text)
    assert done.stderr.endswith(f"3 finding(s); wrote {out} ({out.stat().st_size:,} bytes)\n")
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temporary left


def test_the_command_takes_replay_s_reading_options(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    example = ROOT / "examples" / "xid79-fallen-off-bus"
    done = CliRunner().invoke(
        cli,
        ["report", str(example), "--out", str(out), "--only-node", "gpu-node-99",
         "--since", "2024-06-04T10:00:00", "--tz", "UTC", "--year", "2024"],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    body = "".join(parse(out.read_text()).text)
    assert "0 finding(s)" in body and "only node gpu-node-99" in body
    assert "since 2024-06-04 10:00:00 UTC" in body


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["--out", "{tmp}/no/such/folder/r.html"],
            "--out {tmp}/no/such/folder/r.html: No such file",
        ),
        (["--out", "{tmp}"], "is a directory"),
        ([], "Missing option '--out'"),
        (["--out", "{tmp}/r.html", "--since", "yesterday-ish"], "--since 'yesterday-ish'"),
        (["--out", "{tmp}/r.html", "--config", "{tmp}/none.toml"], "none.toml"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(tmp_path: Path, args: list[str], says: str) -> None:
    example = str(ROOT / "examples" / "xid79-fallen-off-bus")
    argv = ["report", example, *(a.replace("{tmp}", str(tmp_path)) for a in args)]
    done = CliRunner().invoke(cli, argv)
    assert done.exit_code == 2, done.output
    assert says.replace("{tmp}", str(tmp_path)) in done.stderr
    assert not (tmp_path / "r.html").exists()


def test_help_gives_examples_and_exit_codes() -> None:
    done = CliRunner().invoke(cli, ["report", "--help"])
    assert done.exit_code == 0
    for text in ("--out", "--since", "--only-node", "--tz", "--year", "--config", "Examples:",
                 "fleetwatch report logs/ --out report.html", "Exit codes:", "2  a usage"):  # fmt: skip
        assert text in done.output

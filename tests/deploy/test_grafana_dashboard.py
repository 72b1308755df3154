"""deploy/grafana/fleetwatch.json: importable as it is, and every query reads what
fleetwatch exports (``tests/deploy/test_prometheus_e2e.py`` runs the queries against a
real Prometheus)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.deploy.dashboard import BUILTINS, VARIABLE, load, panels, queries, variables
from tests.deploy.exported import SCRAPE_SERIES, exported

METRIC = re.compile(r"\b(?:fleetwatch_[a-z_]+|up)\b")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def test_the_prometheus_data_source_is_a_variable_every_panel_and_query_uses() -> None:
    dashboard = load()
    chosen = variables(dashboard)["datasource"]
    assert chosen["type"] == "datasource" and chosen["query"] == "prometheus"
    for panel in panels(dashboard):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
    for name in ("job", "instance"):
        assert variables(dashboard)[name]["datasource"] == DATASOURCE


def test_every_query_reads_what_fleetwatch_exports_and_names_known_variables(
    tmp_path: Path,
) -> None:
    dashboard = load()
    known = exported(tmp_path) | SCRAPE_SERIES
    names = set(variables(dashboard)) | set(BUILTINS)
    for title, expr in queries(dashboard, {"job": "fleetwatch", "instance": ".*"}):
        assert "$" not in expr, title
        for name in METRIC.findall(expr):
            assert name in known, f"{title!r} reads {name}, which nothing exports"
    for panel in panels(dashboard):
        for target in panel["targets"]:
            for match in VARIABLE.finditer(target["expr"]):
                assert (match[1] or match[2]) in names, panel["title"]


def test_ids_are_unique_and_panels_tile_the_24_columns_without_overlap() -> None:
    dashboard = load()
    nested = [p for row in dashboard["panels"] for p in row.get("panels", [])]
    ids = [p["id"] for p in dashboard["panels"] + nested]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        box = panel["gridPos"]
        assert box["x"] >= 0 and box["x"] + box["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(box["x"], box["x"] + box["w"])
            for y in range(box["y"], box["y"] + box["h"])
        }
        assert not cells & taken, f"{panel['title']!r} overlaps another panel"
        taken |= cells
    for panel in panels(dashboard):
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_the_dashboard_shows_what_an_operator_asks_for() -> None:
    exprs = " ".join(expr for _, expr in queries(load(), {"job": "j", "instance": "i"}))
    for series in (
        "fleetwatch_findings_open",
        "fleetwatch_finding{",
        "fleetwatch_events_total",
        "fleetwatch_unreadable_records_total",
        "fleetwatch_detector_seconds_total",
        "fleetwatch_breaker_open",
    ):
        assert series in exprs
    titles = {p["title"] for p in panels(load())}
    assert {"Open findings per node", "Open findings per GPU"} <= titles

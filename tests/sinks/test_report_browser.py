"""The HTML report in a real browser: headless Chromium, driven by chromedriver (selenium).

Each page is opened from ``file://`` as a mail attachment would be. Chromium's own
network log (the DevTools ``Network`` events, through chromedriver's performance log)
and the page's resource timing must show no request but the file itself or a ``data:``
URL; the console has no error (a Content-Security-Policy violation is one); the
timeline has one row per affected GPU, counted in the DOM; hostile node names run
nothing; each row's label, laid out in the browser's own font, ends inside its column,
the page never scrolls sideways (a 5,000-character name wraps), and an incident's label
is at its connectors. A screenshot of each page is written under the test's ``tmp_path`` and its
path printed (``pytest -s`` shows it).

Chromium starts with the background-networking switches off (the closed network here
would otherwise log its attempts) and a fresh profile. ``make test-e2e`` runs these.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fleetwatch.cli import cli
from fleetwatch.config import load
from fleetwatch.findings import Finding
from fleetwatch.replay import replay
from fleetwatch.simulate import simulate
from fleetwatch.sinks import report, report_file
from fleetwatch.sinks.one_line import one_line
from fleetwatch.sinks.timeline import Timeline
from fleetwatch.sources import ReadStats
from tests.sinks.report_inputs import (
    ABOUT,
    EXAMPLES,
    affected,
    hostile_fleet,
    incidents_of,
    long_name_fleet,
)

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SWITCHES = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1300,1000",
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not Path(binary).exists():
            pytest.skip(f"{binary} is not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed: make install (the dev extra)"
    )
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for switch in SWITCHES:
        options.add_argument(switch)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@dataclass(frozen=True)
class Visit:
    """What opening a page did."""

    url: str
    requests: list[str]  # every URL the browser asked for (DevTools Network events)
    resources: list[str]  # the page's resource timing entries
    errors: list[dict[str, Any]]  # console messages at level SEVERE
    load_ms: float  # navigation start to the end of the load event
    rows: list[dict[str, str]]  # the timeline's rows, by their data attributes


def visit(driver: Any, page: Path, shot: Path) -> Visit:
    driver.get("about:blank")
    driver.get_log("performance")  # what the start page did is not this page's
    driver.get_log("browser")
    url = page.as_uri()
    driver.get(url)  # returns once the load event has run
    requests = [
        message["params"]["request"]["url"]
        for entry in driver.get_log("performance")
        if (message := json.loads(entry["message"])["message"])["method"]
        == "Network.requestWillBeSent"
    ]
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    resources = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    load_ms = driver.execute_script(
        "const n = performance.getEntriesByType('navigation')[0];"
        "return n.loadEventEnd - n.startTime"
    )
    rows = driver.execute_script(
        "return [...document.querySelectorAll('svg g.row')].map(g => ({...g.dataset}))"
    )
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1300, min(height + 140, 8000))
    driver.save_screenshot(str(shot))
    driver.set_window_size(1300, 1000)
    print(f"screenshot: {shot} (loaded in {load_ms:.0f} ms)")
    return Visit(url, requests, resources, errors, load_ms, rows)


def assert_self_contained(seen: Visit) -> None:
    assert seen.requests, "the network log is empty: the test would see nothing"
    for url in seen.requests + seen.resources:
        assert url == seen.url or url.startswith("data:"), url
    assert seen.errors == []


def assert_one_row_per_affected_gpu(seen: Visit, findings: list[Finding]) -> None:
    gpus, nodes = affected(findings)
    shown_gpus = {
        (clock, one_line(node), gpu) for clock, node, gpu in gpus
    }  # as the page shows names
    got = [(r["clock"], r["node"], r["gpu"]) for r in seen.rows if r["row"] == "gpu"]
    assert len(got) == len(set(got)) and set(got) == shown_gpus
    shown_nodes = {(clock, one_line(node)) for clock, node in nodes}
    assert {(r["clock"], r["node"]) for r in seen.rows if r["row"] == "node"} == shown_nodes


def assert_labels_fit(driver: Any) -> None:
    """Each node's and row's label, as the browser lays it out (its own font, not
    clipped), ends inside its clip: the width estimate held, nothing was cut off."""
    labels = driver.execute_script(
        "return [...document.querySelectorAll('svg text.group-label, svg text.row-label')]"
        ".map(t => { const id = t.getAttribute('clip-path').match(/#([^)]+)/)[1];"
        "  const b = t.getBBox();"
        "  return [t.firstChild.data, b.x + b.width,"
        "          document.getElementById(id).querySelector('rect').width.baseVal.value]; })"
    )
    assert labels
    for text, right, room in labels:
        assert right <= room, (text, right, room)


def assert_no_sideways_scroll(driver: Any) -> None:
    width = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert width[0] <= width[1], width


def assert_incident_labels_at_connectors(driver: Any) -> None:
    """Each incident's ``I1`` ends within a few pixels of its connectors, left of them."""
    labels = driver.execute_script(
        "return [...document.querySelectorAll('g.incident')].map(g => {"
        "  const b = g.querySelector('text.link-label').getBBox();"
        "  const x = b.x + b.width, y = b.y + b.height / 2;"
        "  let nearest = Infinity, leftmost = Infinity;"
        "  for (const p of g.querySelectorAll('path.link')) {"
        "    const length = p.getTotalLength();"
        "    for (let i = 0; i <= 200; i++) {"
        "      const q = p.getPointAtLength(length * i / 200);"
        "      nearest = Math.min(nearest, Math.hypot(q.x - x, q.y - y));"
        "      leftmost = Math.min(leftmost, q.x); } }"
        "  return [g.dataset.incident, nearest, x, leftmost]; })"
    )
    assert labels, "no incident drawn: the check would see nothing"
    for incident, nearest, right, leftmost in labels:
        assert nearest < 8 and right <= leftmost + 1, (incident, nearest, right, leftmost)


def write_report(paths: list[Path], out: Path, hostile: bool = False) -> list[Finding]:
    stats, timeline = ReadStats(), Timeline()
    findings = replay([str(p) for p in paths], load(None), stats=stats, observe=timeline.add)
    incidents = incidents_of(findings) if hostile else []
    report_file.write(out, report.render(findings, incidents, timeline, stats, ABOUT))
    return findings


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_each_example_loads_nothing_and_draws_each_affected_gpu(
    browser: Any, example: Path, tmp_path: Path
) -> None:
    page = tmp_path / "report.html"
    findings = write_report([example], page)
    seen = visit(browser, page, tmp_path / f"{example.name}.png")
    assert_self_contained(seen)
    assert_one_row_per_affected_gpu(seen, findings)
    # the stylesheet applied (its hash is in the policy): the header is dark
    header = browser.execute_script(
        "return getComputedStyle(document.querySelector('header')).backgroundColor"
    )
    assert header == "rgb(31, 41, 51)"
    assert_labels_fit(browser)
    assert_no_sideways_scroll(browser)
    # a span links to its finding, on the page
    browser.find_element("css selector", "svg a[href='#finding-1']").click()
    assert browser.current_url == seen.url + "#finding-1"


def test_hostile_names_run_nothing_and_stay_text(browser: Any, tmp_path: Path) -> None:
    names = hostile_fleet(tmp_path / "in")
    page = tmp_path / "report.html"
    findings = write_report([tmp_path / "in"], page, hostile=True)
    seen = visit(browser, page, tmp_path / "hostile.png")  # an alert() would fail this
    assert_self_contained(seen)
    assert_one_row_per_affected_gpu(seen, findings)
    assert browser.title == f"fleetwatch report: {len(findings)} finding(s)"
    found = browser.execute_script(
        "return document.querySelectorAll('script, img, iframe, object, embed, form').length"
    )
    assert found == 0
    assert {r["node"] for r in seen.rows} == {one_line(n) for n in names}
    text = browser.find_element("tag name", "body").text
    for name in names:
        assert one_line(name) in text
    # the incident's connectors are drawn, one per effect
    links = browser.execute_script(
        "return document.querySelectorAll('g.incident[data-incident=\"1\"] path.link').length"
    )
    assert links == len(incidents_of(findings)[0]["effects"])
    assert_incident_labels_at_connectors(browser)
    assert_labels_fit(browser)


def test_a_long_name_wraps_and_its_label_is_cut_to_fit(browser: Any, tmp_path: Path) -> None:
    """A 5,000-character node name: its card wraps it (the page never scrolls
    sideways), its timeline label is cut with an ellipsis, and fits."""
    name = long_name_fleet(tmp_path / "in")
    page = tmp_path / "report.html"
    write_report([tmp_path / "in"], page)
    seen = visit(browser, page, tmp_path / "long-name.png")
    assert_self_contained(seen)
    assert_no_sideways_scroll(browser)
    assert_labels_fit(browser)
    cards = browser.execute_script(
        "return [...document.querySelectorAll('article.finding')].map(a => "
        "[a.getBoundingClientRect().right, a.scrollWidth <= a.clientWidth])"
    )
    width = browser.execute_script("return document.documentElement.clientWidth")
    assert cards and all(right <= width and fits for right, fits in cards), (cards, width)
    label = browser.find_element("css selector", "svg text.group-label")
    assert label.text.endswith("…") and name.startswith(label.text[:-1])
    tooltip = browser.execute_script(
        "return document.querySelector('svg text.group-label title').textContent"
    )
    assert tooltip == name


def test_a_hundred_node_fleet(browser: Any, tmp_path: Path) -> None:
    """A simulated fleet of 100 nodes (8 GPUs each, ~430,000 events): the command's page
    stays under 5 MB and draws the faulty GPUs; its load time is printed, not asserted."""
    fleet = tmp_path / "fleet"
    simulate("nvlink-storm", fleet, 1, 100, 2000)
    page = tmp_path / "report.html"
    started = time.perf_counter()
    done = CliRunner().invoke(cli, ["report", str(fleet), "--out", str(page)])
    assert done.exit_code == 0, done.output
    size = page.stat().st_size
    print(f"report of 100 nodes: {size:,} bytes in {time.perf_counter() - started:.1f} s")
    assert size < 5_000_000
    findings = replay([str(fleet)], load(None))
    seen = visit(browser, page, tmp_path / "fleet-100.png")
    assert_self_contained(seen)
    assert_one_row_per_affected_gpu(seen, findings)
    assert len([r for r in seen.rows if r["row"] == "gpu"]) >= 4
    assert_incident_labels_at_connectors(browser)
    assert_labels_fit(browser)
    assert_no_sideways_scroll(browser)
    print(f"100 nodes: {len(seen.rows)} rows, loaded in {seen.load_ms:.0f} ms")

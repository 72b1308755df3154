"""deploy/prometheus/rules.yml: valid for Prometheus, its unit tests pass, and it reads
what fleetwatch really exports (promtool is fast: this runs in ``make test``)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleetwatch.findings import Action
from tests.deploy.exported import SCRAPE_SERIES, exported
from tests.deploy.servers import DEPLOY, PROMTOOL, missing

RULES = DEPLOY / "prometheus" / "rules.yml"
METRIC = re.compile(r"\b(?:fleetwatch_[a-z_]+|up)\b")


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    reason = missing(PROMTOOL)
    if reason:
        pytest.skip(reason)
    return subprocess.run(
        [PROMTOOL, *args], cwd=RULES.parent, capture_output=True, text=True, timeout=60
    )


def test_promtool_checks_the_rules() -> None:
    done = promtool("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_the_rules_pass_their_unit_tests() -> None:
    done = promtool("test", "rules", "rules_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_series_the_rules_read_is_one_fleetwatch_exports(tmp_path: Path) -> None:
    known = exported(tmp_path) | SCRAPE_SERIES
    for rule in rules():
        for name in METRIC.findall(rule["expr"]):
            assert name in known, f"{rule['alert']} reads {name}, which nothing exports"


def test_what_pages_is_what_takes_a_gpu_or_node_out_of_service() -> None:
    out_of_service = {str(a) for a in Action if a.takes_out_of_service}
    paging = {r["alert"]: r for r in rules() if r["labels"]["urgency"] == "page"}
    assert set(paging) == {"FleetwatchCriticalOutOfService", "FleetwatchBreakerOpen"}
    for rule in rules():  # every action list in the rules is the same set
        for listed in re.findall(r'action[=!]~"([^"]+)"', rule["expr"]):
            assert set(listed.split("|")) == out_of_service, rule["alert"]


def test_every_alert_says_who_to_tell_and_what_happened() -> None:
    for rule in rules():
        assert rule["labels"]["urgency"] in {"page", "ticket"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]

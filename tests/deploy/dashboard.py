"""deploy/grafana/fleetwatch.json read as Grafana reads it: panels, their queries, variables."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.deploy.servers import DEPLOY

DASHBOARD = DEPLOY / "grafana" / "fleetwatch.json"
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}
"""Grafana's own variables, with values a query over a test's minutes can take."""
VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def load() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that queries (rows hold none), including those inside collapsed rows."""
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found += panel.get("panels", [])
        else:
            found.append(panel)
    return found


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def substitute(expr: str, values: dict[str, str]) -> str:
    """``expr`` with each ``$name`` / ``${name}`` replaced as Grafana would (KeyError: unknown)."""
    every = {**BUILTINS, **values}
    return VARIABLE.sub(lambda m: every[m[1] or m[2]], expr)


def queries(dashboard: dict[str, Any], values: dict[str, str]) -> list[tuple[str, str]]:
    """(panel title, expr with variables substituted) for every target of every panel."""
    return [
        (panel["title"], substitute(target["expr"], values))
        for panel in panels(dashboard)
        for target in panel["targets"]
    ]

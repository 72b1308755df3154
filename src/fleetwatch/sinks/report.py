"""The report: one self-contained HTML page of a replay, to attach to a mail or a ticket.

``fleetwatch report PATH... --out report.html`` writes it (``report_file.py``). Top to
bottom: the counts (findings by severity; files, lines and events read; unreadable
records by reader and reason), the incidents with their summaries, a timeline per
clock, and every finding with its evidence (``file:line``).

The timelines (``report_timeline.py``) have one row per affected GPU, and one for a
node whose findings name no GPU; findings are spans colored by severity, incidents
connectors from root to effects, events marks binned by kind (``timeline.py`` counts
them), so that the page of a fleet of 100 nodes stays small. Times are on the
findings' own clock: wall-clock in UTC, boot-clock as ``boot+Ns``.

Everything from input is data: each string is shown through ``one_line`` (no control
character, no bidi override, no lone surrogate) and ``html.escape`` (in text and in
attributes alike), and no string from input becomes markup, a script, a URL or a style:
links are the page's own ``#finding-N`` and ``#incident-N`` anchors, numbered here. The
page loads nothing: no script, its one stylesheet inline, and a Content-Security-Policy
that forbids every request (the stylesheet is allowed by its hash, so not even an
injected ``style`` attribute would apply).
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, Final

from fleetwatch.findings import Finding
from fleetwatch.sinks.report_timeline import (
    SEVERITY_NAMES,
    Drawn,
    Link,
    shown,
    timelines,
    times_of,
)
from fleetwatch.sinks.table import when
from fleetwatch.sinks.timeline import Timeline
from fleetwatch.sources import ReadStats

CSS: Final = files("fleetwatch.sinks").joinpath("report.css").read_text(encoding="utf-8")
_CSS_HASH: Final = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
CSP: Final = (
    f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; img-src data:; "
    "base-uri 'none'; form-action 'none'"
)
"""The page's Content-Security-Policy: no request of any kind, only its own stylesheet."""
if "</style" in CSS.lower():  # our own file, but a stray end tag would cut the page's style
    raise ValueError("report.css must not hold </style")


@dataclass(frozen=True)
class About:
    """What the page says of its own making (from the command line, not from input)."""

    inputs: tuple[str, ...]
    generated: str
    version: str
    scope: tuple[str, ...] = ()
    """How the events were narrowed (``since …``, ``only node …``), if they were."""


def render(
    findings: Sequence[Finding],
    incidents: Sequence[Mapping[str, Any]],
    timeline: Timeline,
    stats: ReadStats,
    about: About,
) -> str:
    """The report as one HTML document.

    ``findings`` in the order to list them (a replay's: most severe first);
    ``incidents`` in their JSON form (the incidents pass: root and effects by finding
    id); ``timeline`` the events' counts; ``stats`` what reading them counted.
    """
    numbers = {f.id: i for i, f in enumerate(findings)}
    linked = _Incidents(incidents, numbers)
    links = [
        Link(inc.number, inc.root, inc.effects, str(inc.data.get("summary", "")))
        for inc in linked.all
    ]
    drawings, drawn = timelines(findings, links, timeline)
    parts = [
        _head(len(findings)),
        _header(about),
        "<main>",
        _summary(findings, stats, timeline, drawn),
        _incident_list(linked),
        '<section id="timeline"><h2>Timeline</h2>',
        *(drawings or ['<p class="muted">No findings: nothing to draw.</p>']),
        "</section>",
    ]
    parts.append(_finding_list(findings, linked))
    parts.append("</main>")
    parts.append(
        f"<footer>fleetwatch {shown(about.version)} · generated {shown(about.generated)} · "
        "this page loads nothing and runs no script</footer>"
    )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _head(count: int) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{shown(CSP)}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>fleetwatch report: {count} finding(s)</title>\n"
        f"<style>{CSS}</style></head><body>"
    )


def _header(about: About) -> str:
    inputs = " ".join(f'<code class="tag">{shown(p)}</code>' for p in about.inputs)
    scope = f" · {shown('; '.join(about.scope))}" if about.scope else ""
    return (
        f"<header><h1>fleetwatch report</h1><p>{inputs}{scope}</p>"
        f"<p>generated {shown(about.generated)}</p></header>"
    )


# --- the counts ---------------------------------------------------------------------


def _summary(
    findings: Sequence[Finding], stats: ReadStats, timeline: Timeline, drawn: Drawn
) -> str:
    by_severity = {name: 0 for name in SEVERITY_NAMES}
    for f in findings:
        by_severity[str(f.severity)] += 1
    badges = "".join(
        f'<span class="badge sev-{name}">{n} {name}</span>' for name, n in by_severity.items() if n
    )
    parts = [
        '<section id="summary"><h2>Summary</h2>',
        f'<div class="counts"><strong>{len(findings)} finding(s)</strong>{badges}</div>',
        f"<p>Read {stats.files:,} file(s), {stats.lines:,} lines, {stats.events:,} events."
        f"{' No unreadable records.' if not stats.unreadable else ''}</p>",
    ]
    for title, counter, css in (
        ("Unreadable records", stats.unreadable, "unreadable"),
        ("Read but skipped (no value to keep)", stats.skipped, "skipped"),
    ):
        if not counter:
            continue
        rows = "".join(
            f'<tr><td>{shown(reader)}</td><td>{shown(reason)}</td><td class="n">{n:,}</td></tr>'
            for (reader, reason), n in sorted(counter.items())
        )
        total = sum(counter.values())
        parts.append(
            f'<h3>{title}: {total:,}</h3><table class="{css}"><tr><th>reader</th>'
            f'<th>reason</th><th class="n">records</th></tr>{rows}</table>'
        )
    if stats.file_nodes:
        named = ", ".join(
            f"<code>{shown(node)}</code> ({shown(name)})" for node, name in stats.file_nodes.items()
        )
        parts.append(
            f'<p class="muted">Records that name no host were given a node named after '
            f"their file: {named}.</p>"
        )
    note = (
        f"The timeline draws {drawn.on_rows:,} of the {timeline.events:,} events: those of "
        "the nodes and GPUs with findings"
    )
    if drawn.outside:
        note += f" ({drawn.outside:,} of them before or after its range, counted at the ends)"
    if timeline.untimed:
        note += f"; {timeline.untimed:,} events have no time to draw them at"
    if timeline.width_s > 1:
        note += f"; events counted in {timeline.width_s:g} s buckets"
    parts.append(f'<p class="muted">{note}.</p></section>')
    return "\n".join(parts)


# --- incidents ----------------------------------------------------------------------


@dataclass
class _Incident:
    number: int  # I1, I2, ... in the order given
    data: Mapping[str, Any]
    root: int | None  # index of the root finding, if it is in the report
    effects: list[int]  # indexes of the effects in the report
    missing: list[str]  # finding ids named but not in the report


class _Incidents:
    """The incidents, with their findings found by id; each finding's memberships."""

    def __init__(self, incidents: Sequence[Mapping[str, Any]], numbers: dict[str, int]) -> None:
        self.all: list[_Incident] = []
        self.of_finding: dict[int, list[tuple[_Incident, str]]] = {}
        for n, data in enumerate(incidents, start=1):
            root_id = data.get("root")
            effect_ids = data.get("effects") or []
            if not isinstance(effect_ids, list):
                effect_ids = []
            root = numbers.get(root_id) if isinstance(root_id, str) else None
            effects = [numbers[e] for e in effect_ids if isinstance(e, str) and e in numbers]
            named = [root_id, *effect_ids] if root_id is not None else effect_ids
            missing = [str(e) for e in named if not (isinstance(e, str) and e in numbers)]
            incident = _Incident(n, data, root, effects, missing)
            self.all.append(incident)
            if root is not None:
                self.of_finding.setdefault(root, []).append((incident, "root"))
            for effect in effects:
                self.of_finding.setdefault(effect, []).append((incident, "effect"))


def _severity_class(value: object) -> str:
    """A CSS class for a severity: only from our own names, never the input's text."""
    text = str(value)
    return f"sev-{text}" if text in SEVERITY_NAMES else "sev-unknown"


def _incident_list(linked: _Incidents) -> str:
    parts = ['<section id="incidents"><h2>Incidents</h2>']
    if not linked.all:
        parts.append('<p class="muted">No incidents: no findings linked cause to effect.</p>')
        parts.append("</section>")
        return "\n".join(parts)
    parts.append('<ol class="incidents">')
    for inc in linked.all:
        d = inc.data
        severity = d.get("severity", "")
        clock = d.get("clock")
        first, last = _number(d.get("first_ts")), _number(d.get("last_ts"))
        nodes = ", ".join(shown(n) for n in _strings(d.get("nodes")))
        root = _finding_ref(inc.root) if inc.root is not None else "not in this report"
        effects = ", ".join(_finding_ref(e) for e in inc.effects) or "none"
        missing = (
            f" · not in this report: {', '.join(f'<code>{shown(m)}</code>' for m in inc.missing)}"
            if inc.missing
            else ""
        )
        facts = [f"rule <code>{shown(d.get('rule', ''))}</code>"]
        if first is not None or last is not None:
            facts.append(shown(f"{when(first, clock)} → {when(last, clock)}"))
        if nodes:
            facts.append(nodes)
        facts.append(f"root {root} → effects {effects}{missing}")
        parts.append(
            f'<li id="incident-{inc.number}" class="{_severity_class(severity)}">'
            f'<strong>I{inc.number}</strong> <span class="badge {_severity_class(severity)}">'
            f"{shown(severity)}</span> <code>{shown(d.get('action', ''))}</code> · "
            f"{shown(d.get('root_cause', ''))} cause"
            f"<p>{shown(d.get('summary', ''))}</p>"
            f'<p class="muted">{" · ".join(facts)}</p></li>'
        )
    parts.append("</ol></section>")
    return "\n".join(parts)


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _finding_ref(index: int) -> str:
    return f'<a href="#finding-{index + 1}">F{index + 1}</a>'


# --- the findings -------------------------------------------------------------------

_EVIDENCE: Final = re.compile(r"(?P<where>\S.*?:\d+) (?P<rest>.*)", re.DOTALL)
"""An evidence line: ``file:line`` then the record (``kind fields text``)."""
_MORE: Final = re.compile(r"… (?P<n>\d[\d,]*) more")
"""The line a detector puts between the first records it kept and the last: how many
it did not keep."""


def _evidence(lines: Sequence[str]) -> str:
    """A finding's evidence: its records numbered as they come, and a line the detector
    left out records at ("… 40 more") as a gap between two lists, not an item: the
    records after it numbered on from the ones it stands for (1-3, … 40 more, 44-46)."""
    skipped = [int(m["n"].replace(",", "")) for line in lines if (m := _MORE.fullmatch(line))]
    wide = " wide" if len(str(len(lines) + sum(skipped))) > 4 else ""  # room for the numbers
    parts: list[str] = []
    items: list[str] = []
    number = 1  # the number of the next record

    def close() -> None:
        if items:
            start = number - len(items)
            begin = f' start="{start}"' if start > 1 else ""
            parts.append(f'<ol class="evidence{wide}"{begin}>{"".join(items)}</ol>')
            items.clear()

    for line in lines:
        more = _MORE.fullmatch(line)
        if more:
            close()
            parts.append(f'<p class="more{wide}">{shown(line)}</p>')
            number += int(more["n"].replace(",", ""))
            continue
        found = _EVIDENCE.fullmatch(line)
        if found:
            items.append(
                f'<li><code class="where">{shown(found["where"])}</code> '
                f"<code>{shown(found['rest'])}</code></li>"
            )
        else:
            items.append(f"<li><code>{shown(line)}</code></li>")
        number += 1
    close()
    return "".join(parts)


def _where(f: Finding) -> str:
    parts = [
        f.node or "",
        f"GPU {f.gpu}" if f.gpu is not None else "",
        f.pci or "",
        f"job {f.job}" if f.job is not None else "",
        f"rank {f.rank}" if f.rank is not None else "",
    ]
    return " · ".join(part for part in parts if part) or "(nowhere named)"


def _finding_list(findings: Sequence[Finding], linked: _Incidents) -> str:
    parts = ['<section id="findings"><h2>Findings</h2>']
    if not findings:
        parts.append('<p class="muted">None.</p>')
    for i, f in enumerate(findings):
        times = times_of(f)
        facts: list[tuple[str, str]] = [("detector", f"<code>{shown(f.detector)}</code>")]
        if times is not None:
            clock = "UTC" if f.clock == "wall" else "since boot" if f.clock == "boot" else ""
            facts.append(
                (
                    "when",
                    f"{shown(when(times[0], f.clock))} → {shown(when(times[1], f.clock))} {clock}",
                )
            )
        if f.boot_first_ts is not None:
            last = f.boot_last_ts if f.boot_last_ts is not None else f.boot_first_ts
            facts.append(
                (
                    "boot-clock records",
                    f"{shown(when(f.boot_first_ts, 'boot'))} → {shown(when(last, 'boot'))}",
                )
            )
        facts.append(("records", f"{f.count:,}"))
        for name in ("uuid", "serial", "pod", "namespace", "code", "status"):
            value = getattr(f, name)
            if value is not None:
                facts.append((name, f"<code>{shown(value)}</code>"))
        for inc, role in linked.of_finding.get(i, []):
            facts.append(("incident", f'<a href="#incident-{inc.number}">I{inc.number}</a> {role}'))
        facts.append(("id", f"<code>{shown(f.id)}</code>"))
        severity = f"sev-{f.severity}"
        parts.append(
            f'<article class="finding {severity}" id="finding-{i + 1}" '
            f'data-finding="{shown(f.id)}"><h3><span class="badge {severity}">{f.severity}</span>'
            f" F{i + 1} · <code>{shown(f.action)}</code> · {shown(_where(f))}</h3>"
            f"<p>{shown(f.summary)}</p>"
            '<dl class="facts">'
            + "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in facts)
            + "</dl>"
            + _evidence(f.evidence)
            + "</article>"
        )
    parts.append("</section>")
    return "\n".join(parts)

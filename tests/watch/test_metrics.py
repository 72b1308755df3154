"""/metrics: one ``fleetwatch_finding`` series per open finding, bounded, and safe for any
label value a log can hold."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fleetwatch.findings import Action, Finding, Severity
from fleetwatch.sinks.metrics import MAX_LABEL_CHARS, Metrics


def finding(n: int, node: str | None = "gpu-node-1", **kw: object) -> Finding:
    fields: dict[str, object] = {
        "id": f"hbm_ecc-{n}",
        "detector": "hbm_ecc",
        "severity": Severity.CRITICAL,
        "action": Action.RMA_GPU,
        "summary": "uncorrectable ECC",
        "first_ts": 100.0 + n,
        "last_ts": 100.0 + n,
        "node": node,
        "gpu": n,
        "pci": f"0000:{n:02x}:00.0",
    }
    fields.update(kw)
    return Finding(**fields)  # type: ignore[arg-type]


def scraped(metrics: Metrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """``name``'s samples as {sorted labels: value}, read back by the text parser."""
    page = generate_latest(metrics.registry).decode()
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
        if s.name == name
    }


def test_an_open_finding_is_one_series_and_leaves_when_it_resolves() -> None:
    metrics = Metrics()
    metrics.set_open([finding(3), finding(4, severity=Severity.WARNING, action=Action.NONE)])
    series = scraped(metrics, "fleetwatch_finding")
    assert series == {
        (("action", "rma_gpu"), ("detector", "hbm_ecc"), ("gpu", "3"), ("node", "gpu-node-1"),
         ("pci", "0000:03:00.0"), ("severity", "critical")): 1.0,
        (("action", "none"), ("detector", "hbm_ecc"), ("gpu", "4"), ("node", "gpu-node-1"),
         ("pci", "0000:04:00.0"), ("severity", "warning")): 1.0,
    }  # fmt: skip
    metrics.set_open([finding(4, severity=Severity.WARNING, action=Action.NONE)])
    assert [dict(k)["gpu"] for k in scraped(metrics, "fleetwatch_finding")] == ["4"]
    metrics.set_open([])
    assert scraped(metrics, "fleetwatch_finding") == {}
    assert scraped(metrics, "fleetwatch_findings_open") == {}


def test_findings_that_share_every_label_add_up() -> None:
    metrics = Metrics()
    jobs = [finding(n, node=None, gpu=None, pci=None, detector="nccl_hang") for n in (1, 2)]
    metrics.set_open(jobs)
    assert list(scraped(metrics, "fleetwatch_finding").values()) == [2.0]


def test_the_series_are_capped_most_severe_first_and_the_rest_counted() -> None:
    metrics = Metrics(max_finding_series=2)
    metrics.set_open(
        [
            finding(1, severity=Severity.WARNING),
            finding(2, severity=Severity.CRITICAL),
            finding(3, severity=Severity.ERROR),
        ]
    )
    kept = {dict(k)["severity"] for k in scraped(metrics, "fleetwatch_finding")}
    assert kept == {"critical", "error"}
    assert scraped(metrics, "fleetwatch_finding_series_dropped") == {(): 1.0}
    # the totals stay whole
    assert sum(scraped(metrics, "fleetwatch_findings_open").values()) == 3


def test_a_label_value_from_a_log_cannot_break_the_page_or_grow_without_bound() -> None:
    metrics = Metrics()
    odd = 'gpu"node\n17\udcff\\'  # a quote, a newline, an undecodable byte, a backslash
    metrics.set_open([finding(1, node=odd), finding(2, node="n" * 1000)])
    nodes = sorted(dict(k)["node"] for k in scraped(metrics, "fleetwatch_finding"))
    assert nodes[0] == 'gpu"node\\n17\\udcff\\\\'  # one line, valid UTF-8, read back whole
    assert len(nodes[1]) == MAX_LABEL_CHARS and nodes[1].endswith("…")

"""Kubernetes evictions and NotReady nodes, as JSON, watch stream, tables and kubelet logs."""

from __future__ import annotations

import calendar
import os
import shutil
from pathlib import Path

from tests.conftest import DATA, parse

K8S = DATA / "k8s"


def utc(*when: int) -> float:
    return float(calendar.timegm((*when,)))


def summary(events: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [
        (e["kind"], e["node"], e.get("namespace"), e.get("pod"), e.get("reason"), e.get("detail"))
        for e in events
    ]


def test_event_list_json_in_both_api_versions() -> None:
    events = parse(K8S / "events-list.json")
    assert summary(events) == [
        ("pod_evicted", "gpu-node-3", "ml", "llm-pretrain-1", "Evicted", "low on memory"),
        (
            "pod_evicted",
            "gpu-node-4",
            "default",
            "old-job-0",
            "Evicted",
            "low on ephemeral-storage",
        ),
        # the taint manager names no node: the earlier Scheduled event does
        ("pod_evicted", "gpu-node-3", "ml", "llm-pretrain-5", "TaintManagerEviction", None),
        ("node_not_ready", "gpu-node-9", None, None, "NodeNotReady", None),
        ("pod_evicted", "gpu-node-9", "ml", "llm-pretrain-7", "NodeControllerEviction", None),
        ("pod_evicted", "gpu-node-5", "ml", "trainer-2", "Evicted", "node condition DiskPressure"),
    ]  # "Cancelling deletion" is not an eviction
    assert events[0]["ts"] == utc(2024, 6, 4, 10, 12, 30)
    assert events[-1]["ts"] == utc(2024, 6, 4, 10, 15, 0) + 0.123456
    assert [e["line"] for e in events] == [18, 31, 44, 68, 80, 92]
    assert all(e["source"] == "k8s" for e in events)


def test_truncated_event_list_keeps_its_complete_items(tmp_path: Path) -> None:
    whole = (K8S / "events-list.json").read_bytes()
    cut = tmp_path / "events.json"
    cut.write_bytes(whole[: whole.index(b'"NodeNotReady"')])
    events = parse(cut)
    assert [e.get("pod") for e in events] == ["llm-pretrain-1", "old-job-0", "llm-pretrain-5"]
    assert events.stats.unreadable == {("json", "truncated json"): 1}


def test_watch_stream() -> None:
    events = parse(K8S / "watch.jsonl")
    assert summary(events) == [
        ("pod_evicted", "gpu-node-3", "ml", "llm-pretrain-2", "Evicted", "low on memory"),
        (
            "pod_evicted",
            "gpu-node-3",
            "ml",
            "llm-pretrain-3",
            "Evicted",
            "node condition MemoryPressure",
        ),
    ]
    assert [e["line"] for e in events] == [1, 3]
    assert events.stats.unreadable == {("json", "invalid json"): 1}


def test_kubectl_tables_count_ages_back_from_the_file_time(tmp_path: Path) -> None:
    captured = utc(2024, 6, 4, 10, 20, 0)
    paths = []
    for name in ("get-events.txt", "describe-pod.txt", "describe-node.txt"):
        path = tmp_path / name
        shutil.copy(K8S / name, path)
        os.utime(path, (captured, captured))
        paths.append(path)
    got = parse(paths[0])
    assert summary(got) == [
        ("pod_evicted", "gpu-node-6", "ml", "llm-pretrain-8", "Evicted", "low on memory"),
        ("pod_evicted", "get-events", "ml", "llm-pretrain-9", "TaintManagerEviction", None),
        ("node_not_ready", "gpu-node-6", None, None, "NodeNotReady", None),
    ]
    assert [e["ts"] for e in got] == [captured - 300, captured - 270, captured - 120]
    pod = parse(paths[1])
    assert summary(pod) == [
        ("pod_evicted", "gpu-node-12", "ml", "llm-pretrain-11", "Evicted", "low on memory"),
    ]
    assert pod[0]["ts"] == captured - 180 and pod[0]["line"] == 16
    node = parse(paths[2])
    assert summary(node) == [("node_not_ready", "gpu-node-13", None, None, "NodeNotReady", None)]


def test_kubelet_log_lines_in_old_and_new_wording() -> None:
    events = parse(K8S / "kubelet.syslog", year=2024)
    assert summary(events) == [
        ("pod_evicted", "gpu-node-3", "ml", "llm-pretrain-1", "Evicted", "low on memory"),
        ("xid", "gpu-node-3", None, None, None, events[1].get("detail")),
        (
            "pod_evicted",
            "gpu-node-3",
            "ml",
            "llm-pretrain-2",
            "Evicted",
            "low on ephemeral-storage",
        ),
        ("node_not_ready", "gpu-node-3", None, None, "NodeNotReady", None),
    ]
    assert events[0]["ts"] == utc(2024, 6, 4, 10, 12, 30)

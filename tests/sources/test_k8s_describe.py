"""``kubectl describe pod`` of an evicted pod: its status block is the eviction.

Real describes from public issues (tests/data/k8s/README.md cites each). The status
block tells no time of eviction (``Start Time`` is the pod's start), so an eviction
read from it has none; the describe's Events table, when it has the ``Evicted`` row,
is the eviction instead, with its age, and the pod is evicted once per describe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA, parse, parse_text

K8S = DATA / "k8s"


def evictions(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        tuple(e.get(k) for k in ("pod", "namespace", "node", "reason", "detail", "ts", "clock"))
        for e in events
        if e["kind"] == "pod_evicted"
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "describe-pod-evicted-memory.txt",
            (
                "proprietary-crawler-preemptive-79f7cbc6cf-rzck9",
                "proprietary",
                "gke-general-preemptible-40c94gb-pool-35dd7b4d-mv7w",  # "Node: name/" (no IP)
                "Evicted",
                "low on memory",
                None,
                "none",
            ),
        ),
        (
            "describe-pod-evicted-ephemeral-limit.txt",
            (
                "neuvector-scanner-pod-7468c8c8c8-26r4z",
                "neuvector",
                "gk3-autopilot-nvqa-1-pool-3-941aa2ea-mnx7",  # "Node: name/10.128.0.89"
                "Evicted",
                "ephemeral-storage limit",
                None,
                "none",
            ),
        ),
        (
            "describe-pod-evicted-wrapped.txt",  # the Message wrapped by the terminal
            (
                "treetracker-pgpool-598947fd8f-vzvkq",
                "pgpool",
                "cloud-services-node-pool-8ld4g",
                "Evicted",
                "low on memory",
                None,
                "none",
            ),
        ),
    ],
)
def test_the_status_block_of_an_evicted_pod_is_one_eviction(
    name: str, expected: tuple[Any, ...]
) -> None:
    events = parse(K8S / name)
    assert evictions(events) == [expected]
    assert events.stats.unreadable == {}


def test_two_describes_in_one_paste_and_one_cut_before_its_name() -> None:
    events = parse(K8S / "describe-pods-evicted-ephemeral-storage.txt")
    assert evictions(events) == [
        (
            "ebaogi-report-app-5dbc89ff58-zqsn2",
            "ebaogi",
            "xen15-142",
            "Evicted",
            "low on ephemeral-storage",
            None,
            "none",
        )
    ]
    # the first pod's describe was pasted from its Annotations on: whose, is not known
    assert events.stats.unreadable == {("k8s", "eviction without pod"): 1}


def test_a_describe_with_the_evicted_row_in_its_events_is_one_eviction_with_a_time() -> None:
    events = parse(K8S / "describe-pod.txt")
    got = evictions(events)
    assert len(got) == 1 and got[0][:5] == (
        "llm-pretrain-11",
        "ml",
        "gpu-node-12",
        "Evicted",
        "low on memory",
    )
    assert got[0][6] == "wall"  # the row's age, not the block's absence of a time


def test_a_real_block_followed_by_real_events_rows_counts_the_pod_once(tmp_path: Path) -> None:
    # a variant: neuvector's status block, then the Events rows of kubernetes#122160
    block = (K8S / "describe-pod-evicted-ephemeral-limit.txt").read_text()
    rows = (
        "Events:\n"
        "  Type     Reason               Age    From               Message\n"
        "  ----     ------               ----   ----               -------\n"
        "  Warning  Evicted              4m51s  kubelet            Pod ephemeral local storage"
        " usage exceeds the total limit of containers 5Ki.\n"
        "  Normal   Killing              4m51s  kubelet            Stopping container grow-test\n"
    )
    events = parse_text(tmp_path, block + rows, name="describe.txt")
    got = evictions(events)
    assert len(got) == 1
    assert got[0][:5] == (
        "neuvector-scanner-pod-7468c8c8c8-26r4z",
        "neuvector",
        "gk3-autopilot-nvqa-1-pool-3-941aa2ea-mnx7",
        "Evicted",
        "ephemeral-storage limit",
    )
    assert got[0][6] == "wall"


@pytest.mark.parametrize(
    "text",
    [
        "Reason:           Evicted\n" * 3_000,  # no describe around it
        "Name: a\nNamespace: b\n" + "Reason:           Evicted\n" * 3_000,
        "Name: a\nNamespace: b\nReason:           Evicted\nMessage:" + " x" * 200_000 + "\n",
    ],
)
def test_hostile_status_blocks_are_counted_or_read_in_linear_time(
    tmp_path: Path, text: str
) -> None:
    events = parse_text(tmp_path, text, name="hostile.txt")
    unreadable = sum(events.stats.unreadable.values())
    assert len(evictions(events)) + unreadable >= 1

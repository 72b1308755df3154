"""The Kubernetes events watch against a loopback server that speaks the watch protocol."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetwatch.events import EventBatch, concat
from fleetwatch.inputs.kube_watch import KubeSettings, KubeSource
from fleetwatch.sources import ReadOptions
from tests.inputs.fake_kube_api import FakeApiServer, evicted
from tests.watch.live import wait_for

pytestmark = pytest.mark.slow  # real processes and servers: not in `make verify`


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    yield server
    server.close()


class Running:
    """A KubeSource on a thread, recording what it delivers."""

    def __init__(self, source: KubeSource) -> None:
        self.source = source
        self.batches: list[EventBatch] = []
        self.positions: list[Any] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=source.run, args=(self.deliver, self.stop))
        self.thread.start()

    def deliver(self, batches: list[EventBatch], position: Any) -> None:
        self.batches += batches
        self.positions.append(position)

    def pods(self) -> list[tuple[str, str]]:
        # a copy: the source's thread may add batches while concat walks them
        batches = list(self.batches)
        if not batches:
            return []
        records = concat(batches).records()
        return [(r["pod"], r["kind"]) for r in records]

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


def source(api: FakeApiServer, tmp: Path, saved: Any = None) -> KubeSource:
    settings = KubeSettings(kubeconfig=str(api.kubeconfig(tmp)), watch_timeout_s=1)
    return KubeSource(settings, ReadOptions(), saved)


def test_list_then_watch_then_410_relists_without_reading_twice(
    api: FakeApiServer, tmp_path: Path
) -> None:
    api.add(evicted("trainer-0", "u0"))
    api.add(evicted("trainer-1", "u1"))
    run = Running(source(api, tmp_path))
    try:
        wait_for(lambda: len(run.pods()) == 2, what="the listed events")
        api.add(evicted("trainer-2", "u2"))
        wait_for(lambda: len(run.pods()) == 3, what="a watched event")
        api.compact()  # the watch ends and its version is gone: 410 on the next watch
        api.add(evicted("trainer-3", "u3"))
        api.add(evicted("trainer-0", "u0", count=2))  # the same Event, occurring again
        wait_for(lambda: len(run.pods()) == 5, what="the events after the relist")
    finally:
        run.halt()
    assert [pod for pod, _ in run.pods()] == [
        "trainer-0", "trainer-1", "trainer-2", "trainer-3", "trainer-0"
    ]  # fmt: skip
    assert {kind for _, kind in run.pods()} == {"pod_evicted"}
    assert api.gone >= 1 and api.lists == 2 and run.source.relists == 2
    assert run.source.stats.skipped[("k8s", "already read (relist)")] == 3


@pytest.mark.e2e  # a real watch process for seconds: make test-e2e
def test_a_restart_resumes_from_the_saved_resource_version(
    api: FakeApiServer, tmp_path: Path
) -> None:
    api.add(evicted("trainer-0", "u0"))
    first = Running(source(api, tmp_path))
    wait_for(lambda: len(first.pods()) == 1, what="the first event")
    first.halt()
    saved = first.positions[-1]
    api.add(evicted("trainer-1", "u1"))  # while fleetwatch was down
    again = Running(source(api, tmp_path, saved))
    try:
        wait_for(lambda: len(again.pods()) == 1, what="the event written while down")
    finally:
        again.halt()
    assert [pod for pod, _ in again.pods()] == ["trainer-1"]
    assert api.lists == 1  # resumed by watching, not by listing again


def test_a_relist_larger_than_a_batch_delivers_every_event(
    api: FakeApiServer, tmp_path: Path
) -> None:
    for i in range(1100):  # more than one batch (1024) of events in one list
        api.add(evicted(f"worker-{i}", f"w{i}"))
    run = Running(source(api, tmp_path))
    try:
        wait_for(lambda: len(run.pods()) == 1100, what="every listed event")
    finally:
        run.halt()
    assert len({pod for pod, _ in run.pods()}) == 1100

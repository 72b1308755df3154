""" "watching" means that a line written after it is read: a followed file takes its place
(the end of what it already holds) before the watch says so.

Seen in a fresh clone's CI run under load: the watch said "watching" while its file
source had not yet looked at the file, and the test's lines, written just after, were
skipped as history when it did.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from fleetwatch.events import EventBatch
from fleetwatch.inputs.follow import Follower
from fleetwatch.inputs.live import FileSettings, FileSource
from fleetwatch.sources import ReadOptions
from fleetwatch.watch.daemon import Watch
from tests.watch.live import wait_for
from tests.watch.test_watch_trust import xid79


def test_a_file_source_is_ready_once_it_has_looked_at_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "kern.log"
    log.write_text(xid79("gpu-node-1", "0000:41:00.0"))  # history: skipped
    entered, go = threading.Event(), threading.Event()
    real = Follower.poll

    def held_first(self: Follower) -> list[EventBatch]:
        entered.set()
        go.wait()
        return real(self)

    monkeypatch.setattr(Follower, "poll", held_first)
    source = FileSource(FileSettings(path=str(log), poll_s=0.01), ReadOptions(), None)
    got: list[EventBatch] = []
    stop = threading.Event()
    runner = threading.Thread(target=source.run, args=(lambda b, _: got.extend(b), stop))
    runner.start()
    try:
        assert entered.wait(10)
        assert not source.ready.is_set()  # looking, not yet in place
        go.set()
        assert source.ready.wait(10)
        with log.open("a") as out:
            out.write(xid79("gpu-node-2", "0000:41:00.0"))
        wait_for(lambda: sum(len(b) for b in got), what="the line written once ready")
    finally:
        stop.set()
        runner.join(10)
    nodes = {e["node"] for b in got for e in b.records()}
    assert nodes == {"gpu-node-2"}


class _SetOnThirdWait(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        if self.waits == 3:
            self.set()
        return self.is_set()


def test_the_banner_waits_for_the_sources_that_take_their_place() -> None:
    ready = _SetOnThirdWait()
    watch: Any = SimpleNamespace(sources=[SimpleNamespace(), SimpleNamespace(ready=ready)])
    Watch._wait_ready(watch, threading.Event())
    assert ready.is_set() and ready.waits == 3
    # a stop asked meanwhile ends the wait
    never = _SetOnThirdWait()
    stop = threading.Event()
    stop.set()
    Watch._wait_ready(SimpleNamespace(sources=[SimpleNamespace(ready=never)]), stop)  # type: ignore[arg-type]
    assert not never.is_set()

"""``--jobs``: inputs read in parallel processes give the events ``read_paths`` gives,
in the same order, with the same counts, and replay the same findings."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fleetwatch import config
from fleetwatch.events import FIELDS, EventBatch, concat
from fleetwatch.replay import replay
from fleetwatch.simulate import simulate
from fleetwatch.sources import ReadStats, parallel, read_paths
from fleetwatch.sources.context import Identities
from fleetwatch.sources.files import expand
from fleetwatch.sources.parallel import groups, read_parallel

ROOT = Path(__file__).resolve().parents[2]


def rows(batches: list[EventBatch]) -> list[tuple[Any, ...]]:
    """Every event as its values (string ids differ between string tables; text not)."""
    events = concat(batches)
    return [tuple(events.value(f, i) for f in FIELDS) for i in range(len(events))]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("parallel")
    for scenario in ("dbe-row-remap", "app-xid-job", "eviction-storm", "nccl-straggler"):
        simulate(scenario, root / scenario, nodes=2, lines_per_node=30)
    return [str(root), str(ROOT / "examples"), str(ROOT / "tests" / "data")]


def test_the_same_events_in_the_same_order_and_the_same_counts(
    fleet: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    judged: list[bool] = []
    diverged = parallel._diverged

    def counted(known: Identities, read: Any) -> bool:
        judged.append(diverged(known, read))
        return judged[-1]

    monkeypatch.setattr(parallel, "_diverged", counted)
    alone, together = ReadStats(), ReadStats()
    expected = rows(list(read_paths(fleet, stats=alone)))
    got = rows(list(read_parallel(fleet, stats=together, jobs=2, min_bytes=0)))
    # both ways exercised: a job's NCCL folder read again (its GPUs' UUIDs are in the
    # nodes' scrapes before it), the scenarios' same-named nodes not (their own UUIDs)
    assert 1 <= sum(judged) < len(judged) - 10
    assert len(got) == len(expected) > 1000 and got == expected
    assert together.summary() == alone.summary()
    assert together.boot_anchors == alone.boot_anchors
    assert together.file_nodes == alone.file_nodes


def test_replay_finds_the_same_with_two_jobs(
    fleet: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "MIN_BYTES", 0)  # in workers, small as it is
    configs = config.load(None)
    one = [f.to_json() for f in replay(fleet[:1], configs)]
    assert len(one) >= 4
    assert [f.to_json() for f in replay(fleet[:1], configs, jobs=2)] == one


def test_groups_are_runs_of_one_folder(fleet: list[str]) -> None:
    cut = groups(expand(fleet))
    assert len(cut) > 10
    for group in cut:
        assert len({item.path.parent for item in group if item.path is not None}) == 1
    folders = [group[0].path.parent for group in cut if group[0].path is not None]
    assert len(folders) == len(set(folders))  # each folder's files read together, once


def test_what_a_folder_holds_besides_logs_is_counted_not_read(tmp_path: Path) -> None:
    """A FIFO (opening it would wait for a writer), a symlink loop and a dangling link
    in a node's folder: each counted as unreadable, the logs beside them read."""
    import os

    for node in ("a", "b"):
        (tmp_path / node).mkdir()
        (tmp_path / node / "kern.log").write_bytes(
            (ROOT / "examples/app-xid31-job/gpu-node-21/kern.log").read_bytes()
        )
    os.mkfifo(tmp_path / "b" / "fifo.log")
    (tmp_path / "a" / "loop1").symlink_to("loop2")
    (tmp_path / "a" / "loop2").symlink_to("loop1")
    (tmp_path / "a" / "gone.log").symlink_to(tmp_path / "nowhere")
    for jobs in (1, 2):
        stats = ReadStats()
        assert (
            len(rows(list(read_parallel([str(tmp_path)], stats=stats, jobs=jobs, min_bytes=0)))) > 0
        )
        assert stats.unreadable == {("file", "cannot read"): 3, ("file", "not a regular file"): 1}


def test_a_small_input_is_read_in_this_process(
    fleet: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "ProcessPoolExecutor", None)  # a pool would fail
    assert len(list(read_parallel(fleet, jobs=8))) > 0  # under 16 MiB: no pool


def test_a_groups_batches_cross_the_pipe_bit_for_bit(fleet: list[str]) -> None:
    """Packed (each field one array, or one value where every row holds the same bits)
    and pickled, a group's batches come back the same: sizes, string tables, dtypes and
    bytes, -0.0 and NaN where they were; nothing is shared between two batches."""
    read = list(read_paths(fleet))
    edge = EventBatch(
        {name: np.resize(column, 3) for name, column in read[0].columns.items()},
        read[0].strings,
    )
    edge.columns["value"][:] = [0.0, -0.0, 0.0]  # alike as floats, not as bits
    edge.columns["ts"][:] = np.nan
    for batches in (read, [edge, *read[:2], edge], [edge], []):
        # the pool pickles it so: this process's own bytes, read back
        sent = pickle.dumps(parallel._Packed.of(batches))
        back = list(pickle.loads(sent).batches())  # noqa: S301
        assert [len(b) for b in back] == [len(b) for b in batches]
        for mine, theirs in zip(back, batches, strict=True):
            assert mine.strings == theirs.strings
            for name, column in theirs.columns.items():
                assert mine[name].dtype == column.dtype, name
                assert mine[name].tobytes() == column.tobytes(), name
        if len(back) > 1:  # writing one batch's column leaves the next one's alone
            before = back[1]["value"].tobytes()
            back[0]["value"][:] = 7.0
            assert back[1]["value"].tobytes() == before

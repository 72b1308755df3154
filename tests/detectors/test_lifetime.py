"""State with a lifetime: flush(now) forgets what now ends, and never changes a finding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bench.fleet_events import (
    GPUS_PER_NODE,
    RANKS_PER_JOB,
    START,
    fleet,
    make_batch,
    nccl_hang,
    nccl_init,
    scrape,
)

from fleetwatch import engine as engine_module
from fleetwatch.config import build, load
from fleetwatch.detectors import hbm_ecc, pcie_aer, pod_evicted, thermal_throttle, xid_correlation
from fleetwatch.detectors import nccl_hang as nccl
from fleetwatch.detectors.base import Detector, IncidentBook, Span
from fleetwatch.engine import Engine
from fleetwatch.events import BATCH_SIZE, EventBatch, concat
from fleetwatch.findings import Action, Severity
from fleetwatch.replay import Window, select
from fleetwatch.simulate import SCENARIOS, simulate
from tests.detectors.test_state import events_of

EXAMPLES = sorted(p for p in Path(__file__).parents[2].joinpath("examples").iterdir() if p.is_dir())


def replayed(events: EventBatch, window: int, flush: bool) -> tuple[list[dict[str, Any]], int]:
    """Every finding, in full, of ``events`` fed in ``window``s, and how many entries
    the flushes forgot; with ``flush``, the engine is flushed after every batch at the
    latest event time so far."""
    engine = Engine(build(load(None)))
    now = None
    forgot = 0
    for start in range(0, len(events), window):
        batch = events.take(slice(start, start + window))
        engine.process(batch)
        ts = batch["ts"][~np.isnan(batch["ts"])]
        if ts.size:
            now = float(ts.max()) if now is None else max(now, float(ts.max()))
        if flush and now is not None:
            held = sum(d.size() for d in engine.detectors)
            engine.flush(now)
            forgot += held - sum(d.size() for d in engine.detectors)
    return [f.to_json() for f in engine.finish()], forgot


def shifted_copies(events: EventBatch, shifts: tuple[float, ...]) -> EventBatch:
    """``events`` again at each shift of time, in time order: the same fleet, later."""
    copies = []
    for shift in shifts:
        copy = events.take(np.arange(len(events)))
        copy["ts"][:] += shift
        copies.append(copy)
    return select(concat(copies), Window())


def assert_flushing_changes_nothing(events: EventBatch, windows: tuple[int, ...]) -> int:
    """Replay ``events``, and them again later, with and without flushes; return how
    many entries the flushes forgot."""
    # 2 h later the books have closed; 4 days later every GPU's state is forgotten too
    later = shifted_copies(events, (0.0, 7200.0, 4 * 86400.0))
    forgotten = 0
    for replay_events in (events, later):
        for window in windows:
            plain, _ = replayed(replay_events, window, flush=False)
            assert plain, "nothing found: the comparison would prove nothing"
            found, forgot = replayed(replay_events, window, flush=True)
            assert found == plain
            forgotten += forgot
    return forgotten


@pytest.fixture
def sweep_always(monkeypatch: pytest.MonkeyPatch) -> None:
    """Engine.flush sweeps at every call, not every 10 s: the strictest test."""
    monkeypatch.setattr(engine_module, "FLUSH_EVERY_S", 0.0)


@pytest.mark.usefixtures("sweep_always")
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_flushing_as_time_passes_changes_no_finding_of_the_examples(example: Path) -> None:
    assert_flushing_changes_nothing(events_of(example), (BATCH_SIZE, 4))


@pytest.mark.slow
@pytest.mark.usefixtures("sweep_always")
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_flushing_as_time_passes_changes_no_finding_of_the_scenarios(
    tmp_path: Path, scenario: str
) -> None:
    simulate(scenario, tmp_path, seed=3, nodes=4, lines_per_node=400)
    assert assert_flushing_changes_nothing(events_of(tmp_path), (BATCH_SIZE, 64)) > 0


# --- what each detector forgets, and when ------------------------------------------


def xid(code: int, ts: float, clock: str = "wall", gpu: int = 0, detail: str = "") -> EventBatch:
    node = f"gpu-node-{gpu // GPUS_PER_NODE:07d}"
    return make_batch(
        1,
        kind="xid",
        ts=ts,
        clock=clock,
        source="kmsg",
        file=f"/var/log/{node}/kern.log",
        line=1,
        node=node,
        pci=f"0000:{0x18 + gpu % GPUS_PER_NODE:02x}:00.0",
        code=code,
        detail=detail or f"Xid {code}",
    )


def test_an_incident_is_forgotten_once_unchanged_for_its_gap() -> None:
    book = IncidentBook(gap_s=60.0)
    incident, _ = book.touch(("gpu",), Span(100.0, 100.0, "wall"), 1)
    assert incident.seen is None  # changed since the last flush
    assert book.close(1000.0) == [] and incident.seen == 1000.0  # stamped, kept
    assert book.close(1060.0) == []  # exactly the gap: kept
    assert book.current(("gpu",), Span(150.0, 150.0, "wall")) is incident
    assert book.current(("gpu",), Span(161.0, 161.0, "wall")) is None  # it would open a new one
    assert book.close(1060.5) == [incident] and book.open == {}


def test_boot_clock_incidents_live_on_the_flush_clock() -> None:
    # plain dmesg: seconds since boot, while watch flushes with wall time
    detector = xid_correlation.XidCorrelation()
    wall = 1_717_495_200.0
    for second in range(300):
        detector.process(xid(79, 1843.0 + second, clock="boot"))
        detector.flush(wall + second)
    (incident,) = detector.gpu.open.values()
    assert incident.count == 300  # one incident, not one per flush
    detector.flush(wall + 299 + 181)  # quiet for longer than gap_s (180 s)
    assert detector.gpu.open == {}


def test_xid_fatal_history_lives_for_the_rma_window() -> None:
    detector = xid_correlation.XidCorrelation()
    findings = []
    for k in range(5):  # five fatal incidents, 5 h apart: RMA on the fifth
        ts = START + k * 5 * 3600.0
        detector.flush(ts)
        findings += detector.process(xid(79, ts))
        detector.flush(ts + 1.0)
    assert [f.action for f in findings].count(Action.RMA_GPU) == 1
    detector.flush(START + 20 * 3600.0 + 86400.0)  # the last one's window has passed
    assert detector.seen and detector.fatal
    detector.flush(START + 20 * 3600.0 + 86400.0 + 10.0)
    assert detector.size() == 1  # only the RMA incident, kept for twice the window
    assert (detector.fatal, detector.identity, detector.seen) == ({}, {}, {})
    detector.flush(START + 20 * 3600.0 + 3 * 86400.0)
    assert detector.size() == 0


def test_an_rma_incident_grows_alike_with_and_without_flushes() -> None:
    # Fatal Xids (hours): five by 23 h make an RMA incident; a fatal 4.5 h after it
    # counts in the window of the five at 47.6 h, which extend that incident, 24.6 h
    # after it last changed: it must still be there.
    hours = (0.0, 1.0, 2.0, 3.0, 23.0, 27.5, 46.0, 47.2, 47.4, 47.6)
    plain, flushed = xid_correlation.XidCorrelation(), xid_correlation.XidCorrelation()
    seen: list[list[tuple[str, Action, int]]] = [[], []]
    for hour in hours:
        ts = START + hour * 3600.0
        flushed.flush(ts)
        for detector, found in ((plain, seen[0]), (flushed, seen[1])):
            found += [(f.id, f.action, f.count) for f in detector.process(xid(79, ts))]
        flushed.flush(ts + 1.0)
    assert seen[0] == seen[1]
    rma = [(id_, count) for id_, action, count in seen[1] if action == Action.RMA_GPU]
    assert len(rma) == 2 and rma[0][0] == rma[1][0]  # one incident, reported twice
    assert rma[1][1] == 5  # the five fatal Xids within the window at 47.6 h


def test_xid_45_counts_for_the_incident_it_names_only_while_it_is_open() -> None:
    detector = xid_correlation.XidCorrelation()
    detector.process(xid(79, START))
    soon = detector.process(xid(45, START + 60.0, detail="caused by previous Xid 79"))
    assert [f.code for f in soon] == [79]  # evidence for Xid 79's incident
    late = detector.process(xid(45, START + 600.0, detail="caused by previous Xid 79"))
    assert [f.code for f in late] == [45]  # Xid 79's incident had closed


def test_an_nccl_job_is_forgotten_after_a_day_without_records() -> None:
    detector = nccl.NcclHang()
    detector.process(nccl_init(np.arange(3)))  # untimed, as NCCL writes them
    detector.flush(START)
    detector.process(nccl_hang(np.asarray([1]), START + 600.0))  # job 1 hangs
    detector.flush(START + 601.0)
    assert detector.size() == 4  # three jobs, one incident
    detector.flush(START + 86400.0 + 1.0)
    assert sorted(detector.jobs) == ["/var/log/jobs/train-0000001"] and not detector.book.open
    detector.flush(START + 601.0 + 86400.0 + 1.0)
    assert detector.size() == 0


def test_gpu_state_goes_after_its_keep_time_and_thermal_judges_a_silent_gpu() -> None:
    gpus = np.arange(2 * GPUS_PER_NODE)
    detectors: list[tuple[float, Detector]] = [  # by the time their GPUs are kept
        (3600.0, thermal_throttle.ThermalThrottle()),
        (86400.0, pcie_aer.PcieAer()),
        (86400.0, xid_correlation.XidCorrelation()),
        (7 * 86400.0, hbm_ecc.HbmEcc()),
    ]
    engine = Engine([detector for _, detector in detectors])
    last = START + 270.0
    for step in range(10):  # 5 min of 30 s scrapes, the last at ``last``
        engine.process(scrape(gpus, START + 30.0 * step, step))
        engine.flush(START + 30.0 * step)
    judged = engine.flush(last + 301.0)  # silent for a window: judged now, not at the end
    assert [(f.detector, f.pci) for f in judged] == [("thermal_throttle", "0000:db:00.0")]
    engine.flush(last + 330.0)  # the judged incident, stamped
    for keep in sorted({keep for keep, _ in detectors}):
        engine.flush(last + keep - 30.0)
        assert all(d.size() > 0 for k, d in detectors if k >= keep)  # not yet
        engine.flush(last + keep + 30.0)
        for detector in [d for k, d in detectors if k == keep]:
            assert detector.size() == 0, detector.name
            assert detector.state() == type(detector)().state()  # as if never started


def test_pod_evicted_forgets_a_fault_once_no_eviction_can_be_its_impact() -> None:
    detector = pod_evicted.PodEvicted()
    detector.process(fleet(np.arange(3 * 41 * GPUS_PER_NODE), START, 0))
    detector.flush(START + 10.0)
    assert detector.faults and detector.book.open
    detector.flush(START + 10.0 + 901.0)
    assert detector.size() == 0


def test_state_saved_before_stamps_restores_and_is_forgotten(tmp_path: Path) -> None:
    engine = Engine(build(load(None)))
    gpus = np.arange(4 * GPUS_PER_NODE)
    for step in range(3):
        engine.process(fleet(gpus, START + 30.0 * step, step))
    engine.process(nccl_init(np.arange(4)))
    for detector in engine.detectors:
        old = _without_stamps(json.loads(json.dumps(detector.state())))
        again: Any = type(detector)()
        again.restore(old)  # what a checkpoint of the previous version holds
        assert again.size() == detector.size(), detector.name
        for days in (0, 8, 16):  # stamped; forgotten (windows judged); their incidents
            again.flush(START + 100.0 + days * 86400.0)
        assert again.size() == 0, detector.name


def _without_stamps(saved: Any) -> Any:
    """A state as the version before stamps saved it: no ``seen``, no stamp in tuples."""
    if isinstance(saved, list):
        return [_without_stamps(v) for v in saved]
    if not isinstance(saved, dict):
        return saved
    if "$tuple" in saved and len(saved["$tuple"]) == 3 and saved["$tuple"][2] is None:
        return {"$tuple": [_without_stamps(v) for v in saved["$tuple"][:2]]}
    return {k: _without_stamps(v) for k, v in saved.items() if k != "seen"}


def test_engine_flush_sweeps_every_10_s_and_returns_what_closing_changed() -> None:
    engine = Engine([thermal_throttle.ThermalThrottle()])
    hot = np.asarray([7])
    for step in range(6):
        engine.process(scrape(hot, START + 10.0 * step, step, kinds=("clock_event",)))
    assert engine.flush(START + 60.0) == []  # stamps the open window
    seconds = engine.seconds["thermal_throttle"]
    assert engine.flush(START + 400.0) != []  # a window later: judged, a finding
    assert engine.seconds["thermal_throttle"] > seconds  # so watch checkpoints it
    assert engine.flush(START + 405.0) == []  # within 10 s of the last sweep: no sweep
    (finding,) = engine.findings.values()
    assert (finding.severity, finding.action) == (Severity.WARNING, Action.CHECK_COOLING)


# --- bounded by what is live, not by all ever seen ----------------------------------

SHORT: dict[str, dict[str, float]] = {  # keep times of minutes, so a test sees many go
    "hbm_ecc": {"gap_s": 300.0, "forget_gpu_after_s": 300.0},
    "nccl_hang": {"gap_s": 300.0, "forget_job_after_s": 300.0},
    "pcie_aer": {"window_s": 300.0, "forget_gpu_after_s": 300.0},
    "pod_evicted": {"window_s": 300.0, "after_fault_s": 300.0},
    "thermal_throttle": {"window_s": 120.0, "forget_gpu_after_s": 300.0},
    "xid_correlation": {"node_window_s": 300.0, "rma_window_s": 300.0},
}
LONGEST_KEEP_S = 600.0  # an RMA incident: twice rma_window_s
ENTRIES_PER_ENTITY = 4  # per GPU or job: its series or job, stamp, window, incident
CHECKPOINTS = 8


def short_lived() -> list[Detector]:
    configs = load(None)
    for name, fields in SHORT.items():
        configs[name] = type(configs[name])(**{**configs[name].__dict__, **fields})
    return build(configs)


def churn(
    per_step: int, steps: int, step_s: float, live_steps: int, weigh: set[int]
) -> tuple[Engine, list[dict[str, tuple[int, int]]]]:
    """Feed a fleet where ``per_step`` new GPUs (and jobs on them) arrive every
    ``step_s``, each live for ``live_steps`` steps; return the engine and each
    detector's (entries, checkpoint bytes) at ``CHECKPOINTS`` points, the bytes
    weighed only at the points in ``weigh`` (the JSON takes a while), and the engine
    flushed only when some are.

    Each GPU is scraped once a step, a throttling one (1 in 50) every 10 s.
    """
    engine = Engine(short_lived())
    kinds = ("temperature", "clock_event", "ecc_corrected", "pcie_replay", "pcie_link")
    jobs = per_step // RANKS_PER_JOB  # each on 8 of the GPUs that arrive
    sizes: list[dict[str, tuple[int, int]]] = []
    for step in range(steps):
        t = START + step * step_s
        live = np.arange(max(step + 1 - live_steps, 0) * per_step, (step + 1) * per_step)
        hot = live[live % 50 == 7]
        batches = [fleet(live, t, step, kinds)]
        batches += [scrape(hot, t + 10.0 * k, step, kinds=("clock_event",)) for k in range(1, 6)]
        batches += [nccl_init(np.arange(step * jobs, (step + 1) * jobs))]
        batches += [nccl_hang(np.arange(step * jobs, (step + 1) * jobs), t + 50.0)]
        engine.process(select(concat(batches), Window()))
        if weigh:
            engine.flush(t + 59.0)
        if (step + 1) % (steps // CHECKPOINTS) == 0:
            weighed = len(sizes) in weigh
            sizes.append({d.name: (d.size(), weight(d, weighed)) for d in engine.detectors})
    return engine, sizes


def weight(detector: Detector, weighed: bool) -> int:
    """The bytes of ``detector``'s checkpoint (0 unless ``weighed``)."""
    return len(json.dumps(detector.state())) if weighed else 0


def assert_bounded(per_step: int, steps: int, step_s: float, live_steps: int) -> None:
    kept_steps = LONGEST_KEEP_S / step_s + live_steps + 1  # live, or within a keep time
    assert steps / (kept_steps + 1) > 5, "too short to tell the live from all seen"
    warm = next(i for i in range(CHECKPOINTS) if (i + 1) * steps / CHECKPOINTS > kept_steps)
    weigh = {warm, (warm + CHECKPOINTS) // 2, CHECKPOINTS - 1}
    engine, sizes = churn(per_step, steps, step_s, live_steps, weigh)
    for name in SHORT:
        entries = [s[name][0] for s in sizes]
        grown = [sizes[i][name][1] for i in sorted(weigh)]
        assert max(entries) <= ENTRIES_PER_ENTITY * per_step * kept_steps, (name, entries)
        # steady once warm, while the fleet seen grows: the state holds what is live,
        # not all that was seen
        assert max(grown) <= 1.5 * min(grown), (name, grown)
    end = START + steps * step_s
    for later in (1.0, 2.0, 3.0):  # and then the whole fleet goes quiet
        engine.flush(end + later * LONGEST_KEEP_S)
    for detector, fresh in zip(engine.detectors, short_lived(), strict=True):
        assert detector.state() == fresh.state(), detector.name  # as if never started


def test_state_stays_bounded_while_10_000_gpus_and_1_250_jobs_come_and_go() -> None:
    assert_bounded(per_step=100, steps=100, step_s=60.0, live_steps=2)


def test_without_flush_the_same_fleet_outgrows_the_bound() -> None:
    per_step, steps, step_s, live_steps = 100, 40, 60.0, 2
    _, sizes = churn(per_step, steps, step_s, live_steps, weigh=set())
    kept_steps = LONGEST_KEEP_S / step_s + live_steps + 1
    biggest = max(entries for entries, _ in sizes[-1].values())
    assert biggest > ENTRIES_PER_ENTITY * per_step * kept_steps


@pytest.mark.bench  # minutes: `make test-bench`, which CI runs
def test_state_stays_bounded_while_a_million_gpus_and_125_000_jobs_come_and_go() -> None:
    assert_bounded(per_step=20_000, steps=50, step_s=300.0, live_steps=1)

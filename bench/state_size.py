"""Detector state per 10,000 live GPUs and per 10,000 live NCCL jobs, in checkpoint bytes.

``python -m bench.state_size [--gpus 10000] [--jobs 10000] [--scrapes 10]
[--generations 2]`` feeds every detector (default thresholds) what a fleet of
``--gpus`` live GPUs emits (``bench.fleet_events``: a dcgm-exporter scrape every
30 s with pod labels, the faulty share's Xids, AER records and evictions) for
``--scrapes`` scrapes, and the ``Init COMPLETE`` records of ``--jobs`` 8-rank NCCL
jobs (1 in 20 hung), calling ``Engine.flush`` as the clock advances, as watch does.

It prints, per detector: the entries its state holds (``size()``), the bytes of its
JSON checkpoint (what watch writes to the store), bytes per live GPU or job, and the
time of one sweep (``flush``) over that state.

Then each further generation is a new fleet (other GPUs, other jobs) 8 days later,
past every keep time: with flush the state stays that of one fleet; without flush
(the engine before state had a lifetime) it holds every fleet ever seen.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from bench.fleet_events import GPUS_PER_NODE, START, fleet, nccl_hang, nccl_init
from fleetwatch.config import build, load
from fleetwatch.engine import Engine

SCRAPE_S = 30.0
GENERATION_S = 8 * 86400.0  # past the longest keep time (hbm_ecc: 7 days)


def feed(engines: list[tuple[Engine, bool]], gpus: int, jobs: int, scrapes: int, g: int) -> float:
    """Generation ``g`` of the fleet into each engine (flushed if its flag says so);
    return the clock at its end."""
    first = g * gpus
    live = np.arange(first, first + gpus)
    job_ids = np.arange(g * jobs, (g + 1) * jobs)
    start = START + g * GENERATION_S
    batches = [(start, nccl_init(job_ids))]
    for step in range(scrapes):
        batches.append((start + step * SCRAPE_S, fleet(live, start + step * SCRAPE_S, step)))
    batches.append((start + scrapes * SCRAPE_S, nccl_hang(job_ids, start + scrapes * SCRAPE_S)))
    for t, batch in batches:
        for engine, flushed in engines:
            engine.process(batch)
            if flushed:
                engine.flush(t)
    return start + scrapes * SCRAPE_S


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--scrapes", type=int, default=10)
    parser.add_argument("--generations", type=int, default=2)
    args = parser.parse_args()
    if args.gpus % GPUS_PER_NODE or args.gpus <= 0 or args.jobs <= 0 or args.scrapes <= 0:
        parser.error("--gpus must be a positive multiple of 8; --jobs, --scrapes positive")

    flushed, kept = Engine(build(load(None))), Engine(build(load(None)))
    end = feed([(flushed, True), (kept, False)], args.gpus, args.jobs, args.scrapes, 0)
    flushed.flush(end + 20.0)  # every entry stamped: the next sweep is a steady one
    print(
        f"{args.gpus:,} live GPUs, {args.jobs:,} live 8-rank NCCL jobs, "
        f"{args.scrapes} scrapes {SCRAPE_S:.0f} s apart (default thresholds)\n"
    )
    print(f"{'detector':18} {'entries':>9} {'state bytes':>12} {'per live':>14} {'sweep':>9}")
    for detector in flushed.detectors:
        started = time.perf_counter()
        detector.flush(end + 40.0)
        sweep_ms = (time.perf_counter() - started) * 1000
        size = len(json.dumps(detector.state()))
        per, what = (args.jobs, "job") if detector.name == "nccl_hang" else (args.gpus, "GPU")
        print(
            f"{detector.name:18} {detector.size():>9,} {size:>12,} "
            f"{size / per:>9,.0f} B/{what:3} {sweep_ms:>6.1f} ms"
        )
    total = sum(len(json.dumps(d.state())) for d in flushed.detectors)
    print(f"{'all':18} {'':>9} {total:>12,}")

    if args.generations > 1:
        print(f"\nafter {args.generations} fleets, each 8 days after the last:")
        for g in range(1, args.generations):
            end = feed([(flushed, True), (kept, False)], args.gpus, args.jobs, args.scrapes, g)
        flushed.flush(end + 20.0)
        for engine, how in ((flushed, "with flush"), (kept, "without flush")):
            total = sum(len(json.dumps(d.state())) for d in engine.detectors)
            entries = sum(d.size() for d in engine.detectors)
            print(f"  {how:14} {entries:>9,} entries {total:>12,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

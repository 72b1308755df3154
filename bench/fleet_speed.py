"""Fleet mode's speed: events/s through correlators, latency to the output stream, memory.

``python -m bench.fleet_speed`` (``make bench-fleet``) starts a throwaway
``redis-server`` on loopback and measures, in one run:

* **Throughput.** A simulated fleet (``bench.fleet_events``: every GPU's scrape, kernel
  records, evictions and NCCL jobs, a fixed share faulty) is cut into windows and split
  by family and shard exactly as ``fleetwatch agent`` does (``shards.split`` with the
  thin feed), so the correlators get what agents would send. With one correlator,
  then two, each in its own process and owning its fair share already, the entries
  are published and the clock runs until every shard has committed its newest entry.
  events/s = events published / that time. Publishing is part of it (an agent's
  cost; it is also reported alone). Two feeds: what file agents send (every family,
  so the correlators run the node family's detectors on every dcgm sample) and what
  live agents send (the node family stays on the nodes: the cluster and job families'
  events only); for the second, the fleet's events covered per second is reported
  too (every event the fleet made / the same time).
* **Latency.** One correlator idle on its shards; one entry at a time holding one
  Xid 79 of a new node (a new finding each time) is published, and the time until its
  ``new`` transition is in the output stream (``XREAD BLOCK``) is its latency.
  This is from an agent's publish.
* **Live latency.** A live agent (``fleetwatch agent --follow``) and a correlator, each
  its own process: an Xid 79 line of a new node is appended to the followed file, and
  the time until its ``new`` transition is in the output stream is measured: the
  agent's read (it polls every 0.1 s), its commit (at most every ``commit_interval_s``
  while nothing is open on the node), its sender, and the correlator.
* **Memory per shard.** The committed state's bytes per shard (``MEMORY USAGE`` of its
  key) and the correlator's peak RSS, after the throughput run.

Medians of ``--repeats`` runs, interleaved (1 worker, 2 workers, 1, 2, …).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import redis

from bench.fleet_events import GPUS_PER_NODE, START, fleet, make_batch, nccl_hang, nccl_init
from fleetwatch import config
from fleetwatch.events import BATCH_SIZE, EventBatch, concat
from fleetwatch.fleet import agent
from fleetwatch.fleet.check import committed
from fleetwatch.fleet.codec import decode
from fleetwatch.fleet.correlate import Correlator, Settings
from fleetwatch.fleet.ledger import Ledger
from fleetwatch.fleet.local import redis_server, wait_for
from fleetwatch.fleet.shards import families
from fleetwatch.fleet.transport import RedisStreams, connect

SCRAPE_S = 30.0
LEASE_MS = 5000
LIVE_FAMILIES = frozenset(families()) - {agent.NODE_FAMILY}  # what a live agent sends
PIPELINE = 64


@dataclass
class Entries:
    """What agents would publish: (shard, fields) entries, how many events they hold,
    and how many events the fleet made (more, when the node family stays on nodes)."""

    items: list[tuple[int, dict[str, bytes]]]
    events: int
    fleet_events: int


def agent_entries(
    gpus: int, scrapes: int, shards: int, only: Collection[str] | None = None
) -> Entries:
    """The simulated fleet's events, windowed and split as ``fleetwatch agent`` does
    (``only``: of these families, as live agents send them)."""
    live = np.arange(gpus)
    jobs = np.arange(max(1, gpus // 8))
    parts: list[EventBatch] = [nccl_init(jobs)]
    for step in range(scrapes):
        parts.append(fleet(live, START + step * SCRAPE_S, step))
    parts.append(nccl_hang(jobs, START + scrapes * SCRAPE_S))
    events = concat(parts)
    windows = (events.take(slice(i, i + BATCH_SIZE)) for i in range(0, len(events), BATCH_SIZE))
    items = list(agent.entries(windows, shards, "bench", only=only))
    sent = sum(len(decode(fields["batch"])) for _, fields in items)
    return Entries(items, sent, len(events))


def publish(transport: RedisStreams, items: list[tuple[int, dict[str, bytes]]]) -> None:
    for start in range(0, len(items), PIPELINE):
        transport.publish(items[start : start + PIPELINE])


def _worker(url: str, name: str, shards: int, stop: Any, peak_kb: Any) -> None:
    """A correlator in its own process (as ``fleetwatch correlate`` runs it)."""
    client = connect(url)
    worker = Correlator(
        name,
        RedisStreams(client),
        Ledger(client),
        config.load(None),
        Settings(shards, LEASE_MS),
    )
    worker.run(stop.is_set)
    peak_kb.value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class Workers:
    """``n`` correlator processes on one Redis, started and stopped together."""

    def __init__(self, url: str, n: int, shards: int) -> None:
        ctx = mp.get_context("fork")
        self.stop = ctx.Event()
        self.peaks = [ctx.Value("q", 0) for _ in range(n)]
        self.procs = [
            ctx.Process(target=_worker, args=(url, f"w{i}", shards, self.stop, self.peaks[i]))
            for i in range(n)
        ]
        for proc in self.procs:
            proc.start()

    def close(self) -> int:
        """Stop them; return the largest peak RSS (kB)."""
        self.stop.set()
        for proc in self.procs:
            proc.join(30)
        return max(int(p.value) for p in self.peaks)


def balanced(ledger: Ledger, workers: int, shards: int) -> Callable[[], bool]:
    """Every shard owned, each worker holding its fair share."""

    def check() -> bool:
        owners = [ledger.owner(s) for s in range(shards)]
        if any(o is None for o in owners):
            return False
        per = {o.split("/")[0] for o in owners if o}
        return len(per) == workers

    return check


def throughput(entries: Entries, workers: int, shards: int) -> tuple[float, float, int, float]:
    """(seconds from the first publish to the last commit, publish seconds, peak RSS kB,
    state bytes per shard) for one run."""
    with redis_server() as url:
        client = connect(url)
        transport, ledger = RedisStreams(client), Ledger(client)
        pool = Workers(url, workers, shards)
        try:
            wait_for(balanced(ledger, workers, shards), 60, "the workers to share the shards")
            started = time.perf_counter()
            publish(transport, entries.items)
            published = time.perf_counter() - started
            wait_for(lambda: committed(transport, ledger, shards), 600, "every commit")
            elapsed = time.perf_counter() - started
        finally:
            peak = pool.close()
        sizes = [client.memory_usage(ledger.key("state", s)) or 0 for s in range(shards)]
        return elapsed, published, peak, statistics.mean(sizes)


def xid79(node: int, t: float) -> EventBatch:
    """One Xid 79 of GPU 0 of ``node``, as the kernel reader gives it."""
    name = f"latency-node-{node:05d}"
    return make_batch(
        1,
        kind="xid",
        ts=t,
        clock="wall",
        source="kmsg",
        file=f"/var/log/fleet/{name}/kern.log",
        line=1,
        node=name,
        pci="0000:3b:00.0",
        gpu=0,
        code=79,
        pid=4242,
        detail="GPU has fallen off the bus.",
    )


def latency(samples: int, shards: int) -> list[float]:
    """Seconds from publishing one Xid 79 to its ``new`` transition, each sample."""
    out: list[float] = []
    with redis_server() as url:
        client = connect(url)
        transport, ledger = RedisStreams(client), Ledger(client)
        pool = Workers(url, 1, shards)
        reader: Any = redis.Redis.from_url(url)
        try:
            wait_for(balanced(ledger, 1, shards), 60, "the worker to own every shard")
            last = "$"
            for i in range(samples):
                items = list(agent.entries([xid79(i, START + i)], shards, "bench"))
                started = time.perf_counter()
                transport.publish(items)
                while True:
                    reply = reader.xread({ledger.key("out"): last}, block=10_000)
                    if not reply:
                        raise TimeoutError("no transition within 10 s")
                    last = reply[0][1][-1][0]
                    told = [json.loads(f[b"transition"]) for _, f in reply[0][1]]
                    if any(t["transition"] == "new" for t in told):
                        break
                out.append(time.perf_counter() - started)
        finally:
            pool.close()
            reader.close()
    return out


def live_latency(samples: int, shards: int) -> list[float]:
    """Seconds from appending one Xid 79 line (of a new node) to a file a live agent
    (``fleetwatch agent --follow``, its own process) follows, to the ``new``
    transition a correlator (its own process) puts in the output stream."""
    out: list[float] = []
    fleetwatch = [sys.executable, "-m", "fleetwatch"]
    with redis_server() as url, tempfile.TemporaryDirectory() as folder:
        client = connect(url)
        ledger = Ledger(client)
        log = Path(folder) / "kern.log"
        log.touch()
        common = ["--redis", url, "--shards", str(shards)]
        correlator = subprocess.Popen(
            [*fleetwatch, "correlate", *common, "--worker", "c1"], stderr=subprocess.DEVNULL
        )
        store = str(Path(folder) / "agent.db")
        # --from-start: the file is empty, and a line written before the agent follows
        # it is read all the same
        follow = ["--follow", str(log), "--from-start", "--store", store, "--quiet"]
        agent = subprocess.Popen(
            [*fleetwatch, "agent", *common, *follow], stderr=subprocess.DEVNULL
        )
        reader: Any = redis.Redis.from_url(url)
        try:
            wait_for(balanced(ledger, 1, shards), 60, "the worker to own every shard")
            last = "0-0"
            for i in range(samples + 1):  # the first: the agent following, not measured
                stamp = datetime.now(UTC).isoformat()
                line = (
                    f"{stamp} latency-node-{i:05d} kernel: NVRM: Xid (PCI:0000:3b:00): 79, "
                    "pid=4242, name=python, GPU has fallen off the bus.\n"
                )
                started = time.perf_counter()
                with log.open("a") as f:
                    f.write(line)
                deadline = started + 30
                while True:
                    reply = reader.xread({ledger.key("out"): last}, block=1000)
                    if not reply:
                        if time.perf_counter() > deadline:
                            raise TimeoutError("no transition within 30 s")
                        continue
                    last = reply[0][1][-1][0]
                    told = [json.loads(f[b"transition"]) for _, f in reply[0][1]]
                    if any(
                        t["transition"] == "new" and t.get("node") == f"latency-node-{i:05d}"
                        for t in told
                    ):
                        break
                if i:
                    out.append(time.perf_counter() - started)
        finally:
            for proc in (agent, correlator):
                proc.terminate()
                proc.wait(10)
            reader.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, default=8000, help="GPUs of the simulated fleet")
    parser.add_argument("--scrapes", type=int, default=8, help="scrapes of every GPU")
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency", type=int, default=200, help="latency samples")
    parser.add_argument("--live-latency", type=int, default=50, help="samples through a live agent")
    args = parser.parse_args()
    if args.gpus <= 0 or args.gpus % GPUS_PER_NODE or args.scrapes <= 0 or args.shards <= 0:
        parser.error("--gpus a positive multiple of 8; --scrapes and --shards positive")

    built = time.perf_counter()
    feeds = {
        "file agents": agent_entries(args.gpus, args.scrapes, args.shards),
        "live agents": agent_entries(args.gpus, args.scrapes, args.shards, LIVE_FAMILIES),
    }
    print(
        f"fleet: {args.gpus:,} GPUs, {args.scrapes} scrapes: "
        f"{feeds['file agents'].fleet_events:,} events; file agents send them all in "
        f"{len(feeds['file agents'].items):,} entries, live agents (the node family on "
        f"the node) {feeds['live agents'].events:,} in {len(feeds['live agents'].items):,} "
        f"entries, over {args.shards} shards (built in {time.perf_counter() - built:.1f} s)"
    )
    for feed, entries in feeds.items():
        runs: dict[int, list[tuple[float, float, int, float]]] = {1: [], 2: []}
        for _ in range(args.repeats):
            for workers in (1, 2):
                runs[workers].append(throughput(entries, workers, args.shards))
        rates = {}
        for workers, got in runs.items():
            elapsed = statistics.median(r[0] for r in got)
            rates[workers] = entries.events / elapsed
            covered = (
                f", the fleet's {entries.fleet_events / elapsed:,.0f} events/s covered"
                if entries.fleet_events != entries.events
                else ""
            )
            print(
                f"{feed}, {workers} correlator(s): {rates[workers]:,.0f} events/s through"
                f"{covered} (median of {len(got)}; publish alone "
                f"{statistics.median(r[1] for r in got):.2f} s), peak RSS "
                f"{max(r[2] for r in got) / 1024:.0f} MB per worker, state "
                f"{statistics.median(r[3] for r in got) / 1024:.1f} KiB per shard"
            )
        print(
            f"{feed}, two correlators / one: {rates[2] / rates[1]:.2f}x "
            "(this machine has 2 cores, Redis shares them)"
        )
    if args.latency:
        report("latency, publish -> new transition", latency(args.latency, args.shards))
    if args.live_latency:
        report(
            "latency, line appended at a live agent -> new transition",
            live_latency(args.live_latency, args.shards),
        )
    return 0


def report(what: str, samples: list[float]) -> None:
    times = sorted(samples)
    p50 = times[len(times) // 2]
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(
        f"{what}: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"worst {times[-1] * 1000:.1f} ms ({len(times)} samples)"
    )


if __name__ == "__main__":
    sys.exit(main())

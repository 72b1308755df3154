"""Crash consistency you can measure: ``kill -9`` a real watch, again and again.

``make chaos`` (``python -m tests.chaos``) writes the same input twice, in the same
rhythm: a mix of Xids (15 codes, 12 nodes, 3 GPUs each) appended step by step to one
kernel log per node, each step once the watch has committed the one before. The first
time one ``fleetwatch watch`` reads it without a break; the second time the watch is
killed with SIGKILL at random moments and started again at once, ``--kills`` times.
Some kills come right after a start (before its first commit), some right after an
append (while a commit or a webhook delivery is under way), the rest at any moment.
Both runs write a JSONL file and deliver to a loopback webhook receiver that checks
every signature.

Why the rhythm waits for each commit: which transitions a watch announces depends on
how its events are grouped. An Xid 92 and then an Xid 63 of one GPU read a second
apart are ``new`` and then ``escalated``; read together (a backlog after a restart,
or a slow poll) they are one ``new`` at the higher severity. That is by design, and
it is not what this harness measures: with every step committed before the next,
both runs group events alike, and only the kills can make them differ.

It prints ``chaos: K kills, T transitions, lost L, doubled D in JSONL; webhook lost W,
duplicate deliveries R`` and where the kills fell, and exits 1 unless L = D = W = 0.
Duplicate deliveries are allowed (the webhook is at least once) and reported.
Not part of ``make test``: it takes a few minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tests.watch.live import SECRET, Receiver, caught_up, transitions, wait_for

RUNNING: list[subprocess.Popen[bytes]] = []  # every watch started: none outlives the harness


def stop_all() -> None:
    for process in RUNNING:
        if process.poll() is None:
            process.kill()
            process.wait()


CODES = (13, 31, 43, 45, 48, 61, 62, 63, 64, 68, 74, 79, 92, 94, 119)
NODES = tuple(f"gpu-node-{i:02d}" for i in range(12))
PCIS = ("0000:1b:00", "0000:3b:00", "0000:5e:00")


def plan_input(seed: int, steps: int) -> list[tuple[str, str]]:
    """(node, lines) per step: one append to one node's kernel log, event time rising."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 30, 8, 0, tzinfo=UTC).timestamp()
    out = []
    for step in range(steps):
        node = rng.choice(NODES)
        lines: list[str] = []
        for _ in range(rng.randint(1, 3)):
            ts = datetime.fromtimestamp(start + step * 40 + len(lines), UTC)
            code, pci = rng.choice(CODES), rng.choice(PCIS)
            lines.append(
                f"{ts.isoformat()} {node} kernel: NVRM: Xid (PCI:{pci}): {code}, "
                f"pid={1000 + step}, name=python, chaos step {step}\n"
            )
        out.append((node, "".join(lines)))
    return out


@dataclass
class Run:
    """One watch's files and its receiver."""

    root: Path
    receiver: Receiver = field(default_factory=Receiver)

    def __post_init__(self) -> None:
        self.logs = self.root / "logs"
        self.logs.mkdir(parents=True)
        self.store = self.root / "watch.db"
        self.jsonl = self.root / "findings.jsonl"
        self.receiver.up()

    pause_in_commit_s = 0.0  # FLEETWATCH_CHAOS_COMMIT_PAUSE_S: widens a commit's window

    def start(self) -> subprocess.Popen[bytes]:
        self.started = time.time()
        config = self.root / "watch.toml"
        config.write_text("[watch]\ncommit_interval_s = 0.1\n")
        command = [sys.executable, "-m", "fleetwatch", "watch", "--quiet", "--config", str(config),
                   "--follow", str(self.logs), "--from-start", "--store", str(self.store),
                   "--jsonl", str(self.jsonl), "--webhook", self.receiver.url]  # fmt: skip
        env = {
            **os.environ,
            "FLEETWATCH_WEBHOOK_SECRET": SECRET,
            "FLEETWATCH_CHAOS_COMMIT_PAUSE_S": str(self.pause_in_commit_s),
        }
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        RUNNING.append(process)
        return process

    def append(self, node: str, lines: str) -> None:
        path = self.logs / node / "kern.log"
        path.parent.mkdir(exist_ok=True)
        with path.open("a") as out:
            out.write(lines)

    def committed(self) -> None:
        """Wait until the watch committed everything written so far (the rhythm)."""
        wait_for(lambda: caught_up(self.store, self.logs), timeout=120, what="a commit")

    def settle(self, process: subprocess.Popen[bytes]) -> None:
        """Wait until everything is read, committed and delivered (or dead); then stop."""
        wait_for(lambda: caught_up(self.store, self.logs), timeout=120, what="catching up")
        wait_for(lambda: self.outbox_empty(), timeout=120, what="the outbox to empty")
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        self.receiver.down()

    def outbox_empty(self) -> bool:
        with contextlib.closing(sqlite3.connect(self.store, timeout=5)) as db:
            return bool(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0)

    def moment(self) -> str:
        """Where a kill just fell, as far as the files tell."""
        wal = self.store.with_name(self.store.name + "-wal")
        if not wal.exists() or wal.stat().st_mtime < self.started:
            return "before the process's first commit"
        with contextlib.closing(sqlite3.connect(self.store, timeout=5)) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'jsonl_bytes'").fetchone()
        size = self.jsonl.stat().st_size if self.jsonl.exists() else 0
        if size > int(row[0]):
            return "inside a commit (JSONL written, store not yet)"
        if self.receiver.in_flight:
            return "during a webhook delivery"
        return "between commits"


def announced(jsonl: Path) -> set[tuple[str, str]]:
    """(id, transition) of the transitions that were announced (not silenced, flapping)."""
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    return {(r["id"], r["transition"]) for r in records if "quiet" not in r}


def reference(root: Path, steps: list[tuple[str, str]]) -> Run:
    run = Run(root)
    process = run.start()
    for node, lines in steps:
        run.append(node, lines)
        run.committed()
    run.settle(process)
    return run


def chaos(
    root: Path, steps: list[tuple[str, str]], kills: int, seed: int
) -> tuple[Run, Counter[str]]:
    """The same input, the watch killed ``kills`` times; settled once it is all read."""
    rng = random.Random(seed + 1)
    run = Run(root)
    run.receiver.delay_s = 0.05  # a delivery takes a moment, so kills fall inside some
    run.pause_in_commit_s = 0.05  # and so does a commit
    at_step = Counter(rng.randrange(len(steps)) for _ in range(kills))
    moments: Counter[str] = Counter()
    process = run.start()
    for i, (node, lines) in enumerate(steps):
        run.append(node, lines)
        for _ in range(at_step[i]):
            style = rng.random()
            if style < 0.25:  # right after a start: before its first commit, often
                process.send_signal(signal.SIGKILL)
                process.wait()
                process = run.start()
                time.sleep(rng.uniform(0.0, 0.6))
            elif style < 0.6:  # right after an append: inside a commit or a delivery
                time.sleep(rng.uniform(0.0, 0.3))
            else:
                time.sleep(rng.uniform(0.0, 1.0))
            moments[run.moment()] += 1
            process.send_signal(signal.SIGKILL)
            process.wait()
            process = run.start()
        run.committed()
    run.settle(process)
    return run, moments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the runs' files, and say where")
    args = parser.parse_args(argv)
    steps = plan_input(args.seed, args.steps)
    with contextlib.ExitStack() as cleanup:
        tmp = tempfile.mkdtemp(prefix="fleetwatch-chaos-")
        if args.keep:
            print(f"chaos: files in {tmp}")
        else:
            cleanup.callback(shutil.rmtree, tmp, ignore_errors=True)
        cleanup.callback(stop_all)  # first, before the files go
        started = time.monotonic()
        ref = reference(Path(tmp) / "reference", steps)
        expected = Counter(transitions(ref.jsonl))
        run, moments = chaos(Path(tmp) / "chaos", steps, args.kills, args.seed)
        got = Counter(transitions(run.jsonl))
        lost = sum((expected - got).values())
        # an id may escalate twice in both runs: doubled is what the killed run told more often
        doubled = sum(n - expected[k] for k, n in got.items() if k in expected and n > expected[k])
        wanted = announced(ref.jsonl)
        delivered = Counter((r["id"], r["transition"]) for r in run.receiver.received)
        webhook_lost = len(wanted - set(delivered))
        duplicates = sum(delivered.values()) - len(delivered)
        kills = sum(moments.values())
        print(
            f"chaos: {kills} kills, {len(expected)} transitions, lost {lost}, doubled "
            f"{doubled} in JSONL; webhook lost {webhook_lost}, duplicate deliveries "
            f"{duplicates}"
        )
        for where, n in moments.most_common():
            print(f"  kills {where}: {n}")
        extra = sum(n for k, n in got.items() if k not in expected)
        print(
            f"  {extra} transition(s) only in the killed run; bad signatures "
            f"{run.receiver.bad_signatures}; {time.monotonic() - started:.0f} s"
        )
        for (fid, kind), n in sorted((expected - got).items())[:10]:
            print(f"  lost: {fid} {kind} x{n}")
        for (fid, kind), n in sorted(got.items()):
            if (fid, kind) not in expected:
                print(f"  only in the killed run: {fid} {kind} x{n}")
        for (fid, kind), n in sorted(got.items()):
            if (fid, kind) in expected and n > expected[fid, kind]:
                print(f"  doubled: {fid} {kind} x{n}, x{expected[fid, kind]} without kills")
        for fid, kind in sorted(wanted - set(delivered))[:10]:
            print(f"  webhook lost: {fid} {kind}")
        dead = run.store.parent / "fleetwatch-dead-letter.jsonl"
        if dead.exists():
            print(f"  dead letters: {len(dead.read_text().splitlines())}")
    return 0 if lost == doubled == webhook_lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Gate 2: a planted slowdown fails; identical code and noise do not."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bench.delta import CALLGRIND, compare, compare_instructions, dump_totals

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def noisy(center: float, n: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(x) for x in center * (1 + rng.normal(0, 0.03, n))]


def test_a_planted_30_percent_slowdown_is_caught() -> None:
    rows, failures = compare(
        {"bench_x@1024": noisy(130, 5, 1)},
        {"bench_x@1024": noisy(100, 5, 2)},
        threshold=0.10,
        alpha=0.05,
    )
    assert len(failures) == 1 and failures[0].startswith("SLOWER bench_x@1024: +")
    assert rows[0][-1] == "SLOWER"


def test_identical_samples_and_small_drift_pass() -> None:
    same = noisy(100, 5, 3)
    assert compare({"b@16": same}, {"b@16": list(same)}, 0.10, 0.05)[1] == []
    # 4 % slower every time is significant, but under the threshold: not a failure
    drift = [x * 1.04 for x in noisy(100, 5, 4)]
    assert compare({"b@16": drift}, {"b@16": noisy(100, 5, 4)}, 0.10, 0.05)[1] == []


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.delta", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.bench  # measures every benchmark, A/B: minutes
def test_a_baseline_30_percent_faster_than_now_fails_end_to_end(tmp_path: Path) -> None:
    written = tmp_path / "baseline.json"
    done = run("--write-baseline", "--baseline", str(written), "--samples", "3")
    assert done.returncode == 0, done.stderr
    saved = json.loads(written.read_text())
    # plant it: the baseline claims every benchmark ran 30 % faster than it does, with
    # enough samples that Holm's correction over every benchmark can reach significance
    saved["samples"] = {
        k: [float(np.median(vs)) / 1.3 * (1 + 0.002 * i) for i in range(8)]
        for k, vs in saved["samples"].items()
    }
    written.write_text(json.dumps(saved))
    done = run("--baseline", str(written), "--samples", "5")
    assert done.returncode == 1, done.stdout
    slower = [line for line in done.stdout.splitlines() if line.startswith("SLOWER bench_")]
    assert slower, done.stdout  # a planted 30 % slowdown is found, whichever benchmarks


def test_a_revision_that_cannot_be_had_is_a_report_not_a_pass() -> None:
    done = run("--against", "no-such-revision-anywhere", "--samples", "3")
    assert done.returncode == 0
    assert done.stdout.startswith("delta: no baseline:") and "not compared" in done.stdout
    missing = run("--baseline", "/no/such/baseline.json", "--samples", "3")
    assert missing.returncode == 0 and "no baseline file" in missing.stdout


def test_an_instruction_rise_above_the_threshold_fails_and_noise_does_not() -> None:
    base = {"bench_a@1024": 1000.0, "bench_b@16": 2000.0}
    rows, failures = compare_instructions(
        {"bench_a@1024": 1300.0, "bench_b@16": 2006.0, "bench_c@1": 5.0}, base, 0.10
    )
    assert failures == ["SLOWER bench_a@1024: +30.0% instructions per event"]
    assert [row[-1] for row in rows] == ["SLOWER", "ok", "new"]


@pytest.mark.bench  # under callgrind: tens of seconds
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_callgrind_counts_just_the_measured_calls_and_the_same_each_run(tmp_path: Path) -> None:
    # Two spans, one doing 100x the loop of the other; what runs outside them is not counted.
    script = (
        "import alloccount\n"
        "def loop(n):\n"
        "    t = 0\n"
        "    for i in range(n): t += i\n"
        "loop(300_000)\n"
        "alloccount.measured(lambda: loop(1_000))\n"
        "alloccount.measured(lambda: loop(100_000))\n"
    )
    counts = []
    for run_no in range(2):
        out = tmp_path / str(run_no)
        out.mkdir()
        subprocess.run(
            [
                *CALLGRIND,
                f"--callgrind-out-file={out / 'callgrind.out'}",
                sys.executable,
                "-c",
                script,
            ],
            check=True,
            capture_output=True,
            env={"PYTHONHASHSEED": "0", "PATH": "/usr/bin:/bin"},
            timeout=300,
        )
        counts.append(dump_totals(out, 2))
    small, large = counts[0]
    assert 50 < large / small < 150
    assert abs(counts[1][0] - small) / small < 0.01 and abs(counts[1][1] - large) / large < 0.01

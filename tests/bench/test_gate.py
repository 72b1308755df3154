"""Gate 1 itself: breaches, fail-closed cases and the ratchet, run as the real command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
REGISTRY = (REPO / "bench" / "registry.toml").read_text()
CHEAP = "bench_xid_correlation"  # measured at window 16 only: seconds, not minutes


def gate(registry: Path, *args: str, repo: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.gate",
            "allocs",
            "--registry",
            str(registry),
            "--repo",
            str(repo),
            *args,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def with_ceiling(text: str, name: str, window: int, ceiling: str, reason: str) -> str:
    pattern = re.compile(
        rf'(name = "{name}"\nwindow = {window}\nceiling = )[^\n]+(\nreason = )"[^"]*"'
    )
    return pattern.sub(lambda m: f'{m.group(1)}{ceiling}{m.group(2)}"{reason}"', text)


def only_window_16(registry: Path) -> list[str]:
    return ["--only", CHEAP, "--against", "no-such-revision"]


@pytest.mark.bench  # measures in fresh processes: tens of seconds
def test_the_shipped_registry_passes_for_a_measured_row(tmp_path: Path) -> None:
    path = tmp_path / "registry.toml"
    path.write_text(REGISTRY)
    done = gate(path, *only_window_16(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS" in done.stdout and "ratchet: no registry at no-such-revision" in done.stdout


@pytest.mark.bench  # measures in fresh processes: tens of seconds
def test_a_ceiling_below_the_measurement_is_a_breach(tmp_path: Path) -> None:
    path = tmp_path / "registry.toml"
    path.write_text(with_ceiling(REGISTRY, CHEAP, 16, "0.5", "tightened in a test"))
    done = gate(path, *only_window_16(path))
    assert done.returncode == 1
    assert f"BREACH {CHEAP} (window 16)" in done.stdout


def test_a_registered_benchmark_that_does_not_exist_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "registry.toml"
    path.write_text(
        REGISTRY + '\n[[benchmark]]\nname = "bench_nothing"\nwindow = 1024\nceiling = 1\n'
    )
    done = gate(path, "--only", "bench_nothing")
    assert done.returncode == 2
    assert (
        "bench_nothing at window 1024 is registered but no benchmark produced a measurement"
        in done.stderr
    )


def test_a_malformed_registry_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "registry.toml"
    for text in (
        "[[benchmark]\nname=",
        '[[benchmark]]\nname = "x"\nwindow = 0\nceiling = 1\n',
        '[[benchmark]]\nname = "x"\nwindow = 16\nceiling = "low"\n',
        "title = 'none'\n",
    ):
        path.write_text(text)
        done = gate(path)
        assert done.returncode == 2, text
        assert done.stderr.startswith("bench-allocs-check: ")


def test_a_detector_without_a_row_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "registry.toml"
    text = re.sub(
        r'\[\[benchmark\]\]\nname = "bench_pod_evicted"\nwindow = 1024\n[^\[]*', "", REGISTRY
    )
    path.write_text(text)
    done = gate(path)
    assert done.returncode == 2
    assert "detector pod_evicted has no registry row" in done.stderr


@pytest.mark.bench  # measures in fresh processes: tens of seconds
def test_a_ceiling_that_rose_without_a_new_reason_fails_the_ratchet(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "bench").mkdir(parents=True)
    path = repo / "bench" / "registry.toml"
    path.write_text(REGISTRY)
    for args in (
        ["init", "-q"],
        ["add", "."],
        ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "registry"],
    ):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    old = re.search(
        rf'name = "{CHEAP}"\nwindow = 16\nceiling = ([^\n]+)\nreason = "([^"]*)"', REGISTRY
    )
    assert old is not None
    raised = REGISTRY.replace(
        f'name = "{CHEAP}"\nwindow = 16\nceiling = {old[1]}\n',
        f'name = "{CHEAP}"\nwindow = 16\nceiling = {float(old[1]) * 2:g}\n',
    )
    path.write_text(raised)
    done = gate(path, "--only", CHEAP, "--against", "HEAD", repo=repo)
    assert done.returncode == 1
    assert f"RATCHET {CHEAP} (window 16): the ceiling rose" in done.stdout
    path.write_text(
        with_ceiling(
            REGISTRY,
            CHEAP,
            16,
            f"{float(old[1]) * 2:g}",
            "live mode feeds windows of 16 with more fields",
        )
    )
    done = gate(path, "--only", CHEAP, "--against", "HEAD", repo=repo)
    assert done.returncode == 0, done.stdout

"""``fleetwatch watch`` as a user runs it: usage errors, silences, resolution, a failing source."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from fleetwatch.actions.breaker import BreakerConfig
from fleetwatch.actions.slurm import SlurmConfig
from fleetwatch.inputs.kmsg_live import KmsgSettings
from fleetwatch.inputs.kube_watch import KubeSettings
from fleetwatch.inputs.live import FileSettings
from fleetwatch.inputs.nvml import NvmlSettings
from fleetwatch.inputs.scrape import ScrapeSettings
from fleetwatch.lifecycle import LifecycleConfig
from fleetwatch.sinks.webhook import WebhookConfig
from fleetwatch.store import Commit, Store
from fleetwatch.watch import MetricsSettings, WatchSettings, load_plan
from tests.watch.live import SECRET, Receiver, Watcher, transitions, wait_for

pytestmark = pytest.mark.slow  # real processes and servers: not in `make verify`

XID79 = (Path(__file__).parent.parent.parent / "examples" / "xid79-fallen-off-bus"
         / "gpu-node-17" / "dmesg.txt").read_text()  # fmt: skip


def watch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetwatch", "watch", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **{k: v for k, v in os.environ.items() if k != "FLEETWATCH_WEBHOOK_SECRET"},
            **(env or {}),
        },
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "config", "message"),
    [
        ((), None, "nothing to watch"),
        (("--follow", "x", "--webhook", "http://127.0.0.1:9/h"), None, "FLEETWATCH_WEBHOOK_SECRET"),
        (("--follow", "x", "--webhook", "ftp://h/"), None, "http(s) URL"),
        (("--follow", "x"), "[watch]\nbogus = 1\n", "unknown setting watch.bogus"),
        (("--follow", "x"), "[watch]\nresolve_after_s = -5\n", "must be positive"),
        (("--follow", "x"), "[[watch.files]]\nfrom_start = true\n", "needs a path"),
        (("--follow", "x"), "[[watch.silence]]\nnode = 'a'\nuntil = 'soon'\n", "date-time"),
        (("--follow", "x", "--silence", "rack=7"), None, "--silence"),
        (("--follow", "x", "--dcgm", "127.0.0.1:9400"), None, "http(s) URL"),
        # what no retry can fix is said at start, not retried for ever
        (("--follow", "/nonexistent-fleetwatch/kern.log"), None, "nor a folder to wait in"),
        (("--kubeconfig", "/nonexistent-fleetwatch/kubeconfig"), None, "kubeconfig"),
        (
            ("--kmsg",),
            "[watch.kmsg]\ndevice = '/nonexistent-fleetwatch/kmsg'\n"
            "journalctl = '/nonexistent-fleetwatch/journalctl'\n",
            "no /nonexistent-fleetwatch/journalctl to read the journal with",
        ),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], config: str | None, message: str
) -> None:
    extra: tuple[str, ...] = ()
    if config is not None:
        (tmp_path / "f.toml").write_text(config)
        extra = ("--config", str(tmp_path / "f.toml"))
    done = watch(*args, *extra, "--store", str(tmp_path / "w.db"))
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_store_from_an_unreadable_state_is_one_line_and_exit_2(tmp_path: Path) -> None:
    store = tmp_path / "w.db"
    Store(store).commit(Commit([], {"hbm_ecc": {"$nonsense": 1}}, {}, [], {}))
    done = watch("--follow", str(tmp_path / "logs"), "--store", str(store))
    assert done.returncode == 2
    assert "cannot read" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_nvml_where_it_cannot_start_is_one_line_and_exit_2(tmp_path: Path) -> None:
    import pynvml

    with contextlib.suppress(Exception):  # no driver here: the case under test
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        pytest.skip("NVML works on this machine")
    done = watch("--nvml", "--store", str(tmp_path / "w.db"))
    assert done.returncode == 2
    assert "--nvml: NVML cannot start here" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_damaged_store_is_one_line_and_exit_2(tmp_path: Path) -> None:
    store = tmp_path / "w.db"
    Store(store).commit(Commit([], {"hbm_ecc": {"x": "y" * 50_000}}, {}, [], {}))
    data = bytearray(store.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4096] = os.urandom(4096)  # random bytes mid-file
    store.write_bytes(bytes(data))
    done = watch("--follow", str(tmp_path / "logs"), "--store", str(store))
    assert done.returncode == 2, done.stderr
    assert "w.db" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_store_of_a_newer_schema_is_one_line_and_exit_2(tmp_path: Path) -> None:
    store = tmp_path / "w.db"
    Store(store).close()
    with sqlite3.connect(store) as db:
        db.execute("PRAGMA user_version = 99")
    done = watch("--follow", str(tmp_path / "logs"), "--store", str(store))
    assert done.returncode == 2
    assert "newer fleetwatch" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_taken_metrics_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = watch("--follow", str(tmp_path), "--store", str(tmp_path / "w.db"),
                     "--metrics-port", str(port))  # fmt: skip
    assert done.returncode == 2
    assert "Address already in use" in done.stderr


@pytest.mark.e2e  # a real watch process for seconds: make test-e2e
def test_silenced_findings_are_recorded_not_announced_and_quiet_ones_resolve(
    tmp_path: Path,
) -> None:
    receiver = Receiver()
    receiver.up()
    config = tmp_path / "f.toml"
    config.write_text("[watch]\nresolve_after_s = 1.5\n")
    jsonl = tmp_path / "f.jsonl"
    w = Watcher("--config", str(config), "--follow", str(tmp_path / "logs"), "--store",
                str(tmp_path / "w.db"), "--jsonl", str(jsonl), "--webhook", receiver.url,
                "--silence", "node=gpu-node-17,detector=xid_correlation")  # fmt: skip
    try:
        (tmp_path / "logs" / "gpu-node-17").mkdir(parents=True)
        (tmp_path / "logs" / "gpu-node-17" / "kern.log").write_text(XID79)
        both_resolved = lambda: [t for _, t in transitions(jsonl)].count("resolved") == 2  # noqa: E731
        wait_for(both_resolved, what="resolution")
        records = [json.loads(x) for x in jsonl.read_text().splitlines()]
        silenced = [r for r in records if r["detector"] == "xid_correlation"]
        assert [(r["transition"], r.get("quiet")) for r in silenced] == [
            ("new", "silenced"), ("resolved", "silenced")
        ]  # fmt: skip
        # the fatal AER after the Xid (the file's quiet tail) is another detector's: told
        wait_for(lambda: len(receiver.received) == 2, what="the AER finding's deliveries")
        assert [(r["detector"], r["transition"]) for r in receiver.received] == [
            ("pcie_aer", "new"), ("pcie_aer", "resolved")
        ]  # fmt: skip
    finally:
        assert w.stop() == 0
        receiver.down()


def test_a_failing_source_is_retried_and_reported_while_the_others_go_on(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing will listen here
    jsonl = tmp_path / "f.jsonl"
    w = Watcher("--follow", str(tmp_path / "logs"), "--store", str(tmp_path / "w.db"),
                "--jsonl", str(jsonl), "--dcgm", f"http://127.0.0.1:{closed}/metrics",
                "--metrics-port", "0", env={"FLEETWATCH_WEBHOOK_SECRET": SECRET})  # fmt: skip
    try:
        (tmp_path / "logs" / "gpu-node-17").mkdir(parents=True)
        (tmp_path / "logs" / "gpu-node-17" / "kern.log").write_text(XID79)
        wait_for(lambda: transitions(jsonl), what="the file source's finding")
        wait_for(lambda: any("failed" in line and "dcgm:" in line for line in w.lines),
                 what="the failure report")  # fmt: skip
        failures = [v for k, v in w.metrics().items() if "source_failures_total" in k]
        assert failures and failures[0] >= 1
    finally:
        assert w.stop() == 0


def test_the_example_config_names_every_setting_and_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).parent.parent.parent / "examples" / "watch.toml"
    monkeypatch.setenv("FLEETWATCH_WEBHOOK_SECRET", SECRET)
    plan = load_plan(example, {})
    names = {s.name for s in plan.sources({})}
    assert names == {"file:/var/log/kern.log", "kmsg", "nvml", "kubernetes",
                     "dcgm:http://127.0.0.1:9400/metrics"}  # fmt: skip
    assert plan.silences[0].node == "gpu-node-17" and plan.silences[0].until == 1798675200.0
    text = example.read_text()
    for settings in (WatchSettings, LifecycleConfig, FileSettings, KmsgSettings, NvmlSettings,
                     ScrapeSettings, KubeSettings, MetricsSettings, WebhookConfig, BreakerConfig,
                     SlurmConfig):  # fmt: skip
        for field in dataclasses.fields(settings):
            assert f"\n{field.name} = " in text, f"examples/watch.toml lacks {field.name}"

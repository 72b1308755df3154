"""``make gpu-check``: the NVML poller on this machine's GPUs, for 20 s, under load.

Runs ``fleetwatch.inputs.nvml.NvmlSource`` for ``--seconds`` (20) while a load runs
(a bf16 matrix-product loop through PyTorch, when PyTorch and CUDA are here), feeds
what it reads to every detector, and prints per GPU what NVML said (first and last
reading, the clock-event reasons seen) and any finding. A healthy GPU under load gives
no finding: power capping at full load is normal. Without an NVIDIA GPU or driver it
says so and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import threading
import time
from collections import defaultdict

from rich.console import Console
from rich.table import Table

from fleetwatch.catalog import clock_event_reasons
from fleetwatch.config import build, load
from fleetwatch.engine import Engine
from fleetwatch.events import KINDS, EventBatch
from fleetwatch.inputs.nvml import NvmlSettings, NvmlSource
from fleetwatch.sinks.table import write_table

LOAD = """
import time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
end = time.time() + {seconds}
n = 0
while time.time() < end:
    for _ in range(20):
        c = a @ b
    torch.cuda.synchronize()
    n += 20
print(f"load: {{n}} bf16 8192^3 matrix products on {{torch.cuda.get_device_name()}}", flush=True)
"""


def _no_gpu(why: str) -> int:
    print(f"gpu-check: no NVIDIA GPU here ({why}); nothing to check")
    return 0


def start_load(seconds: float) -> subprocess.Popen[str] | None:
    if importlib.util.find_spec("torch") is None:
        print("gpu-check: PyTorch is not installed: reading the GPUs without a load")
        return None
    return subprocess.Popen([sys.executable, "-c", LOAD.format(seconds=seconds)], text=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args()
    try:
        import pynvml
    except ImportError:
        return _no_gpu("nvidia-ml-py is not installed")
    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        driver = pynvml.nvmlSystemGetDriverVersion()
        pynvml.nvmlShutdown()
    except pynvml.NVMLError as exc:
        return _no_gpu(f"NVML: {exc}")
    if count == 0:
        return _no_gpu("NVML sees no GPU")
    print(
        f"gpu-check: {count} GPU(s), driver {driver}; polling every {args.interval} s "
        f"for {args.seconds:g} s"
    )

    batches: list[EventBatch] = []
    source = NvmlSource(NvmlSettings(interval_s=args.interval), node="this-node")
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            source.run(lambda got, _position: batches.extend(got), stop)
        except BaseException as exc:  # reported below, not lost in a thread
            failure.append(exc)

    poller = threading.Thread(target=run)
    poller.start()
    time.sleep(min(2.0, args.seconds / 5))  # an idle reading first
    workload = start_load(args.seconds - 4)
    time.sleep(max(0.0, args.seconds - min(2.0, args.seconds / 5)))
    stop.set()
    poller.join()
    if workload is not None:
        workload.wait()
    if failure:
        print(f"gpu-check: the poller failed: {failure[0]!r}")
        return 1

    engine = Engine(build(load(None)))
    readings: dict[tuple[int, str], list[float]] = defaultdict(list)
    reasons: dict[int, set[int]] = defaultdict(set)
    xids = 0
    for batch in batches:
        engine.process(batch)
        for row in range(len(batch)):
            kind = KINDS[batch["kind"][row]]
            gpu = int(batch["gpu"][row])
            if kind == "xid":
                xids += 1
            value = float(batch["value"][row])
            if value == value:
                scope = batch.value("scope", row)
                readings[gpu, f"{kind} {scope}" if scope else kind].append(value)
                if kind == "clock_event":
                    reasons[gpu].add(int(value))
    findings = engine.finish()

    console = Console(width=120)
    table = Table(title=f"NVML readings: {source.polls} polls, {xids} XID event(s)")
    for column in ("gpu", "reading", "samples", "first", "last", "min", "max"):
        table.add_column(column, justify="left" if column == "reading" else "right")
    for (gpu, name), values in sorted(readings.items()):
        table.add_row(
            str(gpu),
            name,
            str(len(values)),
            *(f"{v:g}" for v in (values[0], values[-1], min(values), max(values))),
        )
    console.print(table)
    for gpu, seen in sorted(reasons.items()):
        names = sorted({n for mask in seen for n in describe(mask)})
        print(f"gpu {gpu}: clock event reasons seen: {', '.join(names) or 'none'}")
    if source.stats.skipped or source.stats.unreadable:
        print(
            f"skipped readings: {dict(source.stats.skipped)}; "
            f"unreadable: {dict(source.stats.unreadable)}"
        )
    print(f"findings: {len(findings)}")
    write_table(findings, sys.stdout)
    return 0


def describe(mask: int) -> list[str]:
    return [r.name for r in clock_event_reasons() if mask & r.bit] or ["none (0x0)"]


if __name__ == "__main__":
    sys.exit(main())

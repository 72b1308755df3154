"""What a command imports to start: only what it uses.

Start-up is part of every run (a tenth of a second is a tenth of grep's time over a
gigabyte), so the heavy libraries come in where they are used: rich where a table or a
bar is drawn, prometheus_client where a DCGM scrape or the metrics port is read or
served, msgspec where a JSON line is read, the actions where something acts. ``numpy.ma`` comes in with ``np.unique`` of
one column; nothing on these paths calls it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

_HEAVY = ("rich.console", "rich.progress", "prometheus_client", "numpy.ma", "msgspec")
_XID = "[ 1234.5] NVRM: Xid (PCI:0000:18:00): 79, pid=1, GPU has fallen off the bus.\n"


def _loaded_after(args: list[str]) -> set[str]:
    """The heavy modules loaded once ``fleetwatch ARGS`` ran, in a fresh interpreter."""
    code = (
        "import json, sys\n"
        "from fleetwatch.cli import main\n"
        f"sys.argv = ['fleetwatch', *{args!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        f"heavy = {_HEAVY!r}\n"
        "print(json.dumps([h for h in heavy if h in sys.modules]), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(done.stderr.splitlines()[-1]))


@pytest.mark.parametrize(
    "args",
    [
        ["replay", "--output", "jsonl", "--jobs", "1"],
        ["parse", "--output", "jsonl", "--jobs", "1"],
        ["parse", "--output", "summary", "--jobs", "1"],
    ],
)
def test_reading_a_kernel_log_starts_without_the_heavy_libraries(
    tmp_path: Path, args: list[str]
) -> None:
    log = tmp_path / "kern.log"
    log.write_text(_XID)
    loaded = _loaded_after([*args, str(log)])
    # the summary is a rich table: its console is the one heavy module it needs
    allowed = {"rich.console"} if "summary" in args else set()
    assert loaded <= allowed


def test_the_help_starts_without_the_heavy_libraries() -> None:
    assert _loaded_after(["--help"]) == set()


def test_a_json_line_brings_msgspec_in(tmp_path: Path) -> None:
    log = tmp_path / "journal.json"
    log.write_text(json.dumps({"__REALTIME_TIMESTAMP": "1722830053000000", "MESSAGE": _XID}) + "\n")
    assert _loaded_after(["parse", "--output", "jsonl", "--jobs", "1", str(log)]) == {"msgspec"}

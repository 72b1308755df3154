"""deploy/systemd/: the unit checked by systemd's own tools, without a running systemd.

``systemd-analyze verify`` loads a unit the way PID 1 would and says what it refuses;
it needs no systemd running, but it does need the targets every service depends on
(sysinit.target, basic.target, shutdown.target, and those the unit names) and the
ExecStart program. So each check builds a root in a temporary folder: the host's target
units under usr/lib/systemd/system, the unit under etc/systemd/system, and an
executable where ExecStart points, then runs ``systemd-analyze --root``. A bad setting is a warning there, not an exit code, so any
line on stderr fails the check. ``systemd-analyze security --offline`` then scores the
sandbox (lower is tighter), and ``systemd-sysusers --root`` makes the user.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from fleetwatch.cli import cli

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"
UNIT = SYSTEMD / "fleetwatch.service"
HOST_UNITS = Path("/usr/lib/systemd/system")
# systemd-analyze security's overall exposure, in tenths (2.0 when written; 10.0 is an
# unsandboxed service): a change that loosens the sandbox past this fails.
MOST_EXPOSURE_TENTHS = 25

needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or not (HOST_UNITS / "sysinit.target").exists(),
    reason="needs systemd-analyze and the host's unit files (apt-get install systemd)",
)


def exec_start(unit_text: str) -> list[str]:
    (line,) = [x for x in unit_text.splitlines() if x.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))


def fake_root(tmp_path: Path, unit_text: str) -> Path:
    """A root where the unit can load: the host's targets, the unit, its program."""
    root = tmp_path / "root"
    units = root / "usr" / "lib" / "systemd" / "system"
    units.mkdir(parents=True)
    for target in HOST_UNITS.glob("*.target"):
        if target.is_file():
            shutil.copy(target, units)
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    (root / "etc" / "systemd" / "system" / UNIT.name).write_text(unit_text)
    program = root / exec_start(unit_text)[0].lstrip("/")
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    return root


def verify(tmp_path: Path, unit_text: str) -> list[str]:
    """What systemd-analyze verify says about the unit: [] when it has nothing to say."""
    root = fake_root(tmp_path, unit_text)
    done = subprocess.run(
        ["systemd-analyze", f"--root={root}", "--man=no", "verify", UNIT.name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = done.stderr.splitlines()
    return said if said or done.returncode == 0 else [f"exit {done.returncode}"]


@needs_systemd
def test_systemd_loads_the_unit_without_a_word(tmp_path: Path) -> None:
    assert verify(tmp_path, UNIT.read_text()) == []


@needs_systemd
@pytest.mark.parametrize(
    ("good", "bad"),
    [
        ("ProtectSystem=strict", "ProtectSystem=stricter"),  # a bad value
        ("NoNewPrivileges=yes", "NoNewPrivilege=yes"),  # an unknown key
    ],
)
def test_the_check_can_fail(tmp_path: Path, good: str, bad: str) -> None:
    text = UNIT.read_text()
    assert good in text
    key, value = bad.split("=")
    said = verify(tmp_path, text.replace(good, bad))
    assert any(key in line or value in line for line in said), said


@needs_systemd
def test_the_sandbox_stays_tight(tmp_path: Path) -> None:
    root = fake_root(tmp_path, UNIT.read_text())
    done = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=yes",
            f"--root={root}",
            f"--threshold={MOST_EXPOSURE_TENTHS}",
            UNIT.name,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    verdict = [line for line in done.stdout.splitlines() if "Overall exposure" in line]
    assert done.returncode == 0, verdict or done.stderr


@needs_systemd
def test_sysusers_makes_the_user_the_unit_runs_as(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(SYSTEMD / "fleetwatch.sysusers")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    passwd = (tmp_path / "etc" / "passwd").read_text().splitlines()
    users = {line.split(":")[0]: line for line in passwd}
    user = next(x for x in UNIT.read_text().splitlines() if x.startswith("User="))
    assert user.removeprefix("User=") in users


def test_exec_start_and_the_env_files_flags_parse_with_the_real_command_line() -> None:
    """The unit's flags, and those the example env file shows, are fleetwatch's own."""
    args = exec_start(UNIT.read_text())
    assert args[0].endswith("/fleetwatch") and args[1] == "watch"
    assert args[-1] == "$FLEETWATCH_ARGS"  # unquoted: systemd splits it into words
    (example,) = [
        line.removeprefix("#FLEETWATCH_ARGS=")
        for line in (SYSTEMD / "fleetwatch.env").read_text().splitlines()
        if line.startswith("#FLEETWATCH_ARGS=")
    ]
    command = cli.commands["watch"]
    for flags in (args[2:-1], args[2:-1] + example.split()):
        params = command.make_context("watch", flags).params
        assert params["kmsg"] and params["nvml"] and params["store"].startswith("/var/lib/")


def test_the_store_is_in_the_state_directory() -> None:
    text = UNIT.read_text()
    state = next(x for x in text.splitlines() if x.startswith("StateDirectory="))
    params = cli.commands["watch"].make_context("watch", exec_start(text)[2:-1]).params
    folder = f"/var/lib/{state.removeprefix('StateDirectory=')}/"
    assert params["store"].startswith(folder) and params["jsonl"].startswith(folder)

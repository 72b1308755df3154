"""The ``fleetwatch`` command: a thin layer that parses arguments and calls the library.

Only this module turns errors into exit codes: 0 done, 2 a usage or input error
(one line on stderr naming it). Unreadable records are not errors: they are counted
and reported in the summary line on stderr, and the exit code stays 0.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, NoReturn, TypeVar

import click
import numpy as np

from fleetwatch import config as configuration
from fleetwatch import extras
from fleetwatch.actions import BREAKER, SLURM_HEALTH_STORE, TOOLS
from fleetwatch.catalog import xid
from fleetwatch.detectors import REGISTRY
from fleetwatch.events import KINDS, SOURCES, EventBatch
from fleetwatch.findings import Finding, Severity, report_order
from fleetwatch.hostnames import is_slurm_node_name
from fleetwatch.incidents import link
from fleetwatch.inputs.live import SourceError
from fleetwatch.lifecycle import Silence
from fleetwatch.replay import EmptyWindow, Window, replay
from fleetwatch.simulate import ALL_SCENARIOS, simulate
from fleetwatch.sinks import FORMATS, write
from fleetwatch.sinks.drain import NOT_A_HOST_NAME
from fleetwatch.sinks.event_lines import event_lines
from fleetwatch.sinks.incidents import INCIDENT_FORMATS, write_incidents
from fleetwatch.sinks.json_line import json_line
from fleetwatch.sinks.one_line import one_line
from fleetwatch.sinks.table import when
from fleetwatch.sources import InputError, ReadOptions, ReadStats
from fleetwatch.sources.parallel import default_jobs, read_parallel
from fleetwatch.store import SilenceRow, Store, StoreError
from fleetwatch.timestamps import TimeZoneError, parse_zone

_SHORT_USAGE: Final = """usage: fleetwatch COMMAND [ARGS]...

  fleetwatch replay PATH...      the faults in collected logs (files, folders)
  fleetwatch report PATH...      the same, as one HTML page (--out FILE)
  fleetwatch parse PATH...       the events read from them
  fleetwatch watch --follow LOG  watch live, keep findings, announce changes
  fleetwatch findings            what a watch keeps in its store, or a fleet
  fleetwatch silence --node N    quiet a node's findings for a while (--for 2h)
  fleetwatch slurm-health        Slurm's health check: drains on a GPU fault
  fleetwatch agent --kmsg        fleet mode: a node's agent, sending to Redis
  fleetwatch correlate           fleet mode: run the detectors on the shards
  fleetwatch announce            fleet mode: tell its transitions (JSONL, hook)
  fleetwatch explain xid 79      what an Xid means, and what to do about it
  fleetwatch detectors           the pattern library, with its defaults
  fleetwatch simulate --list     synthetic fleets with a known fault, to try

fleetwatch COMMAND --help for a command's options and examples."""


def _fail(message: str) -> NoReturn:
    # a path or a value in the message comes from the command line or a file: escaped
    click.echo(f"fleetwatch: error: {one_line(message)}", err=True)
    sys.exit(2)


_EXITS: Final = ("0  done", "2  a usage or input error (one line on stderr)")


def _require(what: str, *modules: str) -> None:
    """The optional libraries ``what`` needs, or one line naming the extra, exit 2."""
    try:
        extras.require(what, *modules)
    except extras.MissingExtra as exc:
        _fail(str(exc))


_ENV_COLUMNS: Final = "  COLUMNS  the width a table is laid out for (else the terminal's)"
_ENV_TZ: Final = "  TZ       the local time zone, of stamps without one (--tz wins)"
_ENV_TZ_WINDOW: Final = "  TZ       the local time zone, of stamps and --since/--until without one"


def _epilog(examples: str, exits: tuple[str, ...] = _EXITS, env: str = "") -> str:
    """A command's help ending: examples, exit codes and the environment it reads.
    (``\\b`` keeps click from rewrapping a paragraph.)"""
    codes = "\n".join(f"  {code}" for code in exits)
    text = f"\b\nExamples:\n{examples}\n\n\b\nExit codes:\n{codes}"
    if env:
        text += f"\n\n\b\nEnvironment:\n{env}"
    return text


def _window_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--since``, ``--until`` and ``--only-node``: which events to read (replay, report)."""
    for option in reversed(
        (
            click.option(
                "--since",
                help="Only events at or after this time: ISO 8601, epoch, or 2h / 30m / 7d ago.",
            ),
            click.option(
                "--until",
                help="Only events at or before this time: ISO 8601, epoch, or 2h / 30m / 7d ago.",
            ),
            click.option("--only-node", help="Only this node's events."),
        )
    ):
        command = option(command)
    return command


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=_epilog(
        "  fleetwatch replay /var/log/gpu-node-17/\n"
        "  fleetwatch replay kern.log.1.gz dcgm.prom --since 2h --output jsonl\n"
        "  fleetwatch watch --kmsg --nvml --metrics-port 9400",
        env="  FLEETWATCH_WEBHOOK_SECRET  watch: the key that signs webhook posts\n"
        "  COLUMNS                    the width a table is laid out for",
    ),
)
@click.version_option(package_name="fleetwatch")
def cli() -> None:
    """Find GPU faults in GPU-fleet telemetry and say what to do about each one."""


_JOBS = click.option(
    "--jobs",
    type=click.IntRange(1, 1024),
    default=default_jobs,
    show_default="this machine's cores",
    help="Processes that read the inputs (one per node folder at a time).",
)


@cli.command(
    epilog=_epilog(
        "  fleetwatch parse /var/log/kern.log\n"
        "  fleetwatch parse dcgm.prom --output jsonl | jq .kind\n"
        "  journalctl -k -o json | fleetwatch parse - --node gpu-node-17",
        env=_ENV_COLUMNS + "\n" + _ENV_TZ,
    )
)
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--output",
    type=click.Choice(["jsonl", "summary"]),
    default="jsonl",
    show_default=True,
    help="jsonl: one event per line; summary: a table of events by kind and source.",
)
@click.option("--node", help="Node name for records that name none.")
@click.option("--year", type=click.IntRange(1970, 2200), help="Year for stamps without one.")
@click.option("--tz", "zone", help="Time zone for stamps without one (default: local).")
@_JOBS
def parse(
    paths: tuple[str, ...],
    output: str,
    node: str | None,
    year: int | None,
    zone: str | None,
    jobs: int,
) -> None:
    """Print the normalized events in PATHS (files, folders, .gz, - for stdin)."""
    options = _read_options(node, year, zone)
    stats = ReadStats()
    batches = read_parallel(list(paths), options, stats, jobs)
    try:
        if output == "jsonl":
            _write_jsonl(batches)
        else:
            _write_summary(batches)
    except InputError as exc:
        _fail(str(exc))
    except BrokenPipeError:
        sys.stderr.close()  # the reader of our output left (| head): not an error
        sys.exit(0)
    _say_file_nodes(stats, "--node")
    click.echo(f"fleetwatch: {stats.summary()}", err=True)


def _say_file_nodes(stats: ReadStats, option: str | None = None, shown: int = 5) -> None:
    """One line on stderr when records were given a node named after a file or stdin;
    ``option``: the command's option that names it instead (``report`` has none)."""
    if not stats.file_nodes:
        return
    pairs = [f"{one_line(node)} ({one_line(name)})" for node, name in stats.file_nodes.items()]
    more = f", and {len(pairs) - shown} more" if len(pairs) > shown else ""
    how = f"name it with {option}, or put" if option else "put"
    click.echo(
        "fleetwatch: records that name no host were given a node named after their file: "
        f"{', '.join(pairs[:shown])}{more}; {how} each node's logs in a folder named after "
        "the node",
        err=True,
    )


def _read_options(node: str | None, year: int | None, zone: str | None) -> ReadOptions:
    try:
        return ReadOptions(node=node, year=year, zone=parse_zone(zone) if zone else None)
    except TimeZoneError as exc:
        _fail(str(exc))


_AGO: Final = re.compile(r"(\d{1,9})\s*([smhdw])(?:\s*ago)?")
_UNIT_S: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _moment(
    text: str | None, option: str, zone: str | None, now: Callable[[], float] = time.time
) -> float | None:
    """``--since`` / ``--until``: epoch seconds, ISO 8601 (no zone: ``--tz`` or local),
    or a span back from now (``2h``, ``30m``, ``7d``, ``90s``, ``1w``; ``ago`` optional)."""
    if text is None:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            _fail(f"{option} {text!r} is no time")
        return seconds
    if ago := _AGO.fullmatch(text.strip().lower()):
        return now() - int(ago[1]) * _UNIT_S[ago[2]]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        _fail(
            f"{option} {text!r} is neither epoch seconds, an ISO 8601 time, "
            "nor a span back from now such as 2h"
        )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=parse_zone(zone)) if zone else moment.astimezone()
    return moment.timestamp()


@cli.command(
    name="replay",
    epilog=_epilog(
        "  fleetwatch replay logs/                  every node folder under logs/\n"
        "  fleetwatch replay logs/ --since 2h       only the last two hours\n"
        "  fleetwatch replay logs/ --output slurm   scontrol lines to drain the nodes\n"
        "  fleetwatch replay logs/ --fail-on error  exit 1 when a finding is that bad\n"
        "  fleetwatch replay logs/ --output incidents-table   what caused what\n"
        "  cat dmesg.txt | fleetwatch replay - --node-name gpu-node-17",
        exits=(_EXITS[0], "1  a finding at or above --fail-on", _EXITS[1]),
        env=_ENV_COLUMNS + "\n" + _ENV_TZ_WINDOW,
    ),
)
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--output",
    type=click.Choice([*FORMATS, *INCIDENT_FORMATS]),
    default=None,
    help="table (default on a terminal), jsonl (default otherwise), drain-list, slurm; "
    "incidents: findings linked cause -> effect, one JSON object a line; incidents-table.",
)
@click.option("--wide", is_flag=True, help="The table with a column each, whatever the width.")
@click.option("--config", "config_path", type=click.Path(), help="A fleetwatch.toml.")
@_window_options
@click.option("--node-name", help="Node name for records that name none (a plain dmesg).")
@click.option("--node", "old_node", hidden=True)
@click.option(
    "--fail-on",
    type=click.Choice([str(s) for s in Severity]),
    help="Exit 1 when a finding is at or above this severity.",
)
@click.option("--year", type=click.IntRange(1970, 2200), help="Year for stamps without one.")
@click.option("--tz", "zone", help="Time zone for stamps without one (default: local).")
@_JOBS
def replay_command(
    paths: tuple[str, ...],
    output: str | None,
    wide: bool,
    config_path: str | None,
    since: str | None,
    until: str | None,
    only_node: str | None,
    node_name: str | None,
    old_node: str | None,
    fail_on: str | None,
    year: int | None,
    zone: str | None,
    jobs: int,
) -> None:
    """Find the faults in collected logs (files, folders, .gz, - for stdin)."""
    if old_node is not None:
        _fail(
            "replay --node is now --only-node (it keeps only that node's events); "
            "--node-name names the node of records that name none"
        )
    configs = _load_config(config_path)
    options = _read_options(node_name, year, zone)
    window = Window(_moment(since, "--since", zone), _moment(until, "--until", zone), only_node)
    stats = ReadStats()
    fmt = output or ("table" if sys.stdout.isatty() else "jsonl")
    findings = _replay_showing_progress(paths, configs, options, window, stats, jobs)
    guessed: list[Finding] = []
    if fmt in INCIDENT_FORMATS:
        write_incidents(link(findings), fmt, sys.stdout)
    elif fmt in ("drain-list", "slurm"):  # a node named after a file is no node to drain
        guessed = [f for f in findings if f.node in stats.file_nodes]
    left_out = []
    if fmt not in INCIDENT_FORMATS:
        left_out = write([f for f in findings if f not in guessed], fmt, sys.stdout, wide=wide)
    sys.stdout.flush()
    if left_out:
        click.echo(_left_out(left_out, fmt, NOT_A_HOST_NAME), err=True)
    if guessed:
        click.echo(_left_out(guessed, fmt, "the node is named after a file"), err=True)
    _say_file_nodes(stats, "--node-name")
    click.echo(f"fleetwatch: {stats.summary()}; {len(findings)} finding(s)", err=True)
    if fail_on is not None and any(f.severity >= Severity.parse(fail_on) for f in findings):
        sys.exit(1)


def _load_config(config_path: str | None) -> dict[str, Any]:
    try:
        return configuration.load(Path(config_path) if config_path else None)
    except configuration.ConfigError as exc:
        _fail(str(exc))


def _replay_showing_progress(
    paths: tuple[str, ...],
    configs: dict[str, Any],
    options: ReadOptions,
    window: Window,
    stats: ReadStats,
    jobs: int,
    observe: Callable[[EventBatch], None] | None = None,
) -> list[Finding]:
    """``replay``, with a bar on stderr while it reads (on a terminal)."""

    def run(progress: Callable[[int], None] | None) -> list[Finding]:
        try:
            return replay(
                paths,
                configs,
                options,
                window,
                stats,
                progress=progress,
                observe=observe,
                jobs=jobs,
            )
        except InputError as exc:
            _fail(str(exc))

    if not sys.stderr.isatty():  # no bar: rich is not even imported
        return run(None)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn

    columns = (TextColumn("reading"), BarColumn(), TextColumn("{task.completed:,} events"))
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("read", total=None)
        return run(lambda n: bar.advance(task, n))


@cli.command(
    name="report",
    epilog=_epilog(
        "  fleetwatch report logs/ --out report.html   every node folder under logs/\n"
        "  fleetwatch report logs/ --since 2h --out last-2h.html   the last two hours\n"
        "  fleetwatch report logs/ --out - | gzip > r.html.gz   the page on stdout",
        env=_ENV_TZ_WINDOW,
    ),
)
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--out",
    metavar="FILE",
    required=True,
    help="The HTML file to write (one file: it loads nothing, runs no script), or - for "
    "standard output. It replaces a file whole, keeping its mode and owner (a new one "
    "gets the umask's), and follows a symlink; a directory, device, FIFO or socket is "
    "refused.",
)
@click.option("--config", "config_path", type=click.Path(), help="A fleetwatch.toml.")
@_window_options
@click.option("--year", type=click.IntRange(1970, 2200), help="Year for stamps without one.")
@click.option("--tz", "zone", help="Time zone for stamps without one (default: local).")
@_JOBS
def report_command(
    paths: tuple[str, ...],
    out: str,
    config_path: str | None,
    since: str | None,
    until: str | None,
    only_node: str | None,
    year: int | None,
    zone: str | None,
    jobs: int,
) -> None:
    """Write one HTML page of what replay finds: a timeline of the affected GPUs,
    the incidents, every finding with its evidence (files, folders, .gz, - for stdin)."""
    from importlib.metadata import version

    from fleetwatch.sinks import report, report_file
    from fleetwatch.sinks.timeline import Timeline

    hint = " (--out - writes the page to standard output)"
    if out != "-":  # refused before the reading, which may take minutes
        try:
            report_file.target(out)
        except report_file.NotAFile as exc:
            _fail(f"--out {out or repr(out)} {exc}{hint}")
        except OSError as exc:
            _fail(f"--out {out}: {exc.strerror or exc}")
    configs = _load_config(config_path)
    options = _read_options(None, year, zone)
    window = Window(_moment(since, "--since", zone), _moment(until, "--until", zone), only_node)
    stats = ReadStats()
    timeline = Timeline()
    findings = _replay_showing_progress(paths, configs, options, window, stats, jobs, timeline.add)
    # the incidents that link findings (each finding is listed on the page anyway)
    incidents = [incident.to_json() for incident in link(findings) if incident.effects]
    scope = [
        f"{name} {when(moment, 'wall')} UTC"
        for name, moment in (("since", window.since), ("until", window.until))
        if moment is not None
    ]
    if only_node is not None:
        scope.append(f"only node {only_node}")
    about = report.About(
        inputs=paths,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        version=version("fleetwatch"),
        scope=tuple(scope),
    )
    page = report.render(findings, incidents, timeline, stats, about)
    try:
        if out == "-":
            sys.stdout.flush()
            sys.stdout.buffer.write(page.encode("utf-8"))
            sys.stdout.buffer.flush()
        else:
            report_file.write(out, page)
    except report_file.NotAFile as exc:  # it changed while the logs were read
        _fail(f"--out {out} {exc}{hint}")
    except OSError as exc:
        _fail(f"--out {out}: {exc.strerror or exc}")
    _say_file_nodes(stats)
    wrote = "standard output" if out == "-" else one_line(out)
    click.echo(
        f"fleetwatch: {stats.summary()}; {len(findings)} finding(s); "
        f"wrote {wrote} ({len(page.encode()):,} bytes)",
        err=True,
    )


def _left_out(findings: list[Finding], fmt: str, why: str, shown: int = 10) -> str:
    """One line: how many findings ``fmt`` left out, and their nodes, escaped."""
    nodes = list(dict.fromkeys(one_line(f.node or "") for f in findings))
    names = ", ".join(nodes[:shown])
    if len(nodes) > shown:
        names += f", and {len(nodes) - shown} more"
    return f"fleetwatch: {len(findings)} finding(s) not in the {fmt} output: {why} ({names})"


_F = TypeVar("_F", bound=Callable[..., Any])


def _live_inputs(command: _F) -> _F:
    """The live inputs and local outputs a watch and a live agent share."""
    options = [
        click.option("--config", "config_path", type=click.Path(), help="A fleetwatch.toml."),
        click.option(
            "--follow", multiple=True, help="A log file or folder to follow (repeatable)."
        ),
        click.option(
            "--from-start", is_flag=True, help="First start: read what files already hold."
        ),
        click.option(
            "--kmsg", is_flag=True, help="Read this node's kernel log (/dev/kmsg or journal)."
        ),
        click.option("--nvml", is_flag=True, help="Poll this node's GPUs through NVML."),
        click.option("--dcgm", multiple=True, help="Scrape this dcgm-exporter URL (repeatable)."),
        click.option(
            "--kubeconfig",
            help="Watch Kubernetes Events with this kubeconfig (--kube-conditions too).",
        ),
        click.option("--store", help="The SQLite store (default: fleetwatch-watch.db)."),
        click.option("--jsonl", help="Append each transition to this JSONL file."),
        click.option("--metrics-port", type=click.IntRange(0, 65535), help="Serve /metrics here."),
        click.option("--metrics-address", default="127.0.0.1", show_default=True),
        click.option("--node", help="Node name for records that name none."),
        click.option("--quiet", is_flag=True, help="No console lines (other outputs still run)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _live_overrides(live: dict[str, Any]) -> dict[str, Any]:
    """``load_plan``'s overrides from the shared live options (``_live_inputs``' values
    by name; needs fleetwatch[watch])."""
    from fleetwatch.watch import MetricsSettings

    keys = ("store", "jsonl", "node", "follow", "from_start", "kmsg", "nvml", "dcgm")
    overrides = {key: live[key] for key in (*keys, "kubeconfig")}
    if live["metrics_port"] is not None:
        overrides["metrics"] = MetricsSettings(live["metrics_address"], live["metrics_port"])
    return overrides


def _live_modules(what: str, nvml: bool, kubeconfig: str | None, *more: str) -> None:
    """What a watch or a live agent with these inputs needs installed (else one line)."""
    words, modules = [what], ["tenacity", "urllib3", *more]
    if nvml:
        words.append("--nvml")
        modules.append("pynvml")
    if kubeconfig:
        words.append("--kubeconfig")
        modules.append("kubernetes")
    _require(" ".join(words), *modules)


@cli.command(
    name="watch",
    epilog=_epilog(
        "  fleetwatch watch --kmsg --nvml --metrics-port 9400\n"
        "  fleetwatch watch --follow /var/log/pods --kubeconfig ~/.kube/config\n"
        "  fleetwatch watch --config /etc/fleetwatch/watch.toml --quiet\n"
        "  fleetwatch watch --kmsg --act slurm   drain nodes, 2 an hour at most\n"
        "  fleetwatch watch --kmsg --kube-conditions --act kubernetes\n"
        "                                        node conditions; cordon and taint",
        exits=("0  stopped by Ctrl-C or SIGTERM", "2  a usage, config or store error"),
        env="  FLEETWATCH_WEBHOOK_SECRET  the key that signs --webhook posts\n"
        "                             (another name: the config's webhook secret_env)",
    ),
)
@_live_inputs
@click.option(
    "--kube-conditions",
    is_flag=True,
    help="Write findings as node conditions and Events (--kubeconfig, else $KUBECONFIG).",
)
@click.option("--webhook", help="POST announced findings to this URL (signed).")
@click.option(
    "--alertmanager",
    multiple=True,
    help="Post open findings as alerts to this Alertmanager (http://host:9093; each peer).",
)
@click.option(
    "--silence",
    multiple=True,
    help="Record but do not announce: node=N,gpu=I,detector=D,until=ISO (repeatable).",
)
@click.option(
    "--act",
    type=click.Choice(TOOLS),
    help="Take nodes out of service with this tool, through the breaker (default: dry run).",
)
def watch_command(
    kube_conditions: bool,
    webhook: str | None,
    alertmanager: tuple[str, ...],
    silence: tuple[str, ...],
    act: str | None,
    **live: Any,
) -> None:
    """Watch live: follow logs, persist findings, announce transitions (Ctrl-C stops)."""
    _live_modules("fleetwatch watch", live["nvml"], live["kubeconfig"])
    from fleetwatch.watch import Watch, load_plan  # needs fleetwatch[watch]

    overrides = _live_overrides(live) | {
        "kube_conditions": kube_conditions,
        "webhook": webhook,
        "alertmanager": alertmanager,
        "silences": [_silence(text) for text in silence],
        "act": act,
    }
    config_path, quiet = live["config_path"], live["quiet"]
    _log_to_stderr()
    try:
        plan = load_plan(Path(config_path) if config_path else None, overrides)
        running = Watch(dataclasses.replace(plan, console=not quiet))
    except (configuration.ConfigError, StoreError, SourceError) as exc:
        _fail(str(exc))
    _run_until_stopped(running)


def _run_until_stopped(running: Any) -> None:
    """Run a watch (or live agent) until Ctrl-C or SIGTERM; its failures are one line."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        running.run(stop)
    except (OSError, StoreError) as exc:  # the metrics port is taken; the store went bad
        _fail(str(exc))


_HEALTH: Final = {  # what became of an unhealthy finding's drain, by action outcome
    "acted": "drained",
    "failed": "drain failed",
    "held": "held back by the breaker",
    "would_act": "dry run: would drain (--act slurm drains)",
    "would_hold": "dry run: the breaker would hold the drain back",
    "refused": "not drained",
    "pending": "not decided",
}


@cli.command(
    name="slurm-health",
    epilog=_epilog(
        "  fleetwatch slurm-health --kmsg              a dry run: what it would drain\n"
        "  fleetwatch slurm-health --kmsg --act slurm  drains this node on a fault\n"
        "  fleetwatch slurm-health --follow /var/log/kern.log --store /tmp/health.db",
        exits=(
            "0  healthy: no open finding takes this node out of service",
            "1  unhealthy: one does (drained, held back, or a dry run would drain);",
            "   slurmd logs it with what was printed, and does nothing else",
            "2  a usage, config, store or source error (one line on stderr)",
        ),
        env="  SLURMD_NODENAME  this node's Slurm name (slurmd sets it; --node wins)\n"
        "  SLURM_CONF       the slurm.conf that scontrol reads",
    ),
)
@click.option("--config", "config_path", type=click.Path(), help="A fleetwatch.toml.")
@click.option("--follow", multiple=True, help="A log file or folder to read (repeatable).")
@click.option("--from-start", is_flag=True, help="First run: read what files already hold.")
@click.option("--kmsg", is_flag=True, help="Read this node's kernel log (/dev/kmsg or journal).")
@click.option(
    "--store",
    default=SLURM_HEALTH_STORE,
    show_default=True,
    help="Where it keeps its place, findings and drains between runs.",
)
@click.option(
    "--node", help="This node's Slurm name (default: $SLURMD_NODENAME, else the host name)."
)
@click.option(
    "--act",
    type=click.Choice(["slurm"]),
    help="Drain this node with scontrol, through the breaker (default: dry run).",
)
def slurm_health_command(
    config_path: str | None,
    follow: tuple[str, ...],
    from_start: bool,
    kmsg: bool,
    store: str,
    node: str | None,
    act: str | None,
) -> None:
    """Slurm's HealthCheckProgram: read what is new, drain this node on a GPU fault."""
    import os
    import socket

    from fleetwatch.actions import slurm_health

    name = node or os.environ.get("SLURMD_NODENAME") or socket.gethostname().split(".", 1)[0]
    if not is_slurm_node_name(name):
        _fail(f"slurm-health: node name {one_line(name)!r} is not a Slurm node name")

    def say(line: str, level: int) -> None:
        click.echo(f"fleetwatch: {one_line(line)}", err=True)

    try:
        check = slurm_health.load(
            Path(config_path) if config_path else None,
            name,
            store,
            follow,
            kmsg,
            from_start,
            act == "slurm",
        )
        verdict = slurm_health.run(check, say)
    except (configuration.ConfigError, StoreError, SourceError) as exc:
        _fail(str(exc))
    for finding, row in verdict.unhealthy:
        outcome = _HEALTH.get(row.outcome, row.outcome) if row else "not drained"
        if row and row.outcome in ("failed", "held", "would_hold", "refused"):
            outcome += f" ({row.detail})"
        click.echo(one_line(f"{name}: unhealthy: {_health_line(finding)}: {outcome}"))
    for finding in verdict.silenced:
        click.echo(one_line(f"{name}: silenced: {_health_line(finding)}"))
    for finding in verdict.noted:
        click.echo(one_line(f"{name}: open, not draining: {_health_line(finding)}"))
    if verdict.elsewhere:  # a shared log: its other nodes are not this one's to drain
        others = sorted({one_line(f.node or "") for f in verdict.elsewhere})
        click.echo(
            f"fleetwatch: {len(verdict.elsewhere)} open finding(s) name other nodes, "
            f"never drained from here: {', '.join(others[:10])}",
            err=True,
        )
    for source, why in verdict.failed.items():
        click.echo(one_line(f"fleetwatch: error: could not read {source}: {why}"), err=True)
    if verdict.healthy:
        click.echo(f"{name}: healthy")
    click.echo(f"fleetwatch: {verdict.stats.summary()}", err=True)
    if not verdict.healthy:
        sys.exit(1)
    if verdict.failed:
        sys.exit(2)


def _health_line(finding: Finding) -> str:
    """``<id> (<severity>, <action>, gpu <i> <pci>): <summary>``."""
    what = [str(finding.severity), str(finding.action)]
    if finding.gpu is not None or finding.pci:
        what.append(" ".join(str(x) for x in ("gpu", finding.gpu, finding.pci) if x is not None))
    return f"{finding.id} ({', '.join(what)}): {finding.summary}"


@cli.command(
    name="findings",
    epilog=_epilog(
        "  fleetwatch findings                the open findings of fleetwatch-watch.db\n"
        "  fleetwatch findings --all --output jsonl --store /var/lib/fleetwatch/w.db\n"
        "  fleetwatch findings --redis redis://127.0.0.1:6379/0   a fleet's findings\n"
        "  fleetwatch findings --output incidents-table   what caused what",
        env=_ENV_COLUMNS,
    ),
)
@click.option(
    "--store", default="fleetwatch-watch.db", show_default=True, help="The watch store to read."
)
@click.option("--redis", "redis_url", help="Read a fleet's findings from this Redis instead.")
@click.option("--all", "everything", is_flag=True, help="Resolved findings too.")
@click.option(
    "--output",
    type=click.Choice(["table", "jsonl", *INCIDENT_FORMATS]),
    default=None,
    help="table (default on a terminal), jsonl (default otherwise); incidents: the "
    "findings linked cause -> effect, one JSON object a line; incidents-table.",
)
@click.option("--wide", is_flag=True, help="The table with a column each, whatever the width.")
def findings_command(
    store: str, redis_url: str | None, everything: bool, output: str | None, wide: bool
) -> None:
    """List the findings a watch keeps in its store (it may be running), or a fleet's."""
    if redis_url is not None:
        rows = _fleet_findings(redis_url, everything)
        store = _redacted(redis_url)
    else:
        if not Path(store).is_file():  # opening would make an empty store: say so instead
            _fail(f"no store at {store}")
        try:
            opened = Store(store)
            rows = opened.findings(None if everything else "open")
            opened.close()
        except StoreError as exc:
            _fail(str(exc))
    findings, unreadable = [], 0
    for row in rows:
        try:
            findings.append(Finding.from_json(row))
        except (KeyError, TypeError, ValueError):  # a row this version cannot read
            unreadable += 1
    findings.sort(key=report_order)
    fmt = output or ("table" if sys.stdout.isatty() else "jsonl")
    if fmt in INCIDENT_FORMATS:
        write_incidents(link(findings), fmt, sys.stdout)
    else:
        write(findings, fmt, sys.stdout, wide=wide)
    which = "" if everything else "open "
    said = f"fleetwatch: {len(findings)} {which}finding(s) in {one_line(store)}"
    if unreadable:
        said += f"; {unreadable} unreadable"
    click.echo(said, err=True)


_SPAN: Final = re.compile(r"(\d{1,9})\s*([smhdw])")


@cli.command(
    name="silence",
    epilog=_epilog(
        "  fleetwatch silence --node gpu-node-7 --for 2h --reason 'GPU swap, #4711'\n"
        "  fleetwatch silence --node gpu-node-7 --gpu 3 --detector thermal_throttle \\\n"
        "      --for 1d --reason 'fan replaced' --store /var/lib/fleetwatch/w.db\n"
        "  fleetwatch silence --list\n"
        "  fleetwatch silence --remove 3",
        exits=(_EXITS[0], "2  a usage or store error, or no silence of that id (one line)"),
        env="  LOGNAME, USER  who adds a silence (else the password database's name)",
    ),
)
@click.option(
    "--store", default="fleetwatch-watch.db", show_default=True, help="The watch's store."
)
@click.option("--node", help="Silence this node's findings.")
@click.option("--gpu", type=click.IntRange(0, 2**31 - 1), help="Only this GPU (index) of --node.")
@click.option("--detector", help="Only this detector's findings (fleetwatch detectors).")
@click.option("--for", "duration", metavar="SPAN", help="How long it holds: 30m, 2h, 1d, 1w.")
@click.option("--reason", help="Why: shown by --list and in the watch's log.")
@click.option("--list", "listing", is_flag=True, help="List the silences that hold now.")
@click.option("--remove", type=int, metavar="ID", help="End the silence of this id now.")
@click.option(
    "--output",
    type=click.Choice(["table", "jsonl"]),
    default=None,
    help="--list: table (default on a terminal), jsonl (default otherwise).",
)
def silence_command(
    store: str,
    node: str | None,
    gpu: int | None,
    detector: str | None,
    duration: str | None,
    reason: str | None,
    listing: bool,
    remove: int | None,
    output: str | None,
) -> None:
    """Record but do not announce what matches, for a while, in a running watch too.

    A watch using the store reads its silences every second: one added here holds
    within a second, without a restart, and ends by itself after --for.
    """
    adding = any(v is not None for v in (node, gpu, detector, duration, reason))
    if listing + (remove is not None) + adding > 1:
        _fail("silence: give --list, --remove ID, or a silence to add (--node ... --for ...)")
    if not Path(store).is_file():  # opening would make an empty store no watch reads
        _fail(f"no store at {store}")
    try:
        opened = Store(store)
        try:
            if listing:
                _list_silences(opened.silences(time.time()), output, store)
            elif remove is not None:
                if not opened.remove_silence(remove):
                    _fail(f"no silence {remove} in {store}")
                click.echo(f"silence {remove} removed from {one_line(store)}")
            else:
                _add_silence(opened, store, node, gpu, detector, duration, reason)
        finally:
            opened.close()
    except StoreError as exc:
        _fail(str(exc))


def _add_silence(
    store: Store,
    path: str,
    node: str | None,
    gpu: int | None,
    detector: str | None,
    duration: str | None,
    reason: str | None,
) -> None:
    if gpu is not None and node is None:
        _fail("silence: --gpu is a GPU index on one node: give --node too")
    if node is None and detector is None:
        _fail(
            "silence: give --list, --remove ID, or what to silence: "
            "--node N [--gpu G] [--detector D] --for 2h --reason WHY"
        )
    if node is not None and not node.strip():
        _fail("silence: --node is empty")
    known = [*REGISTRY, BREAKER]
    if detector is not None and detector not in known:
        _fail(f"silence: no detector {detector!r} (one of: {', '.join(known)})")
    if duration is None:
        _fail("silence: --for is needed (30m, 2h, 1d, 1w): a silence ends by itself")
    span = _SPAN.fullmatch(duration.strip().lower())
    if span is None or int(span[1]) == 0:
        _fail(f"silence: --for {duration!r} is no span such as 30m, 2h, 1d or 1w")
    if not (reason or "").strip():
        _fail("silence: --reason is needed: whoever sees the silence will ask why")
    assert reason is not None
    until = time.time() + int(span[1]) * _UNIT_S[span[2]]
    silence_id = store.add_silence(node, gpu, detector, until, reason, _user())
    matched = {"node": node, "gpu": gpu, "detector": detector}
    where = " ".join(f"{k}={v}" for k, v in matched.items() if v is not None)
    click.echo(one_line(f"silence {silence_id}: {where} until {when(until, 'wall')} UTC in {path}"))


def _user() -> str:
    """Who added a silence, as the system knows them (empty when it does not)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (a bare container)
        return ""


def _list_silences(rows: list[SilenceRow], output: str | None, store: str) -> None:
    fmt = output or ("table" if sys.stdout.isatty() else "jsonl")
    if fmt == "jsonl":
        for row in rows:
            click.echo(json_line(dataclasses.asdict(row)), nl=False)
    elif rows:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None)
        for column in ("id", "node", "gpu", "detector", "until (UTC)", "by"):
            table.add_column(column, no_wrap=True)
        table.add_column("reason", overflow="fold")  # the one column that wraps
        for row in rows:
            cells = (row.node, row.gpu, row.detector, when(row.until, "wall"), row.author)
            table.add_row(
                str(row.id),
                *(Text(one_line("-" if c is None else str(c))) for c in cells),
                Text(one_line(row.reason)),
            )
        Console().print(table)
    click.echo(f"fleetwatch: {len(rows)} silence(s) holding in {one_line(store)}", err=True)


def _redis_errors() -> tuple[type[Exception], ...]:
    """What a Redis connection or a bad URL raises (redis is imported only for fleet mode)."""
    import redis

    return (OSError, ValueError, redis.RedisError)


def _fleet_findings(url: str, everything: bool) -> list[dict[str, Any]]:
    """The findings a fleet's correlators committed to the Redis at ``url``."""
    _require("fleetwatch findings --redis", "redis")
    from fleetwatch.fleet.ledger import Ledger
    from fleetwatch.fleet.transport import connect

    try:
        rows = Ledger(connect(url)).findings()
    except _redis_errors() as exc:
        _fail(f"redis {_redacted(url)}: {exc}")
    return [r for r in rows if everything or r.get("status", "open") == "open"]


def _redacted(url: str) -> str:
    """A Redis URL as fleetwatch shows it: its password, if any, left out (the
    ``user:password@`` form and a ``password=`` query parameter alike)."""
    return _PASSWORD_QUERY.sub(r"\1***", _PASSWORD.sub(r"//\1***@", url))


_PASSWORD: Final = re.compile(r"//([^/@]*?:)?[^/@]*@")
_PASSWORD_QUERY: Final = re.compile(r"(?i)([?&]password=)[^&#]*")
_REDIS_DEFAULT: Final = "redis://127.0.0.1:6379/0"
_REDIS_HELP: Final = "The fleet's Redis (this machine's loopback unless told otherwise)."


@cli.command(
    name="agent",
    epilog=_epilog(
        "  live, on each node (its detectors here, the fleet's on the correlators):\n"
        "  fleetwatch agent --shards 16 --kmsg --dcgm http://127.0.0.1:9400/metrics\n"
        "  fleetwatch agent --redis redis://10.0.0.5:6379/0 --shards 16 --config w.toml\n"
        "  from finished files (every event to the correlators), then exit:\n"
        "  fleetwatch agent --shards 16 /var/log/gpu-node-17/\n"
        "  fleetwatch agent --shards 16 --end      the input ended: close every window",
        exits=(
            "0  files published; live: stopped by Ctrl-C or SIGTERM",
            "2  a usage, config, store or Redis error",
        ),
    ),
)
@click.argument("paths", nargs=-1)
@click.option("--redis", "redis_url", default=_REDIS_DEFAULT, show_default=True, help=_REDIS_HELP)
@click.option("--shards", type=click.IntRange(1, 1 << 20), required=True, help="Shards (S).")
@click.option("--name", help="This agent's name (default: the host name).")
@click.option("--cluster", default="cluster", show_default=True, help="The cluster's name.")
@click.option("--end", is_flag=True, help="Then tell every shard that the input ended.")
@_live_inputs
def agent_command(
    paths: tuple[str, ...],
    redis_url: str,
    shards: int,
    name: str | None,
    cluster: str,
    end: bool,
    **live: Any,
) -> None:
    """Send a node's events to a fleet's shards: live (watching), or from files."""
    import socket

    inputs = ("config_path", "follow", "kmsg", "nvml", "dcgm", "kubeconfig")
    local = ("from_start", "store", "jsonl", "node", "quiet")
    name = name or socket.gethostname()
    if any(live[key] for key in inputs):
        if paths or end:
            _fail("agent: PATH... and --end publish files; live inputs run a live agent: not both")
        live["store"] = live["store"] or "fleetwatch-agent.db"
        _live_agent(redis_url, shards, name, cluster, live)
        return
    if any(live[key] for key in local) or live["metrics_port"] is not None:
        _fail(
            "agent: --from-start, --store, --jsonl, --metrics-port, --node and --quiet are "
            "for a live agent (--follow, --kmsg, --nvml, --dcgm, --kubeconfig, --config)"
        )
    if not paths and not end:
        _fail("agent: give PATH... to publish, --end, or live inputs (--follow, --kmsg, ...)")
    _require("fleetwatch agent", "redis")
    from fleetwatch.fleet.agent import publish_end, publish_paths
    from fleetwatch.fleet.transport import RedisStreams, connect

    try:
        transport = RedisStreams(connect(redis_url))
        if paths:
            sent = publish_paths(transport, paths, shards, name, cluster)
            click.echo(
                f"fleetwatch: {sent.stats.summary()}; published {sent.events:,} events "
                f"in {sent.entries:,} entries",
                err=True,
            )
        if end:
            publish_end(transport, shards)
    except InputError as exc:
        _fail(str(exc))
    except _redis_errors() as exc:
        _fail(f"redis {_redacted(redis_url)}: {exc}")


def _live_agent(redis_url: str, shards: int, name: str, cluster: str, live: dict[str, Any]) -> None:
    """Run a live agent: a watch of the node family, the rest to the fleet."""
    _live_modules("fleetwatch agent", live["nvml"], live["kubeconfig"], "redis")
    from fleetwatch.fleet.agent import NODE_FAMILY, live_plan
    from fleetwatch.fleet.ledger import Ledger
    from fleetwatch.fleet.shards import families
    from fleetwatch.fleet.transport import RedisStreams, client_for
    from fleetwatch.fleet.uplink import Uplink
    from fleetwatch.watch import Watch, load_plan

    _log_to_stderr()
    try:  # Redis need not answer now: the uplink keeps what it sends until it does
        client = client_for(redis_url)
    except ValueError as exc:
        _fail(f"redis {_redacted(redis_url)}: {exc}")
    sent = [f for f in families() if f != NODE_FAMILY]
    uplink = Uplink(RedisStreams(client), Ledger(client), shards, name, sent, cluster)
    try:
        config_path = live["config_path"]
        plan = load_plan(Path(config_path) if config_path else None, _live_overrides(live))
        running = Watch(dataclasses.replace(live_plan(plan, uplink), console=not live["quiet"]))
    except (configuration.ConfigError, StoreError, SourceError) as exc:
        _fail(str(exc))
    _run_until_stopped(running)


@cli.command(
    name="announce",
    epilog=_epilog(
        "  fleetwatch announce --jsonl /var/log/fleetwatch/fleet.jsonl\n"
        "  fleetwatch announce --redis redis://10.0.0.5:6379/0 --webhook https://h/x\n"
        "  fleetwatch announce --metrics-port 9109 --consumer a2   a second announcer",
        exits=("0  stopped by Ctrl-C or SIGTERM", "2  a usage, config, store or Redis error"),
        env="  FLEETWATCH_WEBHOOK_SECRET  the key that signs --webhook posts",
    ),
)
@click.option("--redis", "redis_url", default=_REDIS_DEFAULT, show_default=True, help=_REDIS_HELP)
@click.option("--group", default="announce", show_default=True, help="The consumer group.")
@click.option("--consumer", help="This announcer's stable name (default: the host name).")
@click.option("--jsonl", help="Append each transition to this JSONL file.")
@click.option("--webhook", help="POST announced transitions to this URL (signed).")
@click.option(
    "--store",
    default="fleetwatch-announce.db",
    show_default=True,
    help="The webhook's outbox (kept across restarts).",
)
@click.option("--metrics-port", type=click.IntRange(0, 65535), help="Serve /metrics here.")
@click.option("--metrics-address", default="127.0.0.1", show_default=True)
@click.option("--quiet", is_flag=True, help="No console lines (other outputs still run).")
def announce_command(
    redis_url: str,
    group: str,
    consumer: str | None,
    jsonl: str | None,
    webhook: str | None,
    store: str,
    metrics_port: int | None,
    metrics_address: str,
    quiet: bool,
) -> None:
    """Tell the fleet's transitions (its output stream) to JSONL, webhook, console, /metrics."""
    _require("fleetwatch announce", "redis", "tenacity", "urllib3")
    import os
    import socket

    from fleetwatch.fleet.announce import Announcer, open_sinks
    from fleetwatch.fleet.transport import connect
    from fleetwatch.sinks.metrics import Metrics
    from fleetwatch.sinks.webhook import WebhookConfig

    hook = None
    if webhook is not None:
        hook = WebhookConfig(url=webhook)
        if not webhook.startswith(("http://", "https://")):
            _fail("announce: --webhook must be an http(s) URL")
        if not os.environ.get(hook.secret_env):
            _fail(f"the webhook signs what it sends: set {hook.secret_env} to a secret")
    _log_to_stderr()
    metrics = Metrics() if metrics_port is not None else None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if metrics is not None:
        try:
            metrics.serve(metrics_address, metrics_port or 0)
        except OSError as exc:
            _fail(f"metrics on {metrics_address}:{metrics_port}: {exc}")
    try:
        sinks = open_sinks(jsonl, hook, store, not quiet, metrics)
    except OSError as exc:  # the JSONL file cannot be opened
        _fail(f"--jsonl {one_line(jsonl or '')}: {exc.strerror or exc}")
    except StoreError as exc:
        _fail(str(exc))
    try:
        client = connect(redis_url)
        announcer = Announcer(client, group, consumer or socket.gethostname(), sinks)
        try:
            announcer.start()
            announcer.run(stop.is_set)
        finally:
            announcer.close()
    except _redis_errors() as exc:
        _fail(f"redis {_redacted(redis_url)}: {exc}")
    except StoreError as exc:
        _fail(str(exc))
    click.echo(
        f"fleetwatch: announcer {announcer.consumer}: {announcer.told:,} transitions told, "
        f"{announcer.repeats} repeats dropped, {announcer.bad} bad entries",
        err=True,
    )


@cli.command(
    name="correlate",
    epilog=_epilog(
        "  fleetwatch correlate --shards 16\n"
        "  fleetwatch correlate --redis redis://10.0.0.5:6379/0 --shards 16 --worker c2",
        exits=("0  stopped by Ctrl-C or SIGTERM", "2  a usage, config or Redis error"),
    ),
)
@click.option("--redis", "redis_url", default=_REDIS_DEFAULT, show_default=True, help=_REDIS_HELP)
@click.option("--shards", type=click.IntRange(1, 1 << 20), required=True, help="Shards (S).")
@click.option("--worker", help="This worker's name (default: host name and process id).")
@click.option("--config", "config_path", type=click.Path(), help="A fleetwatch.toml.")
@click.option(
    "--lease-ms",
    type=click.IntRange(300, 600_000),
    default=5000,
    show_default=True,
    help="A shard lease's time to live: a dead worker's shards move after it.",
)
def correlate_command(
    redis_url: str, shards: int, worker: str | None, config_path: str | None, lease_ms: int
) -> None:
    """Own a fair share of the fleet's shards and run the detectors on them."""
    _require("fleetwatch correlate", "redis")
    import os
    import socket

    from fleetwatch.fleet.correlate import Correlator, Settings
    from fleetwatch.fleet.ledger import Ledger
    from fleetwatch.fleet.transport import RedisStreams, connect

    try:
        configs = configuration.load(Path(config_path) if config_path else None)
    except configuration.ConfigError as exc:
        _fail(str(exc))
    _log_to_stderr()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    name = worker or f"{socket.gethostname()}-{os.getpid()}"
    try:
        client = connect(redis_url)
        correlator = Correlator(
            name, RedisStreams(client), Ledger(client), configs, Settings(shards, lease_ms)
        )
        correlator.run(stop.is_set)
    except _redis_errors() as exc:
        _fail(f"redis {_redacted(redis_url)}: {exc}")
    click.echo(
        f"fleetwatch: correlator {name}: {correlator.entries:,} entries applied, "
        f"{correlator.refused} commit(s) refused, {correlator.bad} bad entries, "
        f"{correlator.repeated} repeats dropped",
        err=True,
    )


def _log_to_stderr() -> None:
    """fleetwatch's own log lines on stderr, with time and level (not other libraries')."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s %(levelname)s fleetwatch: %(message)s", "%Y-%m-%dT%H:%M:%S%z"
        )
    )
    logger = logging.getLogger("fleetwatch")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _silence(text: str) -> Silence:
    """``node=gpu-node-7,detector=thermal_throttle,until=2026-12-01T00:00Z``."""
    fields: dict[str, Any] = {}
    for part in filter(None, text.split(",")):
        key, sep, value = part.partition("=")
        if not sep or key not in ("node", "gpu", "detector", "until"):
            _fail(f"--silence {text!r}: expected node=, gpu=, detector= or until=")
        fields[key] = value
    if "gpu" in fields:
        if not fields["gpu"].isdigit():
            _fail(f"--silence {text!r}: gpu= must be a GPU index")
        fields["gpu"] = int(fields["gpu"])
    if "until" in fields:
        fields["until"] = _moment(fields["until"], "--silence until=", None)
    if not fields:
        _fail("--silence needs at least one of node=, gpu=, detector=, until=")
    return Silence(**fields)


@cli.command(
    name="simulate",
    epilog=_epilog(
        "  fleetwatch simulate --list\n"
        "  fleetwatch simulate --scenario dbe-row-remap --out /tmp/fleet --nodes 8",
        exits=(_EXITS[0], "2  a usage error, or --out cannot be written (one line)"),
    ),
)
@click.option(
    "--scenario",
    metavar="NAME",
    help="The fault to inject: one of those --list lists.",
)
@click.option("--list", "listing", is_flag=True, help="List the scenarios, one a line.")
@click.option("--out", type=click.Path(file_okay=False), help="Folder to write (new or empty).")
@click.option(
    "--force",
    is_flag=True,
    help="Write into a folder that is not empty (files of the same "
    "name are replaced, the others stay, and replay reads them too).",
)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--nodes", type=click.IntRange(1, 100_000), default=4, show_default=True)
@click.option(
    "--lines-per-node",
    type=click.IntRange(0, 10**9),
    default=2000,
    show_default=True,
    help="Kernel log lines of each node (the fleet's size on disk).",
)
def simulate_command(
    scenario: str | None,
    listing: bool,
    out: str | None,
    force: bool,
    seed: int,
    nodes: int,
    lines_per_node: int,
) -> None:
    """Write a deterministic synthetic fleet with one known fault, and its answer."""
    if listing:
        click.echo("\n".join(ALL_SCENARIOS))
        return
    if scenario is None or scenario not in ALL_SCENARIOS:
        said = "give --scenario NAME" if scenario is None else f"no scenario {scenario!r}"
        _fail(f"simulate: {said}; one of: {', '.join(ALL_SCENARIOS)}")
    if out is None:
        _fail("simulate: give --out DIR, a new or empty folder to write the fleet to")
    folder = Path(out)
    try:
        if not force and folder.is_dir() and any(folder.iterdir()):
            _fail(
                f"simulate: --out {out} is not empty: give a new or empty folder, or --force "
                "to write into it (replay would read what is there too)"
            )
        answer = simulate(scenario, folder, seed, nodes, lines_per_node)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != out else ""
        _fail(f"simulate: cannot write --out {out}{where}: {exc.strerror or exc}")
    key = one_line(str(folder / "answer.json"))
    click.echo(f"wrote {nodes} node(s) to {one_line(out)}; answer in {key}:")
    for expected in answer.expected:
        where = " ".join(
            f"{k}={v}" for k, v in dataclasses.asdict(expected).items() if v is not None
        )
        click.echo(f"  {where}")
    for incident in answer.incidents:
        effects = ",".join(e.detector for e in incident.effects)
        click.echo(
            f"  incident rule={incident.rule} root={incident.root.detector} "
            f"effects={effects} action={incident.action}"
        )


_XID_CODE: Final = re.compile(r"[0-9]{1,7}")


@cli.command(epilog=_epilog("  fleetwatch explain xid 79"))
@click.argument("what", metavar="xid")
@click.argument("code", metavar="CODE", required=False)
def explain(what: str, code: str | None) -> None:
    """What an Xid means, its likely cause and the action fleetwatch takes."""
    if what.lower() != "xid":
        example = what if _XID_CODE.fullmatch(what) else "79"
        _fail(f"explain: it explains Xids: fleetwatch explain xid {example}")
    if code is None:
        _fail("explain: which Xid? fleetwatch explain xid 79")
    if not _XID_CODE.fullmatch(code) or int(code) > 10**6:
        _fail(f"explain: Xid {code!r} is no Xid code, a number such as 79 or 119")
    number = int(code)
    entry = xid(number)
    click.echo(f"Xid {number}: {entry.name}")
    if entry.known:
        click.echo(f"  cause:    {entry.cause}")
        click.echo(f"  severity: {entry.severity}")
        click.echo(f"  action:   {entry.action}")
        click.echo(f"  fatal:    {'yes' if entry.fatal else 'no'} (counts toward RMA escalation)")
    else:
        click.echo(f"  unknown to fleetwatch: treated as {entry.severity}, {entry.action}")
    click.echo(f"  {entry.note}")


@cli.command(epilog=_epilog("  fleetwatch detectors", env=_ENV_COLUMNS))
def detectors() -> None:
    """The pattern library, with each detector's defaults."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for spec in REGISTRY.values():
        table = Table(title=f"{spec.name}: {spec.description}", title_justify="left")
        table.add_column("setting")
        table.add_column("default", justify="right")
        table.add_column("meaning")
        docs = configuration.field_docs(spec.config)
        for f in dataclasses.fields(spec.config):
            table.add_row(f.name, str(f.default), docs.get(f.name, ""))
        console.print(table)
        console.print(f"reads: {', '.join(sorted(spec.kinds))}\n")


def _write_jsonl(batches: Any) -> None:
    out = sys.stdout
    for batch in batches:
        out.write(event_lines(batch))
    out.flush()


def _write_summary(batches: Any) -> None:
    # Counted from the columns, never one Python object per event.
    counts: Counter[tuple[int, int]] = Counter()
    nodes: dict[tuple[int, int], set[str]] = {}
    for batch in batches:
        assert isinstance(batch, EventBatch)
        # (kind, source) as one number, then (kind, source, node): two array calls a batch
        pair = batch["kind"].astype(np.int64) * len(SOURCES) + batch["source"]
        sizes = np.bincount(pair)
        for at in sizes.nonzero()[0].tolist():
            counts[divmod(at, len(SOURCES))] += int(sizes[at])
        width = len(batch.strings) + 1  # node ids and -1, absent, shifted to 0..
        keys = np.sort(pair * width + batch["node"] + 1)
        # each value once, by sort and compare: np.unique would import numpy.ma to ask
        # whether the keys are masked (a tenth of the start-up)
        first = np.empty(keys.size, dtype=bool)
        first[:1] = True
        np.not_equal(keys[1:], keys[:-1], out=first[1:])
        for at in keys[first].tolist():
            at_pair, node = divmod(at, width)
            named = nodes.setdefault(divmod(at_pair, len(SOURCES)), set())
            if node:
                named.add(batch.strings[node - 1])
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Events by kind", title_justify="left")
    table.add_column("kind")
    table.add_column("source")
    table.add_column("events", justify="right")
    table.add_column("nodes", justify="right")
    for (kind, source), n in sorted(counts.items()):
        table.add_row(KINDS[kind], SOURCES[source], f"{n:,}", f"{len(nodes[kind, source]):,}")
    Console().print(table)


def main() -> None:
    """Entry point: run the CLI, turning usage errors into one line and exit 2."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError:  # bare ``fleetwatch``: not an error
        click.echo(_SHORT_USAGE)
        sys.exit(0)
    except click.UsageError as exc:
        _fail(exc.format_message())
    except EmptyWindow as exc:  # --since after --until
        _fail(str(exc))
    except click.exceptions.Abort:
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except InputError as exc:
        _fail(str(exc))

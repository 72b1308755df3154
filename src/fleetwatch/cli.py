"""The ``fleetwatch`` command: a thin layer that parses arguments and calls the library.

Only this module turns errors into exit codes: 0 done, 2 a usage or input error
(one line on stderr naming it). Unreadable records are not errors: they are counted
and reported in the summary line on stderr, and the exit code stays 0.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Any, NoReturn

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from fleetwatch.events import KINDS, SOURCES, EventBatch
from fleetwatch.sources import InputError, ReadOptions, ReadStats, read_paths
from fleetwatch.timestamps import TimeZoneError, parse_zone


def _fail(message: str) -> NoReturn:
    click.echo(f"fleetwatch: error: {message}", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fleetwatch")
def cli() -> None:
    """Find GPU faults in GPU-fleet telemetry and say what to do about each one."""


@cli.command()
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
def parse(
    paths: tuple[str, ...], output: str, node: str | None, year: int | None, zone: str | None
) -> None:
    """Print the normalized events in PATHS (files, folders, .gz, - for stdin)."""
    try:
        options = ReadOptions(node=node, year=year, zone=parse_zone(zone) if zone else None)
    except TimeZoneError as exc:
        _fail(str(exc))
    stats = ReadStats()
    batches = read_paths(list(paths), options, stats)
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
    click.echo(f"fleetwatch: {stats.summary()}", err=True)


def _write_jsonl(batches: Any) -> None:
    out = sys.stdout
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
    for batch in batches:
        out.write("".join(dumps(record) + "\n" for record in batch.records()))
    out.flush()


def _write_summary(batches: Any) -> None:
    # Counted from the columns, never one Python object per event.
    counts: Counter[tuple[int, int]] = Counter()
    nodes: dict[tuple[int, int], set[str]] = {}
    for batch in batches:
        assert isinstance(batch, EventBatch)
        pairs, sizes = np.unique(
            np.stack([batch["kind"], batch["source"]]), axis=1, return_counts=True
        )
        for (kind, source), count in zip(pairs.T.tolist(), sizes.tolist(), strict=True):
            counts[kind, source] += count
        for kind, source in pairs.T.tolist():
            rows = (batch["kind"] == kind) & (batch["source"] == source)
            ids = np.unique(batch["node"][rows]).tolist()
            nodes.setdefault((kind, source), set()).update(batch.strings[i] for i in ids if i >= 0)
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
    except click.UsageError as exc:
        _fail(exc.format_message())
    except click.exceptions.Abort:
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except InputError as exc:
        _fail(str(exc))

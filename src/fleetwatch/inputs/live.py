"""Live sources: what ``fleetwatch watch`` reads, each on a thread of its own.

A live source runs until told to stop and hands over what it read with
``deliver(batches, position)``: the events, and where the source stands after them
(JSON-able, saved in the store with the detectors' state; ``None`` when unchanged).
It is built from its saved position, so a restart goes on where the last commit was.
A source that raises is restarted with backoff by the watch; the others go on. What
no retry can fix (a file that cannot appear, no NVML, no kubeconfig) ``check`` says at
start, as a ``SourceError``: one line, before any thread runs. A source that must take
its place before it reads (``FileSource``: the end of what a file already holds) has
a ``ready`` event, set once it has; the watch says "watching" after that, so a line
written once it has said so is read, never skipped as old history.

Built with ``once=True`` (``FileSource``, ``KmsgSource``), a source reads what is there
from its position, waits out a record held at the end for ``quiet_s``, and returns:
one run of ``fleetwatch slurm-health``.

The sources: ``FileSource`` (here: log files and folders, ``follow.py``), ``KmsgSource``
(``kmsg_live.py``), ``NvmlSource`` (``nvml.py``), ``ScrapeSource`` (``scrape.py``) and
``KubeSource`` (``kube_watch.py``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from fleetwatch.events import EventBatch
from fleetwatch.inputs.follow import FilePosition, Follower
from fleetwatch.sources.context import ReadOptions, ReadStats

Deliver = Callable[[list[EventBatch], Any], None]


class SourceError(RuntimeError):
    """A source that cannot work here, whatever a retry does (one line for the user)."""


class LiveSource(Protocol):
    """What the watch needs of a live source."""

    name: str
    stats: ReadStats

    def check(self) -> None:
        """Raise ``SourceError`` for what no retry can fix; transient trouble is fine."""
        ...

    def run(self, deliver: Deliver, stop: threading.Event) -> None:
        """Read until ``stop`` is set, delivering as it goes."""
        ...


@dataclass(frozen=True)
class FileSettings:
    """``[[watch.files]]``: a log file or a folder of them to follow."""

    path: str = ""
    """The file or folder (every file in it, and files that appear later)."""
    from_start: bool = False
    """On the very first start, read what the files already hold (default: from the end)."""
    poll_s: float = 0.1
    """Seconds between looks for new lines."""
    quiet_s: float = 0.2
    """A record held for the lines that may continue it is read after this many quiet
    seconds (a fatal AER report at the end of a file that then stays quiet)."""


class FileSource:
    """Follows a file or a folder (``follow.Follower``)."""

    def __init__(
        self, settings: FileSettings, options: ReadOptions, saved: Any, once: bool = False
    ) -> None:
        self.name = f"file:{settings.path}"
        self.settings = settings
        self.once = once  # read what the files hold now, then return (slurm-health)
        self.options = options
        self.stats = ReadStats()
        self._positions = {k: FilePosition.from_json(v) for k, v in (saved or {}).items()}
        self.ready = threading.Event()  # set once each file has been looked at

    def check(self) -> None:
        """A path that is not there yet is waited for, in a folder that is."""
        path = self.settings.path
        if not os.path.exists(path) and not os.path.isdir(os.path.dirname(path) or "."):
            raise SourceError(f"follow {path}: no such file or folder, nor a folder to wait in")

    def run(self, deliver: Deliver, stop: threading.Event) -> None:
        follower = Follower(
            self.settings.path,
            self.options,
            self.stats,
            saved=self._positions,
            from_start=self.settings.from_start,
            quiet_s=self.settings.quiet_s,
        )
        last: dict[str, Any] | None = None
        try:
            while not stop.is_set():
                batches = follower.poll()
                self.ready.set()  # every file there now has its place: later lines are new
                self._positions = follower.positions()  # a restart after a failure resumes here
                now = {k: p.to_json() for k, p in self._positions.items()}
                if batches or now != last:
                    deliver(batches, now)
                    last = now
                if self.once and not follower.holding():
                    return
                stop.wait(self.settings.poll_s)
        finally:
            self.ready.set()  # failed before its first look: nobody waits on it
            follower.close()

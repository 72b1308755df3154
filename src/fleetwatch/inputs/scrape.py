"""dcgm-exporter, scraped over HTTP: ``GET /metrics`` every ``interval_s``.

The exporter's text goes through the same ``dcgm`` reader as a saved scrape in
``replay`` (prometheus-client's parser, the same metric catalog). A live scrape has
no timestamps, so each sample takes the time of its scrape. A scrape that fails
(connection refused, a timeout, a status other than 200) raises, and the watch
restarts the source with backoff and reports it; the other sources go on.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import numpy as np
import urllib3

from fleetwatch.events import CLOCK_ID, BatchBuilder, EventBatch
from fleetwatch.inputs.live import Deliver
from fleetwatch.sources.context import FileContext, Identities, ReadOptions, ReadStats
from fleetwatch.sources.stream import LineStream


@dataclass(frozen=True)
class ScrapeSettings:
    """``[[watch.dcgm]]``: a dcgm-exporter to scrape."""

    url: str = ""
    """The exporter's metrics URL, e.g. http://127.0.0.1:9400/metrics."""
    interval_s: float = 10.0
    """Seconds between scrapes."""
    node: str = ""
    """The node for samples without a Hostname label (default: the URL's host)."""
    timeout_s: float = 5.0
    """Seconds one scrape may take."""


class ScrapeFailed(RuntimeError):
    """The exporter did not answer with its metrics."""


class ScrapeSource:
    """Scrapes one dcgm-exporter."""

    def __init__(self, settings: ScrapeSettings, options: ReadOptions) -> None:
        self.name = f"dcgm:{settings.url}"
        self.settings = settings
        self.options = options
        self.stats = ReadStats()
        self.identities = Identities()
        self.http = urllib3.PoolManager(retries=False, timeout=settings.timeout_s)
        self.node = settings.node or urlparse(settings.url).hostname or "dcgm-exporter"

    def check(self) -> None:
        """An exporter that is down now may be up soon: nothing to refuse at start."""

    def run(self, deliver: Deliver, stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            deliver(self.scrape(), None)
            stop.wait(max(0.0, self.settings.interval_s - (time.monotonic() - started)))

    def scrape(self) -> list[EventBatch]:
        """One scrape's samples, stamped with the time it was taken."""
        try:
            response = self.http.request("GET", self.settings.url)
        except urllib3.exceptions.HTTPError as exc:
            raise ScrapeFailed(f"{self.settings.url}: {type(exc).__name__}") from exc
        if response.status != 200:
            raise ScrapeFailed(f"{self.settings.url}: HTTP {response.status}")
        now = time.time()
        ctx = FileContext(
            self.settings.url,
            self.node,
            self.options,
            self.stats,
            self.identities,
            BatchBuilder(),
            now,
        )
        LineStream(ctx).feed(response.data, eof=True)
        batches = ctx.take()
        for batch in batches:
            _stamp(batch, now)
        return batches


def _stamp(batch: EventBatch, now: float) -> None:
    unstamped: Any = np.isnan(batch["ts"])
    batch["ts"][unstamped] = now
    batch["clock"][unstamped] = CLOCK_ID["wall"]

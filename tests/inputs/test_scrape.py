"""Scraping dcgm-exporter over HTTP, from a loopback server serving a real scrape."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fleetwatch.events import concat
from fleetwatch.inputs.scrape import ScrapeFailed, ScrapeSettings, ScrapeSource
from fleetwatch.sources import ReadOptions, ReadStats, read_paths

SCRAPE_FILE = Path(__file__).parent.parent / "data" / "dcgm" / "scrape.prom"
SCRAPE = SCRAPE_FILE.read_bytes()


@pytest.fixture
def exporter() -> Iterator[ThreadingHTTPServer]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/metrics":
                self.send_error(500)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(SCRAPE)))
            self.end_headers()
            self.wfile.write(SCRAPE)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_scrape_reads_like_a_saved_one_stamped_with_the_scrape_time(
    exporter: ThreadingHTTPServer,
) -> None:
    url = f"http://127.0.0.1:{exporter.server_port}/metrics"
    source = ScrapeSource(ScrapeSettings(url=url), ReadOptions())
    before = time.time()
    events = concat(source.scrape())
    assert len(events) > 0
    records = list(events.records())
    own = [r for r in records if not before <= r["ts"] <= time.time()]
    # the one sample this capture carries with its own timestamp keeps it
    assert [r["ts"] for r in own] == [1722830053.0]
    assert {r["clock"] for r in records} == {"wall"}
    assert {r["source"] for r in records} == {"dcgm"}
    assert any(r["kind"] == "temperature" for r in records)
    saved = ReadStats()  # the same text read from a file counts the same bad samples
    assert len(concat(list(read_paths([str(SCRAPE_FILE)], stats=saved)))) == len(events)
    assert source.stats.unreadable == saved.unreadable


def test_a_failing_exporter_raises_for_the_watch_to_retry(exporter: ThreadingHTTPServer) -> None:
    wrong = ScrapeSource(
        ScrapeSettings(url=f"http://127.0.0.1:{exporter.server_port}/wrong"), ReadOptions()
    )
    with pytest.raises(ScrapeFailed, match="HTTP 500"):
        wrong.scrape()
    port = exporter.server_port
    exporter.shutdown()
    exporter.server_close()
    down = ScrapeSource(ScrapeSettings(url=f"http://127.0.0.1:{port}/metrics"), ReadOptions())
    with pytest.raises(
        ScrapeFailed, match=r"NewConnectionError|MaxRetryError|ConnectionRefused|127\.0\.0\.1"
    ):
        down.scrape()

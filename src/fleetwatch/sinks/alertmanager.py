"""Alertmanager: each open finding an alert, posted to ``/api/v2/alerts``, resolved with it.

An alert is the finding's labels (``alertname`` FleetwatchFinding, ``node``, ``gpu``,
``pci``, ``detector``, ``severity``, ``action``, ``finding_id``; a label the finding
has no value for is left out), its summary and first evidence lines as annotations,
``startsAt`` (when it was first seen) and ``endsAt``:

* **While open**, ``endsAt`` is ``ends_after_s`` past each post, and every open alert is
  posted again every ``resend_s`` (as Prometheus does: 4 x its 1 min resend delay), so
  Alertmanager keeps it firing, whatever its ``resolve_timeout``; should fleetwatch
  stop for good, Alertmanager resolves its alerts by themselves at ``endsAt``.
* **Resolved**: posted once more with ``endsAt`` the time the watch resolved it.
* **Escalated** to another severity or action (other labels, so another alert for
  Alertmanager): the new one fires and the old one is resolved in the same post.

Which findings: what the lifecycle announces (not silenced, not flapping), and the
later transitions of what was posted. After a restart, the open findings the lifecycle
would announce now are posted at once and go on being re-posted.

Transitions reach this sink as webhook ones do, through the store's outbox
(``store.Outbox``), written in the same transaction as the finding: a crash loses
none, a restart sends what is left. One thread of its own posts them in order, up to
100 in one request, and retries a failed request (connection error, timeout, 408, 429,
5xx) with exponential backoff and jitter (tenacity): the watch loop never waits for
Alertmanager. With several Alertmanagers (a cluster's peers: each must hear every
alert), a request is posted to each and counts as delivered once one took it, as
Prometheus does; a peer that missed it hears the open alerts at the next re-post. A
request every Alertmanager refuses (another 4xx), or that none took for
``give_up_after_s``, goes to the dead-letter file; the open alerts it carried are
still re-posted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import urllib3

from fleetwatch.findings import Finding
from fleetwatch.sinks.metrics import label  # one line, valid UTF-8: Alertmanager refuses less
from fleetwatch.sinks.one_line import one_line
from fleetwatch.sinks.sender import Refused, Retry, Sender, Stopping
from fleetwatch.store import Announcement, Outbox

SINK: Final = "alertmanager"
"""The outbox rows of this sink."""
ALERTNAME: Final = "FleetwatchFinding"
API_PATH: Final = "/api/v2/alerts"
RETRY_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})
EVIDENCE_LINES: Final = 10
"""Evidence lines in the ``evidence`` annotation."""
BATCH: Final = 100
"""Transitions in one request."""
RESEND_CHUNK: Final = 500
"""Alerts in one re-post request."""


@dataclass(frozen=True)
class AlertmanagerConfig:
    """Where to post alerts, and how often to post the open ones again."""

    urls: tuple[str, ...] = ()
    """Alertmanager's URL (``http://host:9093``), one per peer of a cluster."""
    timeout_s: float = 5.0
    """Seconds for one request (connect and read)."""
    resend_s: float = 60.0
    """Open alerts are posted again this often."""
    ends_after_s: float = 240.0
    """An open alert's ``endsAt``: this long after each post (more than ``resend_s``)."""
    give_up_after_s: float = 3600.0
    """Seconds of failed retries after which a request goes to the dead-letter file."""
    dead_letter: str = "fleetwatch-alertmanager-dead-letter.jsonl"
    """The file for requests that could not be delivered (relative: next to the store)."""


def endpoint(url: str) -> str:
    """The alerts endpoint of an Alertmanager at ``url`` (given as base or whole)."""
    url = url.rstrip("/")
    return url if url.endswith(API_PATH) else url + API_PATH


def timestamp(epoch_s: float) -> str:
    """RFC 3339 in UTC, as the API wants it."""
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


@dataclass(frozen=True)
class Alert:
    """One alert as posted: its labels and annotations, and when it started."""

    labels: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, str], ...]
    starts_at: float

    @classmethod
    def of(cls, finding: Finding, now: float) -> Alert:
        """The alert for ``finding``, first seen by the watch no later than ``now``."""
        named = {
            "node": finding.node,
            "gpu": finding.gpu,
            "pci": finding.pci,
            "detector": finding.detector,
            "severity": str(finding.severity),
            "action": str(finding.action),
            "finding_id": finding.id,
        }
        labels = {"alertname": ALERTNAME} | {
            k: label(v) for k, v in named.items() if v is not None and v != ""
        }
        annotations = {"summary": one_line(finding.summary)}
        if finding.evidence:
            lines = finding.evidence[:EVIDENCE_LINES]
            annotations["evidence"] = "\n".join(one_line(line) for line in lines)
        # the incident's own first time where it is a wall-clock time; never after now
        first = finding.first_ts if finding.clock == "wall" else None
        starts = min(first, now) if first is not None else now
        return cls(tuple(sorted(labels.items())), tuple(annotations.items()), starts)

    def body(self, ends_at: float) -> dict[str, Any]:
        """The JSON the API takes, ending at ``ends_at`` (never before it started)."""
        return {
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": timestamp(self.starts_at),
            "endsAt": timestamp(max(ends_at, self.starts_at)),
        }


class Alertmanager(Sender):
    """Posts the outbox's alertmanager rows, and the open alerts again, from its own thread."""

    def __init__(
        self,
        config: AlertmanagerConfig,
        store_path: Path,
        still_open: Iterable[Finding] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``still_open``: the open findings the lifecycle would announce (after a restart)."""
        super().__init__(
            "alertmanager", store_path, config.dead_letter, config.timeout_s, config.give_up_after_s
        )
        self.config = config
        self.clock = clock
        now = clock()
        self.active: dict[str, Alert] = {f.id: Alert.of(f, now) for f in still_open}
        self.endpoints = [endpoint(url) for url in config.urls]
        self.resent = 0  # re-post requests that one Alertmanager took

    def _run(self) -> None:
        outbox = Outbox(self.store_path, SINK)
        try:
            self._resend(self.clock())  # what was open at start: posted at once
            next_resend = self.clock() + self.config.resend_s
            while not self._stop.is_set():
                items = outbox.pending(BATCH)
                if items:
                    posted = self._apply(items)
                    if posted and not self._deliver(posted, len(items)):
                        return  # stopping: the rows stay for the next start
                    outbox.done(item.seq for item in items)
                now = self.clock()
                if now >= next_resend:  # also while rows keep coming
                    self._resend(now)
                    next_resend = now + self.config.resend_s
                if len(items) < BATCH:  # else more are waiting: no pause
                    self._wake.wait(min(1.0, max(0.0, next_resend - now)))
                    self._wake.clear()
        finally:
            outbox.close()

    def _apply(self, items: list[Announcement]) -> list[tuple[Alert, float | None]]:
        """What to post for these transitions (each alert with its end, None while open);
        ``active`` follows them."""
        posted: list[tuple[Alert, float | None]] = []
        for item in items:
            finding = Finding.from_json(item.body)
            told = "quiet" not in item.body  # announced: not silenced, not flapping
            before = self.active.get(finding.id)
            if before is None and not told:
                continue  # never posted and not to be
            if item.body.get("transition") == "resolved":
                alert = before or Alert.of(finding, item.created)
                posted.append((alert, item.created))
                self.active.pop(finding.id, None)
                continue
            alert = Alert.of(finding, item.created)
            if before is not None:
                alert = Alert(alert.labels, alert.annotations, before.starts_at)
                if before.labels != alert.labels:  # another alert now: the old one ends
                    posted.append((before, item.created))
            self.active[finding.id] = alert
            posted.append((alert, None))
        return posted

    def _resend(self, now: float) -> None:
        """Post every open alert again, with a later ``endsAt``; a failure waits for the next."""
        alerts = list(self.active.values())  # none: no request
        for start in range(0, len(alerts), RESEND_CHUNK):
            chunk = alerts[start : start + RESEND_CHUNK]
            body = [a.body(ends_at=now + self.config.ends_after_s) for a in chunk]
            try:
                self._post(json.dumps(body).encode())
            except (Retry, Refused):
                return
            self.resent += 1

    def _bodies(self, posted: list[tuple[Alert, float | None]]) -> list[dict[str, Any]]:
        """The alerts as posted now: an open one ends ``ends_after_s`` from now."""
        later = self.clock() + self.config.ends_after_s
        return [alert.body(later if ends is None else ends) for alert, ends in posted]

    def _deliver(self, posted: list[tuple[Alert, float | None]], transitions: int) -> bool:
        """Deliver or dead-letter ``posted``; False only when stopping first.

        Each try is written afresh: after a long outage an open alert still ends in the
        future, not at a time the outage has passed."""
        try:
            why = self._attempt(lambda: self._post(json.dumps(self._bodies(posted)).encode()))
        except Stopping:
            return False
        if why is None:
            self.delivered += transitions
        else:
            self._bury({"failed": why, "at": self.clock(), "alerts": self._bodies(posted)})
        return True

    def _post(self, body: bytes) -> None:
        """Post to every Alertmanager; done when one took it."""
        headers = {"Content-Type": "application/json", "User-Agent": "fleetwatch"}
        why: list[str] = []
        retry = taken = False
        for url in self.endpoints:
            try:
                response = self.http.request("POST", url, body=body, headers=headers)
            except urllib3.exceptions.HTTPError as exc:
                self.failed_attempts += 1
                why.append(f"{url}: {type(exc).__name__}")
                retry = True
                continue
            if 200 <= response.status < 300:
                taken = True
                continue
            self.failed_attempts += 1
            text = one_line(response.data[:200].decode("utf-8", "replace").strip())
            why.append(f"{url}: HTTP {response.status} {text}".rstrip())
            retry = retry or response.status in RETRY_STATUS
        if taken:
            return
        raise (Retry if retry else Refused)("; ".join(why))

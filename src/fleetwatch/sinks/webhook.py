"""The webhook: POST each announced transition's finding JSON to a URL, at least once.

Announcements wait in the store's outbox (``store.Outbox``), written in the same
transaction as the finding, so a crash loses none: after a restart the rows still
there are sent again. A receiver drops a repeat by the finding's stable ``id`` and the
``transition`` in the body (the ``X-Fleetwatch-Delivery`` header names the outbox row).

* **Signed, with a time stamp:** ``X-Fleetwatch-Signature: t=<unix seconds>,v1=<hex>``,
  where ``<hex>`` is the HMAC-SHA256, with a secret from the environment
  (``secret_env``), of ``<t>.<body>``: the time stamp's digits, a dot and the exact
  body bytes (the scheme Stripe and Slack use). A receiver computes the same HMAC over
  the raw body, compares in constant time, and refuses a ``t`` older than a few
  minutes, so a captured request cannot be replayed later (``docs/findings.md`` shows
  one). Each attempt is signed afresh: a retry carries the time it was sent.
* **Retried:** a connection error, a timeout, 408, 429 or 5xx is retried with
  exponential backoff and jitter (tenacity), in order: the next finding waits, so a
  receiver sees them as they happened.
* **Dead letters:** a finding that could not be delivered for ``give_up_after_s``, or
  that the receiver refused (another 4xx), is appended to the dead-letter file (one
  JSON object a line, with the reason) and leaves the outbox.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import urllib3

from fleetwatch.sinks.sender import Refused, Retry, Sender, Stopping
from fleetwatch.store import Announcement, Outbox

SINK = "webhook"
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class WebhookConfig:
    """Where and how to POST announced findings."""

    url: str = ""
    """The receiver's URL (http or https)."""
    secret_env: str = "FLEETWATCH_WEBHOOK_SECRET"  # noqa: S105 (a variable's name)
    """The environment variable holding the HMAC secret; it must be set."""
    timeout_s: float = 5.0
    """Seconds for one request (connect and read)."""
    give_up_after_s: float = 3600.0
    """Seconds of failed retries after which a finding goes to the dead-letter file."""
    dead_letter: str = "fleetwatch-dead-letter.jsonl"
    """The file for findings that could not be delivered (relative: next to the store)."""


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The signature header's value for ``body`` sent at ``timestamp`` (unix seconds)."""
    signed = b"%d.%b" % (timestamp, body)
    return f"t={timestamp},v1={hmac.new(secret, signed, hashlib.sha256).hexdigest()}"


class Webhook(Sender):
    """Delivers the outbox's webhook rows from a thread of its own."""

    def __init__(
        self,
        config: WebhookConfig,
        store_path: Path,
        secret: bytes,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            "webhook", store_path, config.dead_letter, config.timeout_s, config.give_up_after_s
        )
        self.config = config
        self.secret = secret
        self.clock = clock  # the signature's time stamp

    def _run(self) -> None:
        outbox = Outbox(self.store_path, SINK)
        try:
            while not self._stop.is_set():
                for item in outbox.pending():
                    if not self._deliver(item):
                        return  # stopping: the row stays for the next start
                    outbox.done([item.seq])
                self._wake.wait(1.0)
                self._wake.clear()
        finally:
            outbox.close()

    def _deliver(self, item: Announcement) -> bool:
        """Deliver or dead-letter ``item``; False only when stopping first."""
        body = json.dumps(item.body, sort_keys=True, ensure_ascii=False).encode()
        try:
            why = self._attempt(lambda: self._post(body, item.seq))
        except Stopping:
            return False
        if why is None:
            self.delivered += 1
        else:
            self._bury({"failed": why, "at": time.time(), "finding": item.body})
        return True

    def _post(self, body: bytes, seq: int) -> None:
        headers = {
            "Content-Type": "application/json",
            "X-Fleetwatch-Signature": sign(self.secret, body, int(self.clock())),
            "X-Fleetwatch-Delivery": str(seq),
            "User-Agent": "fleetwatch",
        }
        try:
            response = self.http.request("POST", self.config.url, body=body, headers=headers)
        except urllib3.exceptions.HTTPError as exc:
            self.failed_attempts += 1
            raise Retry(type(exc).__name__) from exc
        if 200 <= response.status < 300:
            return
        self.failed_attempts += 1
        if response.status in RETRY_STATUS:
            raise Retry(f"HTTP {response.status}")
        raise Refused(f"refused with HTTP {response.status}")

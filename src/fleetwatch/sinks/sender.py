"""What the webhook and the Alertmanager output share: a thread of its own that sends
what the store's outbox holds.

The watch loop commits a transition to the outbox and wakes the sender; it never waits
on a receiver. A failure worth retrying (no answer, 429, 5xx) is retried with
exponential backoff and jitter (tenacity) until ``give_up_after_s``; then, or at once
for an answer a retry will not change, what was to be sent goes to the dead-letter file
(relative: next to the store). A stop ends any wait at once, and what was not sent stays
in the outbox for the next start.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tenacity
import urllib3


class Retry(Exception):
    """A failure worth retrying."""


class Refused(Exception):
    """The receiver answered with a status that a retry will not change."""


class Stopping(Exception):
    """The sender was stopped while it retried."""


class Sender:
    """A sending thread: started, woken when rows are committed, stopped."""

    def __init__(
        self,
        name: str,
        store_path: Path,
        dead_letter: str,
        timeout_s: float,
        give_up_after_s: float,
    ) -> None:
        self.store_path = store_path
        dead = Path(dead_letter)
        self.dead_letter = dead if dead.is_absolute() else store_path.parent / dead
        self.give_up_after_s = give_up_after_s
        self.http = urllib3.PoolManager(retries=False, timeout=timeout_s)
        self.delivered = 0
        self.failed_attempts = 0  # requests a receiver did not take
        self.dead = 0  # given up: in the dead-letter file
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """New rows were committed: look now, not at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        raise NotImplementedError

    def _attempt(self, post: Callable[[], None]) -> str | None:
        """``post()`` until it succeeds: None; or why it was given up (to bury).

        Raises ``Stopping`` when a stop came first.
        """
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(Retry),
            wait=tenacity.wait_exponential_jitter(multiplier=0.2, max=30.0, jitter=0.2),
            stop=self._give_up,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            retrying(post)
        except Retry as exc:
            if self._stop.is_set():
                raise Stopping from exc
            return f"gave up after {self.give_up_after_s:g} s: {exc}"
        except Refused as exc:
            return str(exc)
        return None

    def _give_up(self, state: tenacity.RetryCallState) -> bool:
        elapsed = state.seconds_since_start or 0.0
        return self._stop.is_set() or elapsed >= self.give_up_after_s

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)  # a stop ends the wait at once

    def _bury(self, record: dict[str, Any]) -> None:
        """Append ``record`` to the dead-letter file."""
        with self.dead_letter.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record, sort_keys=True) + "\n")
        self.dead += 1

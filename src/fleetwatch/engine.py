"""The engine: hands each batch to the detectors that read its kinds, keeps findings.

Detectors subscribe to event kinds; a batch goes only to those whose kinds it holds.
Each detector returns the findings a batch opened or changed; the engine keeps the
latest version of each (by its stable ``id``), so a flood of repeats is one finding
whose count grows. ``flush(now)`` closes and forgets, in every detector, what ``now``
ends (state with a lifetime, ``detectors/base.py``: "Forgetting"); watch calls it as
its clock advances. ``finish`` closes every window at the end of input and returns the
findings sorted by severity, then time.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import numpy as np

from fleetwatch.detectors.base import Detector
from fleetwatch.events import KIND_ID, EventBatch
from fleetwatch.findings import Finding, report_order

FLUSH_EVERY_S = 10.0
"""``flush`` sweeps the detectors at most this often (of its clock): a sweep walks every
entry (~20 ms for 10,000 GPUs), and keep times are minutes to days."""


class Engine:
    """Routes batches to detectors by kind and gathers their findings."""

    def __init__(self, detectors: Sequence[Detector]) -> None:
        self.detectors = list(detectors)
        self._wants = [
            np.asarray(sorted(KIND_ID[k] for k in d.kinds), dtype=np.intp) for d in self.detectors
        ]
        self.findings: dict[str, Finding] = {}
        self.seconds = dict.fromkeys((d.name for d in self.detectors), 0.0)
        """Time spent in each detector so far (watch mode exports it)."""
        self._swept: float | None = None  # the clock at the last sweep

    def process(self, batch: EventBatch) -> list[Finding]:
        """Feed one batch; return the findings it opened or changed."""
        if len(batch) == 0:
            return []
        # kinds counted, not sorted out (np.unique sorts, and imports numpy.ma to ask
        # whether the column is masked: a tenth of a replay's start-up)
        present = np.bincount(batch["kind"], minlength=len(KIND_ID)).astype(bool)
        changed: list[Finding] = []
        for detector, wants in zip(self.detectors, self._wants, strict=True):
            if present[wants].any():
                start = time.perf_counter()
                changed += detector.process(batch)
                self.seconds[detector.name] += time.perf_counter() - start
        self._keep(changed)
        return changed

    def flush(self, now: float) -> list[Finding]:
        """Close and forget what ``now`` ends in every detector; return changed findings.

        ``now`` is the clock the caller advances: event time in a replay, wall time in
        watch. Call it as often as you like: it sweeps at most every ``FLUSH_EVERY_S``
        (and again whenever the clock goes back), else returns at once. A detector
        whose flush forgot or reported something has its time added to ``seconds``,
        the sign watch reads to checkpoint it again.
        """
        if self._swept is not None and 0.0 <= now - self._swept < FLUSH_EVERY_S:
            return []
        self._swept = now
        changed: list[Finding] = []
        for detector in self.detectors:
            start = time.perf_counter()
            before = detector.size()
            found = detector.flush(now)
            if found or detector.size() != before:
                self.seconds[detector.name] += time.perf_counter() - start
            changed += found
        self._keep(changed)
        return changed

    def run(self, batches: Iterable[EventBatch]) -> list[Finding]:
        """Feed every batch, then finish."""
        for batch in batches:
            self.process(batch)
        return self.finish()

    def finish(self, now: float | None = None) -> list[Finding]:
        """Close all windows; every finding, most severe first, then oldest first."""
        for detector in self.detectors:
            self._keep(detector.flush(now))
        return sorted(self.findings.values(), key=report_order)

    def _keep(self, findings: list[Finding]) -> None:
        for finding in findings:
            self.findings[finding.id] = finding

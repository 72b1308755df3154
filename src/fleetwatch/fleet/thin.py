"""The thin feed: of the samples a family reads only for their labels, send changes.

``xid_correlation`` (cluster family) reads temperature, power and clock-event samples
for one thing: the pod labels dcgm-exporter puts on them, which tell it the job of
each GPU (``_learn_workloads``). Sending every sample of the fleet to the one cluster
shard would make it the hottest; the labels change only when a pod moves. So an agent
sends such a sample when its GPU's (pod, namespace) differs from the last it sent for
that GPU, and again at least every ``REFRESH_S`` of event time, so a correlator never
forgets a steady GPU's job (it forgets a GPU after a day without events).

``LABELS_ONLY`` says, per family, which kinds are read only for their labels.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from fleetwatch.events import KIND_ID, EventBatch

LABELS_ONLY: Final[dict[str, frozenset[str]]] = {
    "cluster": frozenset({"temperature", "power", "clock_event"}),
}
"""Family -> the kinds its detectors read only for their pod labels."""

REFRESH_S: Final = 3600.0
"""A GPU's unchanged labels are sent again after this much event time."""


class LabelFilter:
    """Remembers, per GPU, the labels an agent last sent and when."""

    def __init__(self) -> None:
        self.sent: dict[tuple[str, str], tuple[str | None, str | None, float]] = {}

    def keep(self, batch: EventBatch, family: str) -> npt.NDArray[np.bool_]:
        """The rows of ``batch`` the family needs (all but unchanged label samples)."""
        kinds = LABELS_ONLY.get(family)
        keep = np.ones(len(batch), dtype=bool)
        if not kinds:
            return keep
        samples = np.isin(batch["kind"], [KIND_ID[k] for k in kinds])
        keep &= ~samples
        labelled = np.flatnonzero(samples & (batch["pod"] >= 0) & (batch["pci"] >= 0))
        if labelled.size == 0:
            return keep
        node, pci, pod, namespace = (
            batch[f][labelled].tolist() for f in ("node", "pci", "pod", "namespace")
        )
        ts = np.nan_to_num(batch["ts"][labelled], nan=-np.inf).tolist()
        for i, row in enumerate(labelled.tolist()):
            gpu = (batch.strings[node[i]], batch.strings[pci[i]])
            labels = (batch.string(pod[i]), batch.string(namespace[i]))
            last = self.sent.get(gpu)
            if last is None or last[:2] != labels or ts[i] - last[2] >= REFRESH_S:
                self.sent[gpu] = (*labels, ts[i])
                keep[row] = True
        return keep

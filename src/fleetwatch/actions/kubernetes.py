"""Kubernetes: take a node out of service with a taint, a cordon, or both.

What an action word does is data (``catalog/node_conditions.toml``, ``take_out``):
``reset_gpu`` taints, ``drain_node``, ``reboot_node`` and ``rma_gpu`` cordon and taint.
The taint is ``fleetwatch.io/gpu-fault=<detector>:NoSchedule``: new pods stay off the
node unless they tolerate it (a GPU-reset or diagnostics DaemonSet can); the cordon
(``spec.unschedulable: true``, what ``kubectl cordon`` sets) keeps every new pod off.
Running pods are not evicted: a person decides that, as with Slurm's drain.

``take_out_patch`` computes the patch from the Node as read: ``spec.taints`` has no
merge key, so a strategic merge patch replaces the whole list and must carry the taints
already there; ``metadata.resourceVersion`` makes it a precondition, so a node changed
in between is a 409 Conflict and is read again, never overwritten. A node already
tainted by fleetwatch (any detector: one taint per key and effect) or already cordoned
is left as it is. Nothing here removes a taint or uncordons: an operator does, once the
GPU is fixed (``kubectl taint node N fleetwatch.io/gpu-fault-``, ``kubectl uncordon N``).
"""

from __future__ import annotations

from typing import Any

from fleetwatch.actions.node_conditions import NodeMap
from fleetwatch.findings import Action


def steps(node_map: NodeMap, action: Action) -> tuple[str, ...]:
    """What ``--act kubernetes`` does for ``action``: ("cordon", "taint"), ("taint",), ()."""
    return node_map.actions[action].take_out


def describe(node_map: NodeMap, node: str, detector: str, action: Action) -> str:
    """``cordon and taint gpu-node-3 with fleetwatch.io/gpu-fault=…``, for logs and dry runs."""
    done = steps(node_map, action)
    if not done:
        return f"leave {node} in service ({action} takes nothing out on Kubernetes)"
    words = " and ".join(done)
    text = f"{words} {node}"
    if "taint" in done:
        text += f" with {node_map.taint_key}={detector}:{node_map.taint_effect}"
    return text


def take_out_patch(
    node_map: NodeMap, node: dict[str, Any], detector: str, action: Action
) -> dict[str, Any] | None:
    """The strategic merge patch that takes ``node`` out (None: nothing left to do)."""
    spec = node.get("spec") or {}
    patch: dict[str, Any] = {}
    todo = steps(node_map, action)
    if "cordon" in todo and not spec.get("unschedulable"):
        patch["unschedulable"] = True
    taints = [t for t in spec.get("taints") or [] if isinstance(t, dict)]
    mine = any(
        t.get("key") == node_map.taint_key and t.get("effect") == node_map.taint_effect
        for t in taints
    )
    if "taint" in todo and not mine:
        taint = {"key": node_map.taint_key, "value": detector, "effect": node_map.taint_effect}
        patch["taints"] = [*taints, taint]
    if not patch:
        return None
    version = (node.get("metadata") or {}).get("resourceVersion")
    return {"metadata": {"resourceVersion": version}, "spec": patch}

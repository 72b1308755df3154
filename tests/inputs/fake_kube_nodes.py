"""The Node and Event endpoints of the loopback API server (``fake_kube_api``).

No real API server can run here; this one answers what the real one answers for the
requests a node agent makes, so the client's content types, preconditions and error
handling are tested against the server's rules rather than against our own:

* ``GET /api/v1/nodes/{name}``: the Node, or a ``Status`` 404 ``NotFound``;
* ``PATCH /api/v1/nodes/{name}`` and ``…/status``: by Content-Type,
  ``application/strategic-merge-patch+json`` merges lists that have a merge key
  (``status.conditions`` by ``type``, as in the Go type's ``patchMergeKey``) and
  replaces the others (``spec.taints`` has none); ``application/merge-patch+json``
  (RFC 7386) replaces every list; ``application/json-patch+json`` needs a JSON array
  (an object is a 400, which is what a dict sent with the client's default
  Content-Type gets); anything else is a 415. The status subresource keeps only the
  status of the result, the main resource only the rest, as the node strategy does.
  ``metadata.resourceVersion`` in a patch is a precondition: another one is a 409
  ``Conflict``. Taints are validated (key, value, effect, no duplicate key and
  effect): a bad one is a 422 ``Invalid``;
* ``POST /api/v1/namespaces/{ns}/events``: an Event about a Node must be in
  ``default`` (or no namespace) with no ``involvedObject.namespace``; its name is a
  DNS-1123 subdomain; a name taken is a 409 ``AlreadyExists``.

Every request is recorded with its raw path; ``fail`` makes the next matching requests
answer an error (or drop the connection) before anything is applied.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
TOKEN = "not-a-secret"  # noqa: S105  # what fake_kube_api's kubeconfig carries
MERGE_KEYS: dict[tuple[str, ...], str] = {("status", "conditions"): "type"}
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_NODE_PATH = re.compile(r"/api/v1/nodes/([^/?]+)(/status)?")
_EVENTS_PATH = re.compile(r"/api/v1/namespaces/([^/?]+)/events")
REASONS = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 409: "Conflict",
           415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests",
           500: "InternalError", 503: "ServiceUnavailable"}  # fmt: skip


@dataclass
class Request:
    """One request as it arrived."""

    method: str
    path: str  # raw, as sent: percent-escapes left as they are
    content_type: str
    body: Any
    status: int = 0  # what was answered (0: the connection was dropped)


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int  # 0: drop the connection without an answer
    times: int


def is_subdomain(name: str) -> bool:
    return len(name) <= 253 and _SUBDOMAIN.fullmatch(name) is not None


def strategic_merge(target: Any, patch: Any, path: tuple[str, ...] = ()) -> Any:
    """``patch`` applied to ``target`` as a strategic merge patch (maps and keyed lists)."""
    if not isinstance(patch, dict) or not isinstance(target, dict):
        key = MERGE_KEYS.get(path)
        if key and isinstance(patch, list) and isinstance(target, list):
            merged = [copy.deepcopy(item) for item in target]
            for item in patch:
                at = next(
                    (i for i, old in enumerate(merged) if old.get(key) == item.get(key)), None
                )
                if at is None:
                    merged.append(copy.deepcopy(item))
                else:
                    merged[at] = strategic_merge(merged[at], item, (*path, "*"))
            return merged
        return copy.deepcopy(patch)
    out = copy.deepcopy(target)
    for name, value in patch.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = strategic_merge(out.get(name), value, (*path, name))
    return out


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge, ``null`` deletes, everything else (lists too) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = merge_patch(out.get(name), value)
    return out


def status_body(code: int, message: str, reason: str = "") -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason or REASONS.get(code, "Unknown"),
            "code": code}  # fmt: skip


class FakeNodes:
    """Nodes, Events, the requests that came, and the faults to answer with."""

    def __init__(self) -> None:
        self.version = 5000  # resourceVersions of Nodes and Events (apart from the watch's)
        self.lock = threading.Lock()
        self.nodes: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.requests: list[Request] = []
        self.faults: list[Fault] = []

    # -- what a test does -------------------------------------------------------------

    def add(self, name: str, taints: list[dict[str, str]] | None = None) -> str:
        """A Node named ``name``; returns its uid."""
        with self.lock:
            uid = f"uid-{len(self.nodes):04d}-{name}"
            self.nodes[name] = {
                "kind": "Node",
                "apiVersion": "v1",
                "metadata": {"name": name, "uid": uid, "resourceVersion": self._bump()},
                "spec": {"taints": list(taints)} if taints else {},
                "status": {"conditions": [
                    {"type": "Ready", "status": "True", "reason": "KubeletReady",
                     "message": "kubelet is posting ready status",
                     "lastHeartbeatTime": "2026-11-26T10:00:00Z",
                     "lastTransitionTime": "2026-11-26T09:00:00Z"}]},
            }  # fmt: skip
            return uid

    def node(self, name: str) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self.nodes[name])

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        conditions = self.node(name)["status"].get("conditions", [])
        return next((c for c in conditions if c["type"] == kind), None)

    def taints(self, name: str) -> list[dict[str, str]]:
        return list(self.node(name)["spec"].get("taints", []))

    def fail(self, method: str, path: str, status: int, times: int = 1) -> None:
        """Answer the next ``times`` requests of ``method`` whose path matches ``path``."""
        with self.lock:
            self.faults.append(Fault(method, re.compile(path), status, times))

    def sent(self, method: str | None = None, path: str = "") -> list[Request]:
        with self.lock:
            return [r for r in self.requests
                    if (method is None or r.method == method) and re.search(path, r.path)]  # fmt: skip

    # -- the protocol -----------------------------------------------------------------

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        content_type = (handler.headers.get("Content-Type") or "").split(";")[0].strip()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        request = Request(method, handler.path, content_type, body)
        with self.lock:
            self.requests.append(request)
            status, answer = self._answer(handler, request)
            request.status = status
        if status == 0:
            handler.close_connection = True  # no answer at all: as a dropped connection
            return
        data = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _answer(
        self, handler: BaseHTTPRequestHandler, request: Request
    ) -> tuple[int, dict[str, Any]]:
        for fault in self.faults:
            if fault.times and fault.method == request.method and fault.path.search(request.path):
                fault.times -= 1
                return fault.status, status_body(fault.status, "injected by the test")
        if handler.headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, status_body(401, "Unauthorized")
        path = request.path.split("?")[0]
        node = _NODE_PATH.fullmatch(path)
        events = _EVENTS_PATH.fullmatch(path)
        if node and request.method == "GET" and not node.group(2):
            return self._get(node.group(1))
        if node and request.method == "PATCH":
            return self._patch(node.group(1), bool(node.group(2)), request)
        if events and request.method == "POST":
            return self._create_event(events.group(1), request.body)
        return 404, status_body(404, f"the server could not find the requested resource ({path})")

    def _get(self, name: str) -> tuple[int, dict[str, Any]]:
        if name not in self.nodes:
            return 404, status_body(404, f'nodes "{name}" not found')
        return 200, copy.deepcopy(self.nodes[name])

    def _patch(self, name: str, status: bool, request: Request) -> tuple[int, dict[str, Any]]:
        if name not in self.nodes:
            return 404, status_body(404, f'nodes "{name}" not found')
        old, patch = self.nodes[name], request.body
        if request.content_type == JSON_PATCH:
            if not isinstance(patch, list):
                message = "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
                return 400, status_body(400, message)
            return 415, status_body(415, "JSON patch is not served by this stand-in")
        if request.content_type not in (STRATEGIC, MERGE):
            return 415, status_body(415, f"the body of the request was in an unknown format: "
                                         f"accepted media types include: {JSON_PATCH}, "
                                         f"{MERGE}, {STRATEGIC}")  # fmt: skip
        if not isinstance(patch, dict):
            return 400, status_body(400, "the patch is not a JSON object")
        wanted = (patch.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != old["metadata"]["resourceVersion"]:
            message = (f'Operation cannot be fulfilled on nodes "{name}": the object has been '
                       "modified; please apply your changes to the latest version and try again")  # fmt: skip
            return 409, status_body(409, message)
        merged = (strategic_merge if request.content_type == STRATEGIC else merge_patch)(old, patch)
        new = copy.deepcopy(old)
        if status:
            new["status"] = merged.get("status", {})
        else:
            new["spec"] = merged.get("spec", {})
            new["metadata"] = {**merged.get("metadata", {}), "name": name,
                               "uid": old["metadata"]["uid"]}  # fmt: skip
        invalid = _invalid_taints(new["spec"].get("taints") or [])
        if invalid:
            return 422, status_body(422, f'Node "{name}" is invalid: spec.taints: {invalid}')
        new["metadata"]["resourceVersion"] = self._bump()
        self.nodes[name] = new
        return 200, copy.deepcopy(new)

    def _create_event(self, namespace: str, event: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(event, dict):
            return 400, status_body(400, "the body is not an Event")
        meta = event.get("metadata") or {}
        name, involved = meta.get("name", ""), event.get("involvedObject") or {}
        problems = []
        if meta.get("namespace", namespace) != namespace:
            problems.append("metadata.namespace: does not match the namespace of the request")
        if not is_subdomain(name):
            problems.append(f"metadata.name: Invalid value: {name!r}")
        if involved.get("kind") == "Node" and namespace not in ("default", ""):
            problems.append("involvedObject.namespace: not allowed for node")
        if involved.get("kind") == "Node" and involved.get("namespace"):
            problems.append("involvedObject.namespace: not allowed for node")
        if event.get("type") not in ("Normal", "Warning"):
            problems.append(f"type: Unsupported value: {event.get('type')!r}")
        if not event.get("reason"):
            problems.append("reason: Required value")
        if problems:
            return 422, status_body(422, f'Event "{name}" is invalid: {"; ".join(problems)}')
        if any(e["metadata"]["name"] == name for e in self.events):
            return 409, status_body(409, f'events "{name}" already exists', "AlreadyExists")
        stored = {**event, "metadata": {**meta, "namespace": namespace,
                                        "resourceVersion": self._bump()}}  # fmt: skip
        self.events.append(stored)
        return 201, copy.deepcopy(stored)

    def _bump(self) -> str:
        self.version += 1
        return str(self.version)


def _invalid_taints(taints: list[dict[str, Any]]) -> str:
    seen = set()
    for taint in taints:
        key, value, effect = taint.get("key", ""), taint.get("value", ""), taint.get("effect")
        prefix, _, name = key.rpartition("/")
        if not _QUALIFIED.fullmatch(name) or (prefix and not is_subdomain(prefix)):
            return f"Invalid value: {key!r}: a qualified name"
        if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
            return f"Invalid value: {value!r}: a valid label value"
        if effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            return f"Unsupported value: {effect!r}"
        if (key, effect) in seen:
            return f"Duplicate value: {key!r}, {effect!r}"
        seen.add((key, effect))
    return ""

"""A Kubernetes API server on loopback that speaks the Events and Node protocols.

No real API server can run here, so this one serves what the official client asks of
one: ``GET /api/v1/events`` lists (an ``EventList`` with its ``resourceVersion``), and
with ``watch=true`` streams chunked JSON lines (``{"type": "ADDED", "object": …}``)
from a ``resourceVersion`` on. A version older than the last compaction is answered
the way the real server answers it: a watch ``ERROR`` event with a ``Status`` of code
410 (Gone, "too old resource version").

For the node agent (``fake_kube_nodes``) it also serves ``GET /api/v1/nodes/{name}``,
``PATCH /api/v1/nodes/{name}`` and ``PATCH /api/v1/nodes/{name}/status`` (strategic
merge, JSON merge and JSON patch, as the real server tells them apart by
Content-Type), and ``POST /api/v1/namespaces/{ns}/events``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.inputs.fake_kube_nodes import FakeNodes


class FakeApiServer:
    def __init__(self) -> None:
        self.objects: list[tuple[int, dict[str, Any]]] = []
        self.version = 100
        self.oldest = 0  # versions before this were compacted away
        self.lists = 0
        self.gone = 0
        self._changed = threading.Condition()
        self._generation = 0  # bumped to end every open watch
        self.nodes = FakeNodes()
        self.event_reads: list[str] = []  # the paths of Events lists and watches
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                if url.path != "/api/v1/events":
                    api.nodes.handle(self, "GET")
                    return
                api.event_reads.append(self.path)
                if query.get("watch") in ("true", "1", "True"):
                    api.watch(self, query)
                else:
                    api.list(self)

            def do_PATCH(self) -> None:
                api.nodes.handle(self, "PATCH")

            def do_POST(self) -> None:
                api.nodes.handle(self, "POST")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()  # a short poll: close() returns at once

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def kubeconfig(self, folder: Path) -> Path:
        path = folder / "kubeconfig"
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: fake, cluster: {{server: '{self.url}'}}}}]\n"
            "users: [{name: me, user: {token: not-a-secret}}]\n"
            "contexts: [{name: here, context: {cluster: fake, user: me}}]\n"
            "current-context: here\n"
        )
        return path

    def close(self) -> None:
        self.compact()
        self.server.shutdown()
        self.server.server_close()

    # -- what a test does -------------------------------------------------------------

    def add(self, obj: dict[str, Any]) -> None:
        with self._changed:
            self.version += 1
            obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.version)}}
            self.objects.append((self.version, obj))
            self._changed.notify_all()

    def compact(self) -> None:
        """Forget every version so far, and end the open watches (as an etcd compaction)."""
        with self._changed:
            self.oldest = self.version + 1
            self._generation += 1
            self._changed.notify_all()

    # -- the protocol -----------------------------------------------------------------

    def list(self, handler: BaseHTTPRequestHandler) -> None:
        with self._changed:
            self.lists += 1
            body = {
                "kind": "EventList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self.version)},
                "items": [obj for _, obj in self.objects],
            }
        data = json.dumps(body).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def watch(self, handler: BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        since = int(query.get("resourceVersion") or 0)
        timeout = float(query.get("timeoutSeconds") or 30)
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()

        def send(event: dict[str, Any]) -> None:
            line = json.dumps(event).encode() + b"\n"
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            handler.wfile.flush()

        with self._changed:
            generation = self._generation
            if since < self.oldest:
                self.gone += 1
                send({"type": "ERROR", "object": {
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": f"too old resource version: {since} ({self.oldest})",
                    "reason": "Expired", "code": 410}})  # fmt: skip
            else:
                sent = since
                end = timeout
                while end > 0 and generation == self._generation:
                    for version, obj in self.objects:
                        if version > sent:
                            send({"type": "ADDED", "object": obj})
                            sent = version
                    self._changed.wait(0.1)
                    end -= 0.1
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()


def evicted(pod: str, uid: str, count: int = 1) -> dict[str, Any]:
    """A kubelet node-pressure eviction Event, as the API server returns it."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{pod}.17f0", "namespace": "ml", "uid": uid},
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": "ml"},
        "reason": "Evicted",
        "message": "The node was low on resource: memory. Threshold quantity: 100Mi, "
        "available: 12Mi. ",
        "source": {"component": "kubelet", "host": "gpu-node-3"},
        "count": count,
        "firstTimestamp": "2026-11-26T10:00:00Z",
        "lastTimestamp": f"2026-11-26T10:0{count}:00Z",
        "type": "Warning",
    }

"""The Kubernetes events watch (the official ``kubernetes`` client).

It lists Events once (all namespaces, or one), then watches from the list's
``resourceVersion``; each Event object goes through ``k8s.read_object``, the same
reader ``replay`` uses for ``kubectl get events -o json``. Its position is the last
``resourceVersion`` seen (bookmarks included), so a restart resumes the watch where
the last commit was.

When the API server has compacted that version away it answers ``410 Gone``: the
source lists again and watches from the new version. A relist returns Events already
read, so each one read is remembered by ``uid`` and ``count`` (the number of times the
Event occurred): an Event is read again only when its count grew. The memory keeps the
``remember`` most recent Events and is saved with the position.

Configuration: ``kubeconfig`` (a file; empty: ``$KUBECONFIG`` or ``~/.kube/config``),
or ``in_cluster = true`` for the pod's service account.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

from fleetwatch.events import BatchBuilder
from fleetwatch.extras import hint
from fleetwatch.inputs.live import Deliver, SourceError
from fleetwatch.sources import k8s
from fleetwatch.sources.context import FileContext, Identities, ReadOptions, ReadStats

GONE: Final = 410


@dataclass(frozen=True)
class KubeSettings:
    """``[watch.kubernetes]``: watch Kubernetes Events."""

    kubeconfig: str = ""
    """A kubeconfig file (empty: $KUBECONFIG, else ~/.kube/config)."""
    in_cluster: bool = False
    """Use the pod's service account instead of a kubeconfig."""
    namespace: str = ""
    """Only this namespace's Events (empty: all namespaces)."""
    watch_timeout_s: int = 60
    """Seconds one watch request lasts before it is renewed (a stop waits at most this)."""
    remember: int = 20000
    """How many Events' (uid, count) are remembered to skip repeats after a relist."""


class KubeSource:
    """Lists, then watches, Kubernetes Events; relists on 410 Gone."""

    def __init__(self, settings: KubeSettings, options: ReadOptions, saved: Any) -> None:
        self.name = "kubernetes"
        self.settings = settings
        self.options = options
        self.stats = ReadStats()
        saved = saved or {}
        self.resource_version: str | None = saved.get("resource_version")
        self.seen: OrderedDict[str, int] = OrderedDict(saved.get("seen", []))
        self.relists = 0

    def position(self) -> dict[str, Any]:
        return {"resource_version": self.resource_version, "seen": list(self.seen.items())}

    def check(self) -> None:
        """The kubeconfig (or the pod's service account) must load: a retry won't make it."""
        try:
            from kubernetes import config  # imported only where it is wanted
        except ImportError as exc:
            raise SourceError(hint("fleetwatch watch --kubeconfig", {"kubernetes"})) from exc

        try:
            self._load_config(config)
        except (config.ConfigException, OSError, ValueError, TypeError) as exc:
            where = "in-cluster" if self.settings.in_cluster else "kubeconfig"
            raise SourceError(f"kubernetes: cannot load the {where} configuration ({exc})") from exc

    def _load_config(self, config: Any) -> None:
        if self.settings.in_cluster:
            config.load_incluster_config()
        else:
            config.load_kube_config(config_file=self.settings.kubeconfig or None)

    def run(self, deliver: Deliver, stop: threading.Event) -> None:
        from kubernetes import client, config, watch  # imported only where it is wanted

        self._load_config(config)
        api = client.CoreV1Api()
        namespace = self.settings.namespace
        listing: Any = (
            (lambda **kw: api.list_namespaced_event(namespace, **kw))
            if namespace
            else api.list_event_for_all_namespaces
        )
        while not stop.is_set():
            if self.resource_version is None:
                self._relist(listing, deliver)
            w = watch.Watch()
            try:
                for change in w.stream(
                    listing,
                    resource_version=self.resource_version,
                    timeout_seconds=self.settings.watch_timeout_s,
                    allow_watch_bookmarks=True,
                ):
                    self._change(change, deliver)
                    if stop.is_set():
                        w.stop()
            except client.ApiException as exc:
                if exc.status != GONE:
                    raise
                self.resource_version = None  # compacted away: list again

    def _relist(self, listing: Any, deliver: Deliver) -> None:
        response = listing(_preload_content=False)
        try:
            body = json.loads(response.data)
        finally:
            response.release_conn()
        self.relists += 1
        ctx = self._context()
        for obj in body.get("items") or []:
            self._read(obj, ctx)
        self.resource_version = (body.get("metadata") or {}).get("resourceVersion")
        deliver(ctx.take(), self.position())

    def _change(self, change: dict[str, Any], deliver: Deliver) -> None:
        obj = change.get("raw_object") or {}  # the Event as JSON, as replay reads it
        version = (obj.get("metadata") or {}).get("resourceVersion")
        ctx = self._context()
        if change.get("type") in ("ADDED", "MODIFIED"):
            self._read(obj, ctx)
        if version:
            self.resource_version = version
        deliver(ctx.take(), self.position())

    def _read(self, obj: dict[str, Any], ctx: FileContext) -> None:
        self.stats.lines += 1
        meta = obj.get("metadata") or {}
        uid = meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}"
        count = obj.get("count") or (obj.get("series") or {}).get("count") or 1
        if self.seen.get(uid, 0) >= count:
            self.stats.skip("k8s", "already read (relist)")
            return
        self.seen[uid] = count
        self.seen.move_to_end(uid)
        while len(self.seen) > self.settings.remember:
            self.seen.popitem(last=False)
        k8s.read_object(obj, self.stats.lines, ctx)

    def _context(self) -> FileContext:
        return FileContext(
            "kubernetes",
            "kubernetes",
            self.options,
            self.stats,
            Identities(),
            BatchBuilder(),
            time.time(),
        )

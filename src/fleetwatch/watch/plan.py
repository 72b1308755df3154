"""What a watch runs: the ``[watch]`` table of the config file and the command line,
made into one ``WatchPlan`` and checked before any thread starts (``load_plan``: a
mistake is a ``ConfigError``, one line). A fleet agent's plan is this one with its
``Relay`` (``fleet/agent.py``).
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from fleetwatch import config as config_file
from fleetwatch.actions import TOOLS
from fleetwatch.actions.breaker import BreakerConfig
from fleetwatch.actions.kube_nodes import KubeNodeSettings
from fleetwatch.actions.slurm import SlurmConfig
from fleetwatch.config import ConfigError
from fleetwatch.events import EventBatch
from fleetwatch.inputs.kmsg_live import KmsgSettings, KmsgSource
from fleetwatch.inputs.kube_watch import KubeSettings, KubeSource
from fleetwatch.inputs.live import FileSettings, FileSource, LiveSource
from fleetwatch.inputs.nvml import NvmlSettings, NvmlSource
from fleetwatch.inputs.scrape import ScrapeSettings, ScrapeSource
from fleetwatch.lifecycle import (
    LifecycleConfig,
    Silence,
    Transition,
)
from fleetwatch.sinks.alertmanager import AlertmanagerConfig
from fleetwatch.sinks.metrics import MAX_FINDING_SERIES
from fleetwatch.sinks.webhook import WebhookConfig
from fleetwatch.sources.context import ReadOptions


@dataclass(frozen=True)
class WatchSettings:
    """``[watch]``: the store, commits and retention."""

    store: str = "fleetwatch-watch.db"
    """The SQLite store: findings, checkpoints, positions."""
    jsonl: str = ""
    """A JSONL file of transitions (empty: none)."""
    commit_interval_s: float = 1.0
    """Longest time between commits while events flow."""
    retention_days: float = 30.0
    """Resolved findings older than this leave the store."""
    max_store_bytes: int = 1 << 30
    """Past this size the oldest resolved findings leave the store first."""
    node: str = ""
    """The node name for records that name none (default: from file names)."""
    act: str = ""
    """Act on findings with this tool ("slurm", "kubernetes"); empty: dry run, log only."""


@dataclass(frozen=True)
class MetricsSettings:
    """``[watch.metrics]``: Prometheus ``/metrics``."""

    address: str = "127.0.0.1"
    """The address to bind (loopback by default)."""
    port: int = 9108
    """The port."""
    max_finding_series: int = MAX_FINDING_SERIES
    """At most this many ``fleetwatch_finding`` series, the most severe first."""


class Relay(Protocol):
    """Sends what a watch commits onward: a fleet agent's ``fleet.uplink.Uplink``.

    It adds its metrics to the watch's ``/metrics`` (``register``). The watch hands it
    each batch it read (``take``), asks it at each commit for the
    rows to write in the same transaction (``rows``; asked again if the commit failed),
    and tells it when they are in the store (``committed``); ``start`` and ``stop``
    run its sender."""

    commit_within_s: float
    """While it holds something for the fleet (``waiting``), commit at least this often."""

    def register(self, registry: CollectorRegistry) -> None: ...
    def take(self, batch: EventBatch) -> None: ...
    def waiting(self) -> bool: ...
    def rows(self, transitions: Sequence[Transition]) -> list[tuple[int, str, bytes]]: ...
    def committed(self) -> None: ...
    def start(self, store: Path) -> None: ...
    def stop(self, timeout_s: float = 5.0) -> None: ...


@dataclass(frozen=True)
class WatchPlan:
    """Everything a watch runs: built from the config file and the command line."""

    settings: WatchSettings
    lifecycle: LifecycleConfig
    sources: Callable[[dict[str, Any]], list[LiveSource]]  # saved positions -> sources
    detectors: dict[str, Any]
    metrics: MetricsSettings | None = None
    webhook: WebhookConfig | None = None
    alertmanager: AlertmanagerConfig | None = None
    silences: list[Silence] = field(default_factory=list)
    console: bool = True
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    kube_nodes: KubeNodeSettings | None = None  # None: no node conditions, Events, taints
    relay: Relay | None = None  # a fleet agent: what goes on to the fleet


_WATCH_KEYS = frozenset(
    {
        "files",
        "metrics",
        "webhook",
        "alertmanager",
        "silence",
        "kmsg",
        "nvml",
        "dcgm",
        "kubernetes",
        "breaker",
        "slurm",
        "kube_nodes",
    }
)


def load_plan(path: Path | None, overrides: dict[str, Any]) -> WatchPlan:
    """The watch the config file describes, with the command line's ``overrides``.

    ``overrides``: ``store``, ``jsonl``, ``node`` (strings), ``follow`` (paths),
    ``from_start``, ``kmsg``, ``nvml``, ``dcgm`` (URLs), ``kubeconfig``, ``metrics``
    (MetricsSettings), ``webhook`` (a URL), ``alertmanager`` (URLs), ``silences``,
    ``act`` (a tool name), ``kube_conditions`` (write node conditions and Events, with
    ``kubeconfig``).
    Raises ``ConfigError`` (one line) for anything wrong, before a thread starts.
    """
    raw, where = config_file.read(path)
    detectors = config_file.load(path)
    table = raw.get("watch", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [watch] must be a table")
    plain = {k: v for k, v in table.items() if k not in _WATCH_KEYS}
    lifecycle_keys = {f.name for f in dataclasses.fields(LifecycleConfig)}
    lifecycle = config_file.settings(
        LifecycleConfig, {k: v for k, v in plain.items() if k in lifecycle_keys}, where, "watch"
    )
    settings = config_file.settings(
        WatchSettings, {k: v for k, v in plain.items() if k not in lifecycle_keys}, where, "watch"
    )
    settings = dataclasses.replace(
        settings,
        **{k: overrides[k] for k in ("store", "jsonl", "node", "act") if overrides.get(k)},
    )
    if settings.act and settings.act not in TOOLS:
        raise ConfigError(f"{where}: watch.act must be one of {', '.join(TOOLS)} or empty")
    breaker = config_file.settings(BreakerConfig, table.get("breaker", {}), where, "watch.breaker")
    slurm = config_file.settings(SlurmConfig, table.get("slurm", {}), where, "watch.slurm")
    kube_nodes = None
    wanted = overrides.get("kube_conditions") or settings.act == "kubernetes"
    if "kube_nodes" in table or wanted:
        kube_nodes = config_file.settings(
            KubeNodeSettings, table.get("kube_nodes", {}), where, "watch.kube_nodes"
        )
        if overrides.get("kubeconfig"):
            kube_nodes = dataclasses.replace(kube_nodes, kubeconfig=overrides["kubeconfig"])
        if overrides.get("kube_conditions"):
            kube_nodes = dataclasses.replace(kube_nodes, conditions=True)
    files = [
        config_file.settings(FileSettings, entry, where, "watch.files")
        for entry in _array(table, "files", where)
    ]
    files += [FileSettings(path=p) for p in overrides.get("follow", ())]
    if overrides.get("from_start"):
        files = [dataclasses.replace(f, from_start=True) for f in files]
    for entry in files:
        if not entry.path:
            raise ConfigError(f"{where}: watch.files needs a path")
    metrics = overrides.get("metrics")
    if "metrics" in table:
        configured = config_file.settings(MetricsSettings, table["metrics"], where, "watch.metrics")
        metrics = (
            configured
            if metrics is None
            else dataclasses.replace(configured, address=metrics.address, port=metrics.port)
        )
    webhook = None
    if "webhook" in table or overrides.get("webhook"):
        webhook = config_file.settings(
            WebhookConfig, table.get("webhook", {}), where, "watch.webhook"
        )
        if overrides.get("webhook"):
            webhook = dataclasses.replace(webhook, url=overrides["webhook"])
        if not webhook.url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: watch.webhook.url must be an http(s) URL")
        if not os.environ.get(webhook.secret_env):
            raise ConfigError(
                f"the webhook signs what it sends: set {webhook.secret_env} to a secret"
            )
    alertmanager = _alertmanager(table, overrides.get("alertmanager", ()), where)
    silences = [_silence(entry, where) for entry in _array(table, "silence", where)]
    silences += overrides.get("silences", [])
    options = ReadOptions(node=settings.node or None)

    nvml = kmsg = kube = None
    if "nvml" in table or overrides.get("nvml"):
        nvml = config_file.settings(NvmlSettings, table.get("nvml", {}), where, "watch.nvml")
    if "kmsg" in table or overrides.get("kmsg"):
        kmsg = config_file.settings(KmsgSettings, table.get("kmsg", {}), where, "watch.kmsg")
    if "kubernetes" in table or overrides.get("kubeconfig"):
        kube = config_file.settings(
            KubeSettings, table.get("kubernetes", {}), where, "watch.kubernetes"
        )
        if overrides.get("kubeconfig"):
            kube = dataclasses.replace(kube, kubeconfig=overrides["kubeconfig"])
    scrapes = [
        config_file.settings(ScrapeSettings, entry, where, "watch.dcgm")
        for entry in _array(table, "dcgm", where)
    ]
    scrapes += [ScrapeSettings(url=url) for url in overrides.get("dcgm", ())]
    for scrape in scrapes:
        if not scrape.url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: watch.dcgm.url must be an http(s) URL")
    node = settings.node or socket.gethostname()

    def sources(saved: dict[str, Any]) -> list[LiveSource]:
        made: list[LiveSource] = []
        for entry in files:
            made.append(FileSource(entry, options, saved.get(f"file:{entry.path}")))
        if kmsg is not None:
            made.append(KmsgSource(kmsg, node, options, saved.get("kmsg")))
        if nvml is not None:
            made.append(NvmlSource(nvml, node))
        made += [ScrapeSource(scrape, options) for scrape in scrapes]
        if kube is not None:
            made.append(KubeSource(kube, options, saved.get("kubernetes")))
        return made

    if not (files or nvml or kmsg or kube or scrapes):
        raise ConfigError(
            f"{where}: nothing to watch: give --follow, --kmsg, --nvml, --dcgm, --kubeconfig"
            " or a [watch] source"
        )
    return WatchPlan(
        settings,
        lifecycle,
        sources,
        detectors,
        metrics,
        webhook,
        alertmanager,
        silences,
        breaker=breaker,
        slurm=slurm,
        kube_nodes=kube_nodes,
    )


def _array(table: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{where}: watch.{key} must be an array of tables ([[watch.{key}]])")
    return value


def _alertmanager(
    table: dict[str, Any], urls: Iterable[str], where: str
) -> AlertmanagerConfig | None:
    """``[watch.alertmanager]`` with the command line's URLs (which replace its ``urls``)."""
    if "alertmanager" not in table and not urls:
        return None
    section = table.get("alertmanager", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: [watch.alertmanager] must be a table")
    section = dict(section)
    listed = section.pop("urls", [])
    if not isinstance(listed, list) or not all(isinstance(u, str) for u in listed):
        raise ConfigError(f"{where}: watch.alertmanager.urls must be a list of URLs")
    config = config_file.settings(AlertmanagerConfig, section, where, "watch.alertmanager")
    config = dataclasses.replace(config, urls=tuple(urls) or tuple(listed))
    if not config.urls:
        raise ConfigError(f"{where}: watch.alertmanager needs urls (or --alertmanager URL)")
    for url in config.urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: watch.alertmanager.urls: {url!r} is not an http(s) URL")
    if config.ends_after_s <= config.resend_s:
        raise ConfigError(
            f"{where}: watch.alertmanager.ends_after_s ({config.ends_after_s:g}) must be more"
            f" than resend_s ({config.resend_s:g}), or open alerts end between posts"
        )
    return config


def _silence(entry: dict[str, Any], where: str) -> Silence:
    unknown = set(entry) - {"node", "gpu", "detector", "until"}
    if unknown:
        raise ConfigError(f"{where}: unknown setting watch.silence.{sorted(unknown)[0]}")
    until = entry.get("until")
    if isinstance(until, datetime):
        until = (until if until.tzinfo else until.replace(tzinfo=UTC)).timestamp()
    elif until is not None:
        raise ConfigError(f"{where}: watch.silence.until must be a TOML date-time")
    gpu = entry.get("gpu")
    if gpu is not None and (isinstance(gpu, bool) or not isinstance(gpu, int)):
        raise ConfigError(f"{where}: watch.silence.gpu must be a GPU index")
    return Silence(entry.get("node"), gpu, entry.get("detector"), until)

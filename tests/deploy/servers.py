"""A real Prometheus and a real Alertmanager on loopback, in a test's folder.

Each runs the Debian binary (``/usr/bin/prometheus``, ``/usr/bin/prometheus-alertmanager``)
with a config, its storage and its log in the folder, listening on a 127.0.0.1 port
picked free (and picked again should another process take it first); Alertmanager
with clustering off (``--cluster.listen-address=``). A test that needs one is skipped,
with the reason, where it is not installed (``.ci/run`` installs both).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from fleetwatch.fleet.local import free_port
from tests.watch.live import wait_for

PROMETHEUS = "prometheus"
ALERTMANAGER = "prometheus-alertmanager"
PROMTOOL = "promtool"
DEPLOY = Path(__file__).parent.parent.parent / "deploy"
EXAMPLE = DEPLOY.parent / "examples" / "xid79-fallen-off-bus" / "gpu-node-17" / "dmesg.txt"
FAULT = next(line for line in EXAMPLE.read_text().splitlines(keepends=True) if "pid=2761" in line)
"""The fault the tests append to a followed file: an Xid 79 (critical, reboot_node)."""


def missing(program: str) -> str | None:
    """Why a test cannot run ``program`` (None: it is installed)."""
    if shutil.which(program):
        return None
    return f"{program} is not installed (apt-get install prometheus prometheus-alertmanager)"


def get_json(url: str) -> Any:
    """The JSON answer at ``url``, an error's too (Prometheus says what was wrong in it)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310  # loopback
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return json.loads(exc.read() or b"null")


class Server:
    """One of the two servers: started in ``folder``, stopped by ``stop``."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.name = name
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = folder / f"{name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        for _ in range(3):  # a port picked free may be taken before the server binds it
            self.port = free_port()
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT)
            wait_for(self._ready_or_exited, timeout=30, what=f"{self.name} to be ready")
            if self.proc.poll() is None:
                return
        raise AssertionError(f"{self.name} did not start: {self.log.read_text()[-2000:]}")

    def _ready_or_exited(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            return True
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2):  # noqa: S310
                return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


class Prometheus(Server):
    """Scrapes ``targets`` (job "fleetwatch") every second and evaluates ``rules`` as often."""

    def __init__(self, folder: Path, targets: list[str], rules: dict[str, Any]) -> None:
        super().__init__(folder, "prometheus")
        (folder / "rules.yml").write_text(yaml.safe_dump(rules))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(folder / "rules.yml")],
            "scrape_configs": [
                {
                    "job_name": "fleetwatch",
                    "scrape_timeout": "1s",
                    "static_configs": [{"targets": targets}],
                }
            ],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))

    def argv(self) -> list[str]:
        return [
            PROMETHEUS,
            f"--config.file={self.folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.folder / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]

    def api(self, path: str, **params: str) -> Any:
        """``/api/v1/<path>``'s ``data``; an answer whose status is not success fails."""
        query = urllib.parse.urlencode(params)
        answer = get_json(f"{self.url}/api/v1/{path}" + (f"?{query}" if query else ""))
        assert answer["status"] == "success", answer
        return answer["data"]

    def alerts(self, name: str, state: str = "firing") -> list[dict[str, Any]]:
        return [
            a
            for a in self.api("alerts")["alerts"]
            if a["labels"]["alertname"] == name and a["state"] == state
        ]


class Alertmanager(Server):
    """Alertmanager that sends every notification, firing and resolved, to ``webhook``."""

    def __init__(self, folder: Path, webhook: str) -> None:
        super().__init__(folder, "alertmanager")
        config = {
            "route": {
                "receiver": "test",
                "group_by": ["finding_id"],
                "group_wait": "0s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [
                {"name": "test", "webhook_configs": [{"url": webhook, "send_resolved": True}]}
            ],
        }
        (folder / "alertmanager.yml").write_text(yaml.safe_dump(config))

    def argv(self) -> list[str]:
        return [
            ALERTMANAGER,
            f"--config.file={self.folder / 'alertmanager.yml'}",
            f"--storage.path={self.folder / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
        ]

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds active now (a resolved one is not listed)."""
        found: list[dict[str, Any]] = get_json(f"{self.url}/api/v2/alerts")
        return found

"""The Kubernetes events watch with ``in_cluster = true``, as the events Deployment runs it.

In a pod, the official client finds the API server in ``KUBERNETES_SERVICE_HOST`` and
``_PORT``, speaks HTTPS to it checked against the service account's CA, and sends the
service account's token. Here the loopback API server (the stand-in: no real one can
run) serves HTTPS with a certificate made for the test, the two variables point at it,
and the client's paths to the token and CA (fixed, under /var/run/secrets, in a pod)
point at files written for the test.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetwatch.inputs.kube_watch import KubeSettings, KubeSource
from fleetwatch.inputs.live import SourceError
from fleetwatch.sources import ReadOptions
from tests.inputs.fake_kube_api import FakeApiServer, evicted
from tests.inputs.test_kube_watch import Running
from tests.watch.live import wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl for a test CA"),
]

TOKEN = "fleetwatch-test-service-account-token"  # noqa: S105 (a test token, not a secret)


@pytest.fixture
def https_api(tmp_path: Path) -> Iterator[tuple[FakeApiServer, list[str]]]:
    """The loopback API server behind TLS, and the Authorization header of each request."""
    cert, key = tmp_path / "ca.crt", tmp_path / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    api = FakeApiServer()
    # The server accepts on the same descriptor, now wrapped: each connection is TLS.
    api.server.socket = context.wrap_socket(api.server.socket, server_side=True)
    seen: list[str] = []
    plain = api.server.RequestHandlerClass

    class Recording(plain):  # type: ignore[misc,valid-type]
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            super().do_GET()

    api.server.RequestHandlerClass = Recording
    yield api, seen
    api.close()


@pytest.fixture
def in_a_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, https_api: Any) -> FakeApiServer:
    api, _ = https_api
    token = tmp_path / "token"
    token.write_text(TOKEN)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(api.server.server_port))
    monkeypatch.setattr("kubernetes.config.incluster_config.SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(
        "kubernetes.config.incluster_config.SERVICE_CERT_FILENAME", str(tmp_path / "ca.crt")
    )
    result: FakeApiServer = api
    return result


def test_in_cluster_reads_events_with_the_service_accounts_token(
    in_a_pod: FakeApiServer, https_api: tuple[FakeApiServer, list[str]]
) -> None:
    _, seen = https_api
    in_a_pod.add(evicted("trainer-0", "u0"))
    source = KubeSource(KubeSettings(in_cluster=True, watch_timeout_s=1), ReadOptions(), None)
    source.check()
    run = Running(source)
    try:
        wait_for(lambda: len(run.pods()) == 1, what="the listed event")
        in_a_pod.add(evicted("trainer-1", "u1"))
        wait_for(lambda: len(run.pods()) == 2, what="a watched event")
    finally:
        run.halt()
    assert [pod for pod, _ in run.pods()] == ["trainer-0", "trainer-1"]
    # the scheme is case-insensitive (RFC 9110), and this client writes it "bearer"
    assert seen and {(h.split(" ")[0].lower(), h.split(" ")[-1]) for h in seen} == {
        ("bearer", TOKEN)
    }


def test_outside_a_pod_in_cluster_is_one_line_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    source = KubeSource(KubeSettings(in_cluster=True), ReadOptions(), None)
    with pytest.raises(SourceError, match="cannot load the in-cluster configuration") as caught:
        source.check()
    assert "\n" not in str(caught.value)

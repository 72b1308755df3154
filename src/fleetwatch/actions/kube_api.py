"""The four Kubernetes API requests a node agent makes, through the official client.

``NodeApi`` reads a Node, patches its status (the conditions) or its spec (taint,
cordon), and creates an Event, each as raw JSON (``_preload_content=False``: the
answer is the API server's JSON, the same whatever the client version's models are).
Patches name their Content-Type: ``application/strategic-merge-patch+json``, the one
that merges ``status.conditions`` by ``type`` instead of replacing the list.

Every failure is a ``KubeApiError`` with the HTTP status (0: no answer) and whether a
later try may succeed (``retryable``: no answer, 409, 429, 5xx); the caller retries,
never this module, so no request blocks longer than ``timeout_s``.

Node names come from logs, so ``is_node_name`` checks one before it goes into a URL
path: a DNS-1123 subdomain, as the API server requires of a Node's name (lowercase
letters, digits, ``-`` and ``.``; each dot-separated part starts and ends with a
letter or a digit; 253 characters at most). ``/``, ``..``, ``%``, ``?``, spaces and
capitals are all refused.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

STRATEGIC_MERGE: Final = "application/strategic-merge-patch+json"
RETRYABLE: Final = frozenset({0, 409, 429, 500, 502, 503, 504})
MAX_NODE_NAME: Final = 253
_NODE_NAME: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def is_node_name(name: str) -> bool:
    """True when ``name`` is a valid Kubernetes Node name (see the module docstring)."""
    return len(name) <= MAX_NODE_NAME and _NODE_NAME.fullmatch(name) is not None


class KubeApiError(RuntimeError):
    """A request failed: ``status`` is the HTTP status (0: no answer came)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status or 'no answer'} {reason}: {message}")
        self.status = status
        self.reason = reason  # the Status's reason (NotFound, Conflict, AlreadyExists…)

    @property
    def retryable(self) -> bool:
        """Whether the same request may succeed later."""
        return self.status in RETRYABLE


class KubeConfigError(ValueError):
    """The kubeconfig (or the pod's service account) cannot be loaded."""


class NodeApi:
    """Nodes and Events of one cluster, as raw JSON."""

    def __init__(self, kubeconfig: str = "", in_cluster: bool = False, timeout_s: float = 10.0):
        from kubernetes import client, config  # imported only where it is wanted
        from yaml import YAMLError  # the client's, PyYAML

        configuration = client.Configuration()  # its own: the Events watch has the default
        try:
            if in_cluster:
                # the client leaves its config helpers unannotated
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            else:
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=kubeconfig or None, client_configuration=configuration
                )
        except (config.ConfigException, YAMLError, OSError, ValueError, TypeError) as exc:
            where = "in-cluster" if in_cluster else "kubeconfig"
            message = f"kubernetes: cannot load the {where} configuration ({exc})"
            raise KubeConfigError(message) from exc
        self._core = client.CoreV1Api(client.ApiClient(configuration))
        self._timeout = timeout_s

    def get_node(self, name: str) -> dict[str, Any]:
        """The Node (``KubeApiError`` 404 when there is none)."""
        return self._call(self._core.read_node, _checked(name))

    def patch_node_status(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Strategic-merge ``patch`` into the Node's status subresource."""
        return self._call(
            self._core.patch_node_status, _checked(name), patch, _content_type=STRATEGIC_MERGE
        )

    def patch_node(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Strategic-merge ``patch`` into the Node (spec, metadata)."""
        return self._call(
            self._core.patch_node, _checked(name), patch, _content_type=STRATEGIC_MERGE
        )

    def create_event(self, namespace: str, event: dict[str, Any]) -> dict[str, Any]:
        """Create ``event`` in ``namespace``."""
        return self._call(self._core.create_namespaced_event, namespace, event)

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        from kubernetes.client import ApiException
        from urllib3.exceptions import HTTPError

        try:
            response = method(
                *args, _preload_content=False, _request_timeout=self._timeout, **kwargs
            )
        except ApiException as exc:
            raise _api_error(exc.status or 0, str(exc.reason or ""), exc.body) from exc
        except (HTTPError, OSError) as exc:  # no answer: refused, reset, timed out
            raise KubeApiError(0, "Unreachable", str(exc)) from exc
        try:
            body = json.loads(response.data)
        except ValueError as exc:
            raise KubeApiError(response.status, "BadAnswer", "not JSON") from exc
        finally:
            response.release_conn()
        return body if isinstance(body, dict) else {}


def _checked(name: str) -> str:
    if not is_node_name(name):  # the caller checks first; this is the last line
        raise ValueError(f"{name!r} is not a Kubernetes node name")
    return name


def _api_error(status: int, reason: str, body: Any) -> KubeApiError:
    """The error an API server's answer says (its ``Status`` body, when it sent one)."""
    message = ""
    try:
        answer = json.loads(body) if body else {}
    except (TypeError, ValueError):
        answer = {}
    if isinstance(answer, dict) and answer.get("kind") == "Status":
        reason = str(answer.get("reason") or reason)
        message = str(answer.get("message") or "")
    return KubeApiError(status, reason, message[:300])

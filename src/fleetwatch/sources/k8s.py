"""Kubernetes: pod evictions and nodes going NotReady.

Reads Event objects (``kubectl get events -o json``, a watch stream, core/v1 and
events.k8s.io/v1 spellings), the ``kubectl get events`` and ``kubectl describe``
text tables, and the kubelet's own log lines. Records and events (source ``k8s``):

* reason ``Evicted`` (kubelet node-pressure eviction; old "which exceeds its request
  of" and new "Threshold quantity … has larger consumption of" messages) ->
  ``pod_evicted``, the starved resource in ``detail``;
* ``TaintManagerEviction`` "Marking for deletion Pod ns/name" -> ``pod_evicted``
  ("Cancelling deletion" is the opposite and is not an eviction);
* ``NodeControllerEviction`` -> ``pod_evicted`` on the node it names;
* kubelet ``eviction_manager`` "pod is evicted successfully" (both wordings) ->
  ``pod_evicted`` on the host that logged it;
* ``NodeNotReady`` on a Node, and kubelet's "Node became not ready" ->
  ``node_not_ready``;
* a ``kubectl describe pod`` status block (``Status: Failed``, ``Reason: Evicted``,
  ``Message: …``) -> ``pod_evicted`` on the node of its ``Node: name/ip`` line, the
  starved resource (or the exceeded limit) in ``detail``. The block tells no time
  (``Start Time`` is the pod's start, not its eviction): when the describe's Events
  table has the ``Evicted`` row (within 400 lines), that row is the eviction, with its
  age; else the block is one eviction with no time (clock ``none``). One eviction per
  pod per describe; a block before any ``Name:`` is counted "eviction without pod".

A pod's node comes from the event (``source.host``, ``reportingInstance``), else from a
``Scheduled`` event ("Successfully assigned ns/pod to node") seen earlier in the file.
``kubectl get events`` prints ages ("5m"), not times: an age counts back from the
file's modification time. Its rows are recognised by their shape (``[NAMESPACE] [LAST
SEEN] Normal|Warning REASON kind/name MESSAGE``), so rows whose header was grepped
away are read, and so are rows pasted without the age column (``kubectl get events |
grep Evicted`` trimmed to ``Warning  Evicted  pod/name  The node had condition:
[MemoryPressure].``): those have no time (clock ``none``). One word before the type
is the age when it reads as one ("5m", "4m30s", "<unknown>"), else the namespace.

An Event object whose involved object's kind, name or namespace is not a string, or
whose ``metadata``, ``involvedObject`` or ``source`` is not an object, is counted
"malformed event"; a message that is not a string is no message. Every pattern here
runs in time linear in the line.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from typing import Any, Final

from fleetwatch.sources import json_document
from fleetwatch.sources.context import FileContext
from fleetwatch.sources.cursor import Cursor
from fleetwatch.sources.envelope import Envelope, showable
from fleetwatch.sources.reader import Reader

SOURCE: Final = "k8s"
_EVICTION_REASONS: Final = frozenset({"Evicted", "TaintManagerEviction", "NodeControllerEviction"})
_MARKING: Final = re.compile(r"Marking for deletion Pod (?:(?P<ns>[^/\s]+)/)?(?P<pod>[^\s/]+)")
_MARKING_NODE: Final = re.compile(r"from Node (?P<node>\S+)")
_ASSIGNED: Final = re.compile(
    r"Successfully assigned (?P<ns>[^/\s]+)/(?P<pod>\S+) to (?P<node>\S+)"
)
_RESOURCE: Final = re.compile(r"low on resource: (?P<res>[\w.-]+?)\.?(?:\s|$)")
_CONDITION: Final = re.compile(r"node had condition: \[(?P<cond>\w+)\]")
_KUBELET_EVICTED_NEW: Final = re.compile(
    r'pod is evicted successfully"\s+pod="(?P<ns>[^/"]+)/(?P<pod>[^"]+)"'
)
# "([^)(]*)": the uid in parentheses stops at the next one, not the end of the line.
_KUBELET_EVICTED_OLD: Final = re.compile(
    r"pods? (?P<pod>[^\s_]+)_(?P<ns>[^\s(]+)\([^)(]*\) (?:is )?evicted successfully"
)
_KUBELET_RECLAIM: Final = re.compile(
    r'attempting to reclaim"?\s+(?:resourceName=")?(?P<res>[\w.-]+)', re.IGNORECASE
)
_KUBELET_NOT_READY: Final = re.compile(r'"Node became not ready"\s+node="(?P<node>[^"]+)"')
_GET_EVENTS: Final = re.compile(
    r"^(?:(?P<ns>[a-z0-9][-a-z0-9.]*)\s+)?(?:(?P<age>\S+)\s+)?(?P<type>Normal|Warning)\s+"
    r"(?P<reason>\w+)\s+(?P<kind>[\w.-]+)/(?P<name>\S+)\s+(?P<msg>.*)$"
)
_DESCRIBE_EVENT: Final = re.compile(
    r"^\s+(?P<type>Normal|Warning)\s+(?P<reason>\w+)\s+(?P<age>\S.*?)\s{2,}"
    r"(?P<src>\S.*?)\s{2,}(?P<msg>\S.*)$"
)
_DESCRIBE_HEADER: Final = re.compile(r"^(?P<key>Name|Namespace|Node):\s+(?P<value>\S+)")
_DESCRIBE_EVICTED: Final = re.compile(r"^Reason:\s+Evicted\s*$")
_DESCRIBE_MESSAGE: Final = re.compile(r"^Message:\s+(?P<msg>\S.*)$")
# kubelet's limit evictions name no starved resource: the limit is the detail
_LIMITS: Final = (
    ("ephemeral local storage usage exceeds the total limit", "ephemeral-storage limit"),
    ("exceeded its local ephemeral storage limit", "ephemeral-storage limit"),
    ("Usage of EmptyDir volume", "emptyDir size limit"),
)
_LOOKAHEAD: Final = 400  # a describe's Events table is within this many lines of its Status
# An age part starts where a digit run starts (else a long run is quadratic), and has at
# most 9 digits: 10^9 days is no age.
_AGE_PART: Final = re.compile(r"(?<!\d)(\d{1,9})([dhms])")
_AGE_UNITS: Final = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_SPACES: Final = re.compile(r"\s+")
_AN_AGE: Final = re.compile(r"(?:\d{1,9}[dhms]){1,4}|<unknown>|<invalid>")


def _pod_nodes(ctx: FileContext) -> dict[tuple[str | None, str], str]:
    memo: dict[tuple[str | None, str], str] = ctx.memo.setdefault("k8s.pod_nodes", {})
    return memo


def _epoch(stamp: Any) -> float | None:
    return _rfc3339(stamp) if isinstance(stamp, str) and stamp else None


# A stream repeats its stamps (an Event's first and last time are often one, a storm's
# evictions share seconds): each is read once. A str key is its own: no tuple per call.
@lru_cache(maxsize=1024)
def _rfc3339(stamp: str) -> float | None:
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError):  # no time, or one before year 1 in local time
        return None


def _age_seconds(age: str) -> float | None:
    parts = _AGE_PART.findall(age.split(" ")[0])
    if not parts:
        return None
    return float(sum(int(n) * _AGE_UNITS[unit] for n, unit in parts))


def _eviction_detail(message: str) -> str | None:
    if m := _RESOURCE.search(message):
        return f"low on {m['res']}"
    if m := _CONDITION.search(message):
        return f"node condition {m['cond']}"
    for words, detail in _LIMITS:
        if words in message:
            return detail
    text = _SPACES.sub(" ", message).strip()
    return text[:160] or None


def _emit_event(
    ctx: FileContext,
    line: int,
    ts: float | None,
    reason: str,
    message: str,
    kind: str | None,
    name: str | None,
    namespace: str | None,
    node: str | None,
) -> None:
    """Turn one Kubernetes event, however it was written, into fleetwatch events."""
    pods = _pod_nodes(ctx)
    base = {"source": SOURCE, "line": line, "ts": ts, "clock": "wall" if ts else "none"}
    if reason == "Scheduled" and (m := _ASSIGNED.search(message)):
        pods[m["ns"], m["pod"]] = m["node"]
        pods[None, m["pod"]] = m["node"]
        return
    if reason == "NodeNotReady":
        if kind == "Node" and name:
            ctx.emit({**base, "kind": "node_not_ready", "node": name, "reason": reason})
        return
    if reason not in _EVICTION_REASONS:
        return
    if reason == "Evicted":
        pod, ns, detail = name, namespace, _eviction_detail(message)
    else:
        m = _MARKING.search(message)
        if m is None:
            return  # "Cancelling deletion": the pod stays
        pod, ns, detail = m["pod"], m["ns"] or namespace, None
        if nm := _MARKING_NODE.search(message):
            node = nm["node"]
        elif kind == "Node" and name:
            node = name
    if pod is None:
        ctx.stats.bad(SOURCE, "eviction without pod")
        return
    node = node or pods.get((ns, pod)) or pods.get((None, pod))
    ctx.emit(
        {
            **base,
            "kind": "pod_evicted",
            "node": node,
            "pod": pod,
            "namespace": ns,
            "reason": reason,
            "detail": detail,
        }
    )


def _text(value: Any) -> bool:
    """A string, or nothing: what an Event's names may be."""
    return value is None or isinstance(value, str)


def read_object(obj: dict[str, Any], line: int, ctx: FileContext) -> None:
    """Read one Kubernetes Event object (core/v1 or events.k8s.io/v1)."""
    reason = obj.get("reason")
    if not isinstance(reason, str):
        return
    involved = obj.get("involvedObject") or obj.get("regarding") or {}
    source = obj.get("source") or obj.get("deprecatedSource") or {}
    metadata = obj.get("metadata") or {}
    if not (isinstance(involved, dict) and isinstance(source, dict) and isinstance(metadata, dict)):
        ctx.stats.bad(SOURCE, "malformed event")
        return
    kind, name, namespace = involved.get("kind"), involved.get("name"), involved.get("namespace")
    if not (_text(kind) and _text(name) and _text(namespace)):
        ctx.stats.bad(SOURCE, "malformed event")
        return
    message = obj.get("message") or obj.get("note") or ""
    if not isinstance(message, str):
        message = ""
    ts = None
    for key in ("lastTimestamp", "deprecatedLastTimestamp", "eventTime", "firstTimestamp"):
        ts = _epoch(obj.get(key))
        if ts is not None:
            break
    if ts is None:
        ts = _epoch(metadata.get("creationTimestamp"))
    host = source.get("host")
    if not host and obj.get("reportingComponent") in ("kubelet", "kubelet.kubernetes.io"):
        host = obj.get("reportingInstance") or obj.get("reportingController")
    _emit_event(
        ctx,
        line,
        ts,
        reason,
        message,
        kind,
        name,
        namespace,
        host if isinstance(host, str) and host else None,
    )


def read_text(text: str, env: Envelope, line: int, cursor: Cursor, ctx: FileContext) -> None:
    """Read a kubectl table row, a describe section line or a kubelet log line."""
    low = text.lower()
    if "eviction manager" in low or "eviction_manager" in low:
        _read_kubelet(text, env, line, ctx)
    elif m := _KUBELET_NOT_READY.search(text):
        ctx.emit(env.event("node_not_ready", SOURCE, line, node=m["node"], reason="NodeNotReady"))
    elif m := _DESCRIBE_HEADER.match(text):
        describe = ctx.memo.setdefault("k8s.describe", {})
        if m["key"] == "Name":
            describe.clear()
        value = m["value"].split("/")[0]
        if value and value != "<none>":
            describe[m["key"]] = value
    elif _DESCRIBE_EVICTED.match(text):
        _read_describe_status(line, cursor, ctx)
    elif m := _DESCRIBE_EVENT.match(text):
        # ``describe pod`` has Namespace and Node lines; ``describe node`` has neither.
        describe = ctx.memo.get("k8s.describe", {})
        is_pod = "Node" in describe or "Namespace" in describe
        name = describe.get("Name")
        if m["reason"] == "Evicted" and describe.get("Evicted") == "status":
            return  # its status block was this eviction already
        _emit_event(
            ctx,
            line,
            _aged(ctx, m["age"]),
            m["reason"],
            m["msg"],
            "Pod" if is_pod else "Node",
            name,
            describe.get("Namespace"),
            describe.get("Node") if is_pod else name,
        )
    elif m := _GET_EVENTS.match(text):
        kind = {"pod": "Pod", "node": "Node"}.get(m["kind"].lower(), m["kind"])
        ns, age = m["ns"], m["age"]
        if age is None and ns is not None and _AN_AGE.fullmatch(ns):
            ns, age = None, ns  # "5m  Warning ...": an age, no namespace
        _emit_event(
            ctx,
            line,
            None if age is None else _aged(ctx, age),
            m["reason"],
            m["msg"],
            kind,
            m["name"],
            ns,
            m["name"] if kind == "Node" else None,
        )
    elif m := _ASSIGNED.search(text):
        _pod_nodes(ctx)[m["ns"], m["pod"]] = m["node"]


def _read_describe_status(line: int, cursor: Cursor, ctx: FileContext) -> None:
    """``Reason: Evicted`` in a ``describe pod`` status block: the pod was evicted.

    The block says no time (``Start Time`` is the pod's start): when the describe's
    Events table has the ``Evicted`` row, that row is the eviction, with its age, and
    the block adds nothing; else the block is one eviction without a time.
    """
    describe = ctx.memo.get("k8s.describe", {})
    following = cursor.peek(_LOOKAHEAD)
    message = ""
    if following and (m := _DESCRIBE_MESSAGE.match(following[0])):
        message = m["msg"]
        cursor.skip(1)
    for text in following:
        if text.startswith(("Name:", "Reason:")):
            break  # the next describe (or a torn one): look no further
        if (row := _DESCRIBE_EVENT.match(text)) and row["reason"] == "Evicted":
            return
    if "Name" not in describe or not ("Node" in describe or "Namespace" in describe):
        ctx.stats.bad(SOURCE, "eviction without pod")
        return
    if describe.get("Evicted"):
        return  # one eviction per pod per describe
    describe["Evicted"] = "status"
    _emit_event(
        ctx,
        line,
        None,
        "Evicted",
        message,
        "Pod",
        describe["Name"],
        describe.get("Namespace"),
        describe.get("Node"),
    )


def _aged(ctx: FileContext, age: str) -> float | None:
    seconds = _age_seconds(age)
    ts = None if seconds is None else ctx.rules.reference - seconds
    return ts if ts is not None and showable(ts) else None  # 999999999d is before year 1


def _read_kubelet(text: str, env: Envelope, line: int, ctx: FileContext) -> None:
    if m := _KUBELET_RECLAIM.search(text):
        ctx.memo["k8s.reclaim"] = m["res"]
        return
    m = _KUBELET_EVICTED_NEW.search(text) or _KUBELET_EVICTED_OLD.search(text)
    if m is None:
        return
    resource = ctx.memo.get("k8s.reclaim")
    ctx.emit(
        env.event(
            "pod_evicted",
            SOURCE,
            line,
            pod=m["pod"],
            namespace=m["ns"],
            reason="Evicted",
            detail=f"low on {resource}" if resource else None,
        )
    )


TEXT_WORDS: Final = (
    "vict",
    "NodeNotReady",
    "Node became not ready",
    "Successfully assigned",
    "Name:",
    "Namespace:",
    "Node:",
)
_KINDS: Final = frozenset({"pod_evicted", "node_not_ready"})
# A Kubernetes document says so near its start: an Event's involvedObject (or the
# events.k8s.io ``regarding``), or a list's kind.
_DOCUMENT_MARK: Final = re.compile(
    rb'"(?:involvedObject|regarding)"\s*:|"kind"\s*:\s*"(?:Event|EventList|List)"'
)


def _claims(text: str) -> bool:
    for word in TEXT_WORDS:  # noqa: SIM110 (any() makes a generator per candidate line)
        if word in text:
            return True
    return False


def _is_document(head: bytes) -> bool:
    return json_document.is_document(head) and _DOCUMENT_MARK.search(head) is not None


def _read_document(data: bytes, ctx: FileContext) -> None:
    json_document.read_items(data, ctx, read_object)


TEXT: Final = Reader(
    name="k8s_text",
    source=SOURCE,
    kinds=_KINDS,
    description="kubectl get events / describe tables and kubelet eviction lines",
    keywords=(
        rb"vict",  # Evicted (a describe's "Reason: Evicted" too), Eviction, eviction manager
        rb"NodeNotReady",
        rb"Node became not ready",
        rb"Successfully assigned",  # a pod's node, for later evictions
        rb"^N(?:ame|amespace|ode):",  # kubectl describe headers
    ),
    claims=_claims,
    read_line=read_text,
)
DOCUMENT: Final = Reader(
    name="k8s_json",
    source=SOURCE,
    kinds=_KINDS,
    description="kubectl get events -o json: an Event, or a List of them",
    sniff=_is_document,
    read_document=_read_document,
)

"""One JSON object per line: which format it is, and who reads it.

* ``journalctl -o json``: ``MESSAGE`` (a string, or a list of bytes when it is not
  UTF-8) with ``__REALTIME_TIMESTAMP`` (µs) and ``_HOSTNAME``. The message goes back
  through the line dispatcher, so a kernel Xid or a kubelet eviction in the journal
  reads exactly as it does in a syslog file; the lines after it are seen through
  their messages too (an AER report spans several journal entries).
* Kubernetes: a watch stream line ``{"type": …, "object": {…}}``, one Event object,
  or a whole ``List`` on one line -> ``k8s.read_object``.
* fleetwatch's own events (``fleetwatch parse --output jsonl``) -> ``jsonl.read``.

Anything else is some other program's JSON and is not a record. A line that starts
like JSON but does not parse is counted unreadable ("invalid json").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from fleetwatch.events import KIND_ID
from fleetwatch.sources import jsonl, k8s
from fleetwatch.sources.context import FileContext
from fleetwatch.sources.cursor import Cursor
from fleetwatch.sources.envelope import Envelope

Dispatch = Callable[..., None]
_K8S_LISTS: Final = frozenset({"List", "EventList"})


def journal_message(entry: dict[str, Any]) -> str | None:
    """The text of a journal entry's MESSAGE field (None if it has none)."""
    message = entry.get("MESSAGE")
    if isinstance(message, list):
        try:
            return bytes(message).decode("utf-8", "replace")
        except (TypeError, ValueError):
            return None
    return message if isinstance(message, str) else None


def _journal_envelope(entry: dict[str, Any]) -> Envelope:
    host = entry.get("_HOSTNAME")
    host = host if isinstance(host, str) and host else None
    try:
        return Envelope(int(entry["__REALTIME_TIMESTAMP"]) / 1e6, "wall", host)
    except (KeyError, TypeError, ValueError):
        return Envelope(None, "none", host)


class MessageCursor:
    """The lines after a journal entry, seen as the messages they carry."""

    def __init__(self, inner: Cursor) -> None:
        self._inner = inner

    def peek(self, n: int) -> list[str]:
        messages = []
        for raw in self._inner.peek(n):
            try:
                entry = json.loads(raw)
            except ValueError:
                break
            text = journal_message(entry) if isinstance(entry, dict) else None
            if text is None:
                break
            messages.append(text)
        return messages

    def skip(self, n: int) -> None:
        self._inner.skip(n)


def read(text: str, line: int, cursor: Cursor, ctx: FileContext, dispatch: Dispatch) -> None:
    """Read the JSON object on this line, whichever format it is."""
    try:
        obj = json.loads(text)
    except ValueError:
        ctx.stats.bad("json", "invalid json")
        return
    if not isinstance(obj, dict):
        return
    if "MESSAGE" in obj or "__REALTIME_TIMESTAMP" in obj:
        message = journal_message(obj)
        if message:
            dispatch(message, _journal_envelope(obj), line, MessageCursor(cursor), ctx)
    elif "object" in obj and "type" in obj:
        inner = obj["object"]
        if isinstance(inner, dict):
            k8s.read_object(inner, line, ctx)
    elif obj.get("kind") in _K8S_LISTS and isinstance(obj.get("items"), list):
        for item in obj["items"]:
            if isinstance(item, dict):
                k8s.read_object(item, line, ctx)
    elif "involvedObject" in obj or "regarding" in obj:
        k8s.read_object(obj, line, ctx)
    elif obj.get("kind") in KIND_ID and "apiVersion" not in obj:
        jsonl.read(obj, line, ctx)

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
like JSON but does not parse is counted unreadable ("invalid json"); one nested deeper
than ``MAX_DEPTH`` is counted "too deep" before it is parsed (no record of ours nests
past a few levels, and the parser recurses: past about 1,000 levels, fewer on a deep
stack, it raises). A ``\\ud800``
escape with no pair (a lone surrogate: no UTF-8 can write it, so neither could the
output or the store) is read as U+FFFD, as invalid UTF-8 bytes are. A journal time no
clock shows (past year 9999) is no time: the entry is read untimed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from typing import Any, Final

from fleetwatch.events import KIND_ID
from fleetwatch.sources import jsonl, k8s
from fleetwatch.sources.context import FileContext
from fleetwatch.sources.cursor import Cursor
from fleetwatch.sources.envelope import Envelope, showable
from fleetwatch.sources.reader import Reader

Dispatch = Callable[..., None]
_K8S_LISTS: Final = frozenset({"List", "EventList"})
TOO_DEEP: Final = "too deep"
MAX_DEPTH: Final = 512
# What nests, and strings to skip (an unclosed one runs to the end).
_JSON_TOKEN: Final = re.compile(r'[\[{\]}]|"[^"\\]*(?:\\.[^"\\]*)*"?')
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


@cache
def _decoder() -> Callable[[str], Any]:
    """msgspec's JSON decoder: the same Python values as ``json.loads`` at about twice the
    speed, and it keeps the keys it has seen (a journal entry's dozen keys are not made
    again for each line). It refuses what ``json.loads`` takes beyond the standard (NaN,
    1e400, a lone surrogate): those go to ``json.loads``, so every text reads as it did.
    Imported at the first JSON line: it is about 20 ms of every command's start-up."""
    try:
        import msgspec
    except ImportError:  # a dependency; an install without it still reads, slower
        return json.loads
    return msgspec.json.Decoder().decode


class TooDeep(ValueError):
    """JSON nested deeper than ``MAX_DEPTH``."""


def loads(text: str) -> Any:
    """``json.loads``, with each lone surrogate in a string read as U+FFFD.

    Raises ``TooDeep`` for JSON nested deeper than ``MAX_DEPTH`` (never parsed), and
    ``ValueError`` for text that is not JSON.
    """
    # fewer openings cannot nest past the limit (two counts: no int past 256 is made)
    if text.count("[") + text.count("{") > MAX_DEPTH and too_deep_at(text) >= 0:
        raise TooDeep
    try:
        value = _decoder()(text)
    except Exception:  # whatever msgspec refuses, json.loads judges
        value = json.loads(text)
    return repaired(value) if "\\u" in text and may_hold_surrogates(text) else value


def too_deep_at(text: str) -> int:
    """Where JSON ``text`` first nests deeper than ``MAX_DEPTH``; -1: nowhere.

    Two counts at C speed settle most texts: fewer openings than the limit cannot
    nest past it. Only a text with more is walked, token by token, strings skipped.
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return -1
    depth = 0
    for token in _JSON_TOKEN.finditer(text):
        opening = text[token.start()]
        if opening in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return token.start()
        elif opening in "]}":
            depth -= 1
    return -1


def may_hold_surrogates(text: str) -> bool:
    """Whether JSON ``text`` escapes a surrogate (rare: emoji, or a torn one)."""
    return "\\ud" in text or "\\uD" in text


def repaired(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings and keys made U+FFFD.

    A pair of escapes is one character once decoded; what is left between U+D800 and
    U+DFFF is half of no pair, and no UTF-8 (no output, no store) can write it.
    """
    if isinstance(value, str):
        return _writable(value)
    stack = [value] if isinstance(value, dict | list) else []
    while stack:  # a loop, not recursion: the value may be nested 900 deep
        node = stack.pop()
        if isinstance(node, dict):
            for key in [k for k in node if not _is_writable(k)]:
                node[_writable(key)] = node.pop(key)
        for at, child in list(node.items() if isinstance(node, dict) else enumerate(node)):
            if isinstance(child, str):
                node[at] = _writable(child)
            elif isinstance(child, dict | list):
                stack.append(child)
    return value


def _is_writable(text: str) -> bool:
    return text.isascii() or not _SURROGATE.search(text)


def _writable(text: str) -> str:
    return text if _is_writable(text) else _SURROGATE.sub("\ufffd", text)


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
        ts = int(entry["__REALTIME_TIMESTAMP"]) / 1e6
    except (KeyError, TypeError, ValueError, OverflowError):
        return Envelope(None, "none", host)
    return Envelope(ts, "wall", host) if showable(ts) else Envelope(None, "none", host)


class MessageCursor:
    """The lines after a journal entry, seen as the messages they carry."""

    def __init__(self, inner: Cursor) -> None:
        self._inner = inner

    def peek(self, n: int) -> list[str]:
        messages = []
        for raw in self._inner.peek(n):
            try:
                entry = loads(raw)
            except ValueError:  # not a journal entry (or one too deep): the record ends
                break
            text = journal_message(entry) if isinstance(entry, dict) else None
            if text is None:
                break
            messages.append(text)
        return messages

    def skip(self, n: int) -> None:
        self._inner.skip(n)


def read(
    text: str, env: Envelope, line: int, cursor: Cursor, ctx: FileContext, dispatch: Dispatch
) -> None:
    """Read the JSON object on this line, whichever format it is."""
    try:
        obj = loads(text)
    except TooDeep:
        ctx.stats.bad("json", TOO_DEEP)
        return
    except ValueError:
        ctx.stats.bad("json", "invalid json")
        return
    if not isinstance(obj, dict):
        return
    kind = obj.get("kind")
    kind = kind if isinstance(kind, str) else None  # [] or {} is no kind, and no dict key
    if "MESSAGE" in obj or "__REALTIME_TIMESTAMP" in obj:
        message = journal_message(obj)
        if message:
            dispatch(message, _journal_envelope(obj), line, MessageCursor(cursor), ctx)
    elif "object" in obj and "type" in obj:
        inner = obj["object"]
        if isinstance(inner, dict):
            k8s.read_object(inner, line, ctx)
    elif kind in _K8S_LISTS and isinstance(obj.get("items"), list):
        for item in obj["items"]:
            if isinstance(item, dict):
                k8s.read_object(item, line, ctx)
    elif "involvedObject" in obj or "regarding" in obj:
        k8s.read_object(obj, line, ctx)
    elif kind in KIND_ID and "apiVersion" not in obj:
        jsonl.read(obj, line, ctx)


def _is_object(text: str) -> bool:
    return text.lstrip().startswith("{")


READER: Final = Reader(
    name="json_line",
    source="jsonl",
    kinds=frozenset(KIND_ID),  # a journal message may hold any record
    description="journalctl -o json, Kubernetes watch streams, fleetwatch's own events",
    keywords=(rb"^\{",),  # a JSON object on its own line
    claims=_is_object,
    read_line=read,
    nests=True,
)

"""JSON documents: a file that is one JSON value spread over many lines.

``kubectl get events -o json`` writes a ``List`` whose ``items`` are the records; a
Prometheus HTTP API answer is one object. ``is_document`` tells such a file from a
file of one JSON object per line (a journal, a watch stream: those are line streams)
by its first line: a value that goes on past its first line is a document.

``read_items`` hands a reader the document's records one at a time, each with the line
it starts on: the items of a top-level array or of an ``items`` array, else the one
object. Reading items one at a time keeps every complete item of a document that was
cut off (counted as "truncated json"). An item nested deeper than
``json_line.MAX_DEPTH`` is counted "too deep"; where it ends is not known, so the
document is read no further.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Final

from fleetwatch.sources.context import FileContext
from fleetwatch.sources.json_line import (
    TOO_DEEP,
    TooDeep,
    loads,
    may_hold_surrogates,
    repaired,
    too_deep_at,
)

ReadItem = Callable[[dict[str, Any], int, FileContext], None]

_JSON_ITEMS: Final = re.compile(r'^\s*\[|"items"\s*:\s*\[')
_JSON_OPENING: Final = re.compile(rb'\s*(?:\{\s*(?:"|\}|$)|\[\s*(?:[{\["\]]|$))', re.MULTILINE)


def is_document(head: bytes) -> bool:
    """Whether an input that begins with ``head`` is one JSON value over many lines."""
    # "[   99.08] NVRM" is dmesg, not an array: a JSON value opens with { " [ or ].
    if not _JSON_OPENING.match(head):
        return False
    first_line = head.lstrip().split(b"\n", 1)[0].strip()
    try:
        loads(first_line.decode("utf-8", "replace"))
    except TooDeep:
        return False  # nested past any record on its first line: the stream counts it
    except ValueError:
        return True  # the value goes on past its first line: a document
    return False


def read_items(data: bytes, ctx: FileContext, read_item: ReadItem) -> None:
    """Hand each record of the document in ``data`` to ``read_item``, with its line."""
    text = data.decode("utf-8", "replace")
    decoder = json.JSONDecoder()
    repair = may_hold_surrogates(text)
    deep = too_deep_at(text)  # the item that holds this point is too deep
    deep = len(text) if deep < 0 else deep
    at = _JSON_ITEMS.search(text)
    if at is None:  # one object, not a list of them
        try:
            obj, end = decoder.raw_decode(text, len(text) - len(text.lstrip()))
        except RecursionError:
            end = len(text)
        except ValueError:
            ctx.stats.bad("json", "truncated json")
            return
        if end > deep:
            ctx.stats.bad("json", TOO_DEEP)
            return
        if isinstance(obj, dict):
            read_item(repaired(obj) if repair else obj, 1, ctx)
        return
    pos, line, counted = at.end(), 1, 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if text.startswith("]", pos):
            return
        try:
            item, end = decoder.raw_decode(text, pos)
        except RecursionError:
            end = len(text)
        except ValueError:
            ctx.stats.bad("json", "truncated json")
            return
        if end > deep:  # where this item ends is not known: the rest is lost with it
            ctx.stats.bad("json", TOO_DEEP)
            return
        line += text.count("\n", counted, pos)
        counted = pos
        if isinstance(item, dict):
            read_item(repaired(item) if repair else item, line, ctx)
        pos = end

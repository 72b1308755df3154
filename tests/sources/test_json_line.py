"""json_line.loads: msgspec first, json.loads for what msgspec refuses; the same values
as json.loads alone, for every text (held equal by Hypothesis)."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fleetwatch.sources import json_line

# Every character, lone surrogates too (json.dumps escapes them, or writes them raw).
_CHARS = st.characters(codec=None, exclude_categories=())
_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 2, max_value=2**64 + 2)
    | st.floats()  # NaN and infinities too: json.dumps writes NaN, Infinity
    | st.text(_CHARS),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(_CHARS), inner, max_size=4),
    max_leaves=12,
)


def _reference(text: str) -> Any:
    """What loads returned when it was json.loads alone."""
    if text.count("[") + text.count("{") > json_line.MAX_DEPTH and json_line.too_deep_at(text) >= 0:
        raise json_line.TooDeep
    value = json.loads(text)
    return json_line.repaired(value) if json_line.may_hold_surrogates(text) else value


def _outcome(text: str, loads: Any) -> str:
    """The value as repr (1 is not 1.0, -0.0 is not 0.0, NaN equals NaN), or the error."""
    try:
        return repr(loads(text))
    except json_line.TooDeep:
        return "too deep"
    except RecursionError:
        return "recursion"
    except ValueError:
        return "not json"


def _same(text: str) -> None:
    assert _outcome(text, json_line.loads) == _outcome(text, _reference)


@given(_VALUES, st.booleans())
@example({"a": float("nan"), "b": float("inf")}, False)
@example({"\ud800": "\udfff x \ud83d\ude00"}, True)
@example({"a": "\ud800"}, False)
@example({"a": 2**64, "b": -(2**63) - 1}, True)
def test_every_json_value_reads_as_json_loads_reads_it(value: Any, ascii_only: bool) -> None:
    _same(json.dumps(value, ensure_ascii=ascii_only))


@given(_VALUES, st.integers(min_value=0), st.text(_CHARS, max_size=3))
def test_every_damaged_text_reads_or_fails_as_json_loads_does(
    value: Any, where: int, torn: str
) -> None:
    text = json.dumps(value)
    at = where % (len(text) + 1)
    _same(text[:at] + torn + text[at + 1 :])


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1e400}',  # msgspec: out of range; json: inf
        '{"a": NaN, "b": -Infinity}',
        '{"a": 01}',
        '{"a": "x\x01"}',
        '{"a": 1, "a": 2.0}',
        '{"a": -0.0, "b": -0, "c": 2.4e-324}',
        "[" * json_line.MAX_DEPTH + "]" * json_line.MAX_DEPTH,
        "[" * (json_line.MAX_DEPTH + 1) + "]" * (json_line.MAX_DEPTH + 1),
        "{" + '"a":[' * 900 + "1" + "]" * 900 + "}",
    ],
)
def test_texts_msgspec_refuses_or_reads_otherwise(text: str) -> None:
    _same(text)


def test_without_msgspec_json_loads_reads_every_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "msgspec", None)  # None in sys.modules: cannot import
    json_line._decoder.cache_clear()
    try:
        assert json_line._decoder() is json.loads
        _same('{"a": [1, 2.5, "x"], "b": NaN}')
    finally:
        json_line._decoder.cache_clear()  # the next test imports msgspec again

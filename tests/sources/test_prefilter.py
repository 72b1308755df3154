"""The two prefilter engines find the same candidate offsets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetwatch.sources.prefilter import Prefilter
from fleetwatch.sources.registry import KEYWORDS
from tests.conftest import DATA

FAST = Prefilter(KEYWORDS)
PLAIN = Prefilter(KEYWORDS, "re")
FILES = sorted(p for p in DATA.rglob("*") if p.is_file())


def test_where_hyperscan_loads_it_is_the_engine() -> None:
    # CI runs on x86-64, where the hyperscan wheel loads; the fallback is tested below.
    try:
        import hyperscan  # noqa: F401
    except ImportError:  # aarch64 and others: no wheel, or one that does not load
        pytest.skip("hyperscan does not load on this platform (no wheel): the re engine runs")
    assert FAST.name == "hyperscan"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_both_engines_agree_on_every_test_file(path: object) -> None:
    data = path.read_bytes()  # type: ignore[attr-defined]
    assert FAST.offsets(data, len(data)) == PLAIN.offsets(data, len(data))


_fragment = st.one_of(
    st.sampled_from([k.replace(b"^", b"\n").replace(b"\\{", b"{") for k in KEYWORDS]),
    st.sampled_from([b"Name:", b"Node:", b"Namespace:", b"\n", b" ", b"\t", b"{", b"N"]),
    st.binary(max_size=12),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_fragment, max_size=30), st.integers(0, 40), st.integers(0, 60))
def test_both_engines_agree_on_any_bytes(parts: list[bytes], cut: int, skip: int) -> None:
    data = b"".join(parts)
    end = max(0, len(data) - cut)
    assert FAST.offsets(data, end) == PLAIN.offsets(data, end)
    # from a line's start on: the offsets past it, as a scan of the whole finds them
    start = data.find(b"\n", 0, min(skip, end)) + 1
    from_start = FAST.offsets(data, end, start)
    assert from_start == PLAIN.offsets(data, end, start)
    assert from_start == [at for at in FAST.offsets(data, end) if at > start]


def test_the_stream_reads_the_same_events_with_either_engine() -> None:
    from fleetwatch.events import BatchBuilder
    from fleetwatch.sources.context import FileContext, Identities, ReadOptions, ReadStats
    from fleetwatch.sources.stream import LineStream

    def events(prefilter: Prefilter) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for path in FILES:
            builder = BatchBuilder()
            ctx = FileContext(
                path.name, "n", ReadOptions(year=2024), ReadStats(), Identities(), builder, 0.0
            )
            with path.open("rb") as handle:
                for _ in LineStream(ctx, prefilter=prefilter).run(handle):
                    pass
            out.extend(builder.seal().records())
        return out

    assert events(FAST) == events(PLAIN)

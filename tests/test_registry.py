"""The registries: every reader and detector plugs in by one row, and Xids have owners."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from fleetwatch.catalog import xid_catalog, xids_owned_by
from fleetwatch.detectors import REGISTRY
from fleetwatch.events import KINDS, BatchBuilder
from fleetwatch.sources.context import FileContext, Identities, ReadOptions, ReadStats
from fleetwatch.sources.files import read_input, read_paths
from fleetwatch.sources.reader import Reader
from fleetwatch.sources.registry import DOCUMENT_READERS, KEYWORDS, LINE_READERS, READERS

DATA = Path(__file__).parent / "data"
EXAMPLES = Path(__file__).parent.parent / "examples"


def test_every_xid_in_the_catalog_has_exactly_one_owner_that_reads_xids() -> None:
    owners = {entry.owner for entry in xid_catalog().values()}
    for owner in owners:
        assert owner in REGISTRY, f"xid.toml names {owner!r}, which is no detector"
        assert "xid" in REGISTRY[owner].kinds, f"{owner} owns Xids but does not read them"
    owned = [xids_owned_by(owner) for owner in owners]
    assert sum(len(codes) for codes in owned) == len(xid_catalog())
    assert set().union(*owned) == set(xid_catalog())


def test_the_memory_xids_are_hbm_eccs_including_156() -> None:
    assert {48, 63, 64, 92, 94, 95, 140, 156, 171} <= xids_owned_by("hbm_ecc")
    assert 79 in xids_owned_by("xid_correlation")


def test_every_detector_says_what_it_is_on_itself() -> None:
    for name, spec in REGISTRY.items():
        assert spec.name == name
        assert spec.description and len(spec.description) < 100
        assert spec.kinds <= set(KINDS), f"{name} reads kinds no reader has"
        assert spec.factory(spec.config()).name == name


def test_every_reader_declares_known_kinds_and_one_role_per_list() -> None:
    assert len({r.name for r in READERS}) == len(READERS)
    assert all(r.claims is not None for r in LINE_READERS)
    assert all(r.sniff is not None for r in DOCUMENT_READERS)
    assert set(KEYWORDS) == {k for r in LINE_READERS for k in r.keywords}


def test_a_reader_is_lines_or_documents_or_both_never_half() -> None:
    with pytest.raises(ValueError, match="pairs"):
        Reader("x", "kmsg", frozenset(), "d", keywords=(b"x",), claims=str.isalpha)
    with pytest.raises(ValueError, match="neither"):
        Reader("x", "kmsg", frozenset(), "d")
    with pytest.raises(ValueError, match="keywords"):
        Reader("x", "kmsg", frozenset(), "d", claims=str.isalpha, read_line=print)


def test_readers_emit_only_the_kinds_they_declare_on_every_fixture() -> None:
    declared: dict[str, set[str]] = {}
    for reader in READERS:
        declared.setdefault(reader.source, set()).update(reader.kinds)
    declared["jsonl"] = set(KINDS)  # fleetwatch's own events carry any kind
    inputs = [str(p) for p in (DATA, EXAMPLES) if p.exists()]
    seen = {(e["source"], e["kind"]) for batch in read_paths(inputs) for e in batch.records()}
    assert len(seen) > 10
    for source, kind in seen:
        assert kind in declared[source], (source, kind)


def _read(data: bytes) -> tuple[list[dict[str, object]], ReadStats]:
    stats = ReadStats()
    builder = BatchBuilder()
    ctx = FileContext("doc", "node", ReadOptions(), stats, Identities(), builder, 0.0)
    for _ in read_input(io.BufferedReader(io.BytesIO(data)), ctx):
        pass
    events = [e for batch in ctx.take() for e in batch.records()]
    return events, stats


def test_a_json_document_nobody_claims_is_counted_not_dropped() -> None:
    # (a Prometheus query answer was this example until prometheus_api claimed it)
    config_map = b'{\n  "apiVersion": "v1",\n  "kind": "ConfigMap",\n  "data": {}\n}\n'
    events, stats = _read(config_map)
    assert events == []
    assert stats.unreadable == {("file", "unknown json document"): 1}


def test_an_xml_document_nobody_claims_is_counted_not_dropped() -> None:
    events, stats = _read(b'<?xml version="1.0"?>\n<rss><channel/></rss>\n')
    assert events == []
    assert stats.unreadable == {("file", "unknown xml document"): 1}


def test_a_kubernetes_event_list_is_still_claimed() -> None:
    events, stats = _read((DATA / "k8s" / "events-list.json").read_bytes())
    assert events and not stats.unreadable

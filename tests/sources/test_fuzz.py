"""The fuzzer (``bench/fuzz.py``) keeps working: no reader crashes on a small run, and a
reader that raises, or that hangs, is caught, named and shown."""

from __future__ import annotations

from typing import Any

import pytest

from bench import fuzz
from fleetwatch.sources import kmsg
from fleetwatch.sources.registry import READERS


def test_every_registered_reader_is_fuzzed_from_records_it_reads() -> None:
    targets = fuzz.targets().values()
    assert {reader.name for reader in READERS} <= {t.reader for t in targets}
    readers = {reader.name: reader for reader in READERS}
    for target in targets:
        reader = readers[target.reader]
        if target.shape == "stream":  # a line of its seeds is the reader's record
            assert reader.claims is not None
            lines = (line for seed in target.seeds for line in seed.decode().splitlines())
            assert any(reader.claims(line) for line in lines), target.name
        else:  # a seed (after a header, for a CSV) is the reader's document
            assert reader.sniff is not None
            head = target.header[0] if target.header else b""
            assert any(reader.sniff(head + seed) for seed in target.seeds), target.name


@pytest.mark.slow
def test_no_reader_crashes_on_2000_mutated_records_each() -> None:
    reports = fuzz.run(records=2000, seed=2, jobs=1)
    assert set(reports) == set(fuzz.targets())
    for report in reports.values():
        assert report.records == 2000
        assert report.crashes == {}, report.examples
        assert report.events > 0  # unmutated records still read
        assert report.unreadable  # and mutated ones counted


def test_the_same_seed_fuzzes_the_same_records() -> None:
    first = fuzz.run(records=300, seed=5, jobs=1, readers=["nccl", "k8s-doc"])
    again = fuzz.run(records=300, seed=5, jobs=1, readers=["nccl", "k8s-doc"])
    other = fuzz.run(records=300, seed=6, jobs=1, readers=["nccl", "k8s-doc"])
    seen = {name: (r.events, r.unreadable) for name, r in first.items()}
    assert seen == {name: (r.events, r.unreadable) for name, r in again.items()}
    assert seen != {name: (r.events, r.unreadable) for name, r in other.items()}


def test_a_reader_that_raises_is_a_crash_shown_with_its_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = kmsg._read_sxid

    def broken(text: str, *args: Any) -> None:
        if "Fatal" in text:
            raise KeyError("boom")
        real(text, *args)

    monkeypatch.setattr(kmsg, "_read_sxid", broken)
    reports = fuzz.run(records=3000, seed=1, jobs=1, readers=["kmsg"])
    [crash] = reports["kmsg"].crashes
    # named by the innermost line of fleetwatch's own code: where kmsg called it
    assert crash.startswith("net: KeyError at kmsg.py:") and crash.endswith(" read")
    example = reports["kmsg"].examples[crash]
    assert "--seed 1 reader kmsg buffer 0" in example and "SXid" in example
    assert fuzz.main(["--records", "3000", "--readers", "kmsg", "--jobs", "1"]) == 1
    assert f"CRASH {crash}: " in capsys.readouterr().out


def test_a_reader_that_hangs_is_a_crash_named_where_it_hung(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def stuck(*args: Any) -> None:
        while True:  # ended by the fuzzer's alarm, as a regex that never ends would be
            pass

    monkeypatch.setattr(kmsg, "_read_sxid", stuck)
    monkeypatch.setattr(fuzz, "SECONDS_BASE", 0.2)
    sxid = b"kernel: nvidia-nvswitch3: SXid (PCI:0000:05:00.0): 1, Fatal\n"
    [crash] = fuzz.read([fuzz.LEAD + sxid], False).crashes()
    assert crash.startswith("net: TooSlow at kmsg.py:") and crash.endswith(" read")


def test_a_reason_made_of_the_input_is_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def echo(text: str, env: Any, line: int, ctx: Any) -> None:
        ctx.stats.bad("kmsg", f"unknown sxid ({text})")  # unbounded: one reason per line

    monkeypatch.setattr(kmsg, "_read_sxid", echo)
    sxid = b"kernel: nvidia-nvswitch3: SXid (PCI:0000:05:00.0): 1, Fatal\n"
    [crash] = fuzz.read([fuzz.LEAD + sxid], False).crashes()
    assert crash == "reason: a reason made of the input, counted by kmsg"

"""The compiled kernel-record loop and the Python path read the same events, and the same
state, from any input: every test file, and generated kernel lines of every stamp and
record shape the loop knows (and of shapes it must hand back), cut into any chunks.

Equal means equal batches (every column, the same string table in the same order, the
same batch boundaries), the same read statistics, and the same learned state of the
file (boot clocks, boot anchors, GPU identities, the driver's index map).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetwatch.events import BatchBuilder, EventBatch
from fleetwatch.sources import dcgm, kmsg, kmsg_compiled, nccl, smi
from fleetwatch.sources.context import FileContext, Identities, ReadOptions, ReadStats
from fleetwatch.sources.registry import LINE_READERS
from fleetwatch.sources.stream import LineStream
from tests.conftest import DATA

BUILT = kmsg_compiled.built()
needs_build = pytest.mark.skipif(not BUILT, reason="the compiled loop is not built here")
FILES = sorted(p for p in DATA.rglob("*") if p.is_file())


@contextmanager
def pure_python(pure: bool) -> Iterator[None]:
    before = os.environ.get(kmsg_compiled.PURE_PYTHON_VARIABLE)
    os.environ[kmsg_compiled.PURE_PYTHON_VARIABLE] = "1" if pure else "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ[kmsg_compiled.PURE_PYTHON_VARIABLE]
        else:
            os.environ[kmsg_compiled.PURE_PYTHON_VARIABLE] = before


def read(
    data: bytes,
    pure: bool,
    chunk: int | None = None,
    seed_identities: bool = False,
    name: str = "node-a.log",
    runs: bool = True,
    max_line: int | None = None,
) -> dict[str, Any]:
    """Everything a read leaves: batches, statistics, the file's learned state.

    ``runs``: runs of single-line records read in one loop (``LineStream._run``), or
    line by line; ``max_line``: the longest line read (else the default)."""
    identities = Identities()
    if seed_identities:  # what nvidia-smi or dcgm taught before: fills in uuid, serial, gpu
        identities.learn("n", "0000:07:00.0", uuid="GPU-seeded", serial="S-1", gpu=3)
        identities.learn("gpu-7", "0000:47:00.0", serial="S-2", gpu=-5)
        identities.learn("n", "0000:0f:00.0", gpu=2**40)  # no column holds it
    stats = ReadStats()
    options = ReadOptions(year=2024)
    if max_line is not None:
        options = ReadOptions(year=2024, max_line_bytes=max_line)
    ctx = FileContext(name, "n", options, stats, identities, BatchBuilder(), 0.0)
    ctx.node_is_file_name = True
    with pure_python(pure):
        stream = LineStream(ctx)
    assert (stream._compiled is None) == (pure or not BUILT)
    assert stream._run_starts, "the dcgm reader declares its line starts"
    if not runs:
        stream._run_starts = ()
    if chunk is None:
        stream.feed(data, eof=True)
    else:
        for at in range(0, len(data), chunk):
            stream.feed(data[at : at + chunk])
        stream.feed(b"", eof=True)
    return {
        "batches": ctx.take(),
        "stats": (stats.lines, stats.events, stats.unreadable, stats.skipped),
        "anchors": list(stats.boot_anchors.items()),
        "file_nodes": list(stats.file_nodes.items()),
        "boot": list(ctx.last_boot_ts.items()),
        "identities": identities._by_node,
        "last_identity": ctx.last_identity_pci,
        # what speeds reading up, not what was read: the compiled loop neither reads
        # dcgm's last time stamp nor tells it what it told
        "memo": {k: v for k, v in ctx.memo.items() if k not in (dcgm._STAMP, dcgm._TOLD)},
        "line": stream.line,
    }


def texts_read_by(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[str]:
    """The lines ``module.name`` (a Python path's reader) is given from now on, in order;
    it still reads them."""
    texts: list[str] = []
    real = getattr(module, name)

    def noting(text: str, *rest: Any) -> None:
        texts.append(text)
        real(text, *rest)

    monkeypatch.setattr(module, name, noting)
    return texts


def same_batches(a: list[EventBatch], b: list[EventBatch]) -> None:
    assert [len(x) for x in a] == [len(y) for y in b]
    for x, y in zip(a, b, strict=True):
        assert x.strings == y.strings
        assert list(x.records()) == list(y.records())
        for name, column in x.columns.items():
            assert column.dtype == y.columns[name].dtype, name
            np.testing.assert_array_equal(column, y.columns[name], err_msg=name)
            # and bit for bit: -0.0 is not 0.0, nor one rounding of a decimal the next
            assert column.tobytes() == y.columns[name].tobytes(), name


def assert_same(data: bytes, chunk: int | None = None, seed: bool = False) -> None:
    python = read(data, pure=True, chunk=chunk, seed_identities=seed)
    compiled = read(data, pure=False, chunk=chunk, seed_identities=seed)
    same_batches(python.pop("batches"), compiled.pop("batches"))
    assert python == compiled


def test_the_compiled_loop_is_built_where_a_compiler_is() -> None:
    if not (shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")):
        pytest.skip("no C compiler here: the wheel is pure Python")
    assert BUILT, "a C compiler is here but fleetwatch.sources._kmsgscan was not built"


@needs_build
def test_the_loop_is_on_unless_told_off() -> None:
    builder = BatchBuilder()
    ctx = FileContext("f", "n", ReadOptions(), ReadStats(), Identities(), builder, 0.0)
    with pure_python(False):
        assert kmsg_compiled.available()
        assert kmsg_compiled.compiled_for(ctx) is not None
    with pure_python(True):
        assert not kmsg_compiled.available()
        assert LineStream(ctx)._compiled is None


def test_the_words_it_is_told_are_the_readers() -> None:
    # the registry it was written against: another reader order turns it off
    assert tuple(r.name for r in LINE_READERS) == kmsg_compiled.READER_ORDER
    # the kmsg branches it reads itself are kmsg claims
    assert {"NVRM", "SXid"} <= set(kmsg.CLAIM_WORDS)
    # a stamped kernel line with a word of a reader asked before kmsg is that reader's
    stamped = "[ 12.5] NVRM: Xid (PCI:0000:07:00): 79, {}"
    for word in kmsg_compiled._BEFORE:
        line = stamped.format(word.decode())
        assert nccl.READER.claims is not None and smi.TEXT.claims is not None
        assert nccl.READER.claims(line) or smi.TEXT.claims(line)


@needs_build
@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(DATA)))
def test_every_test_file_reads_the_same(path: Path) -> None:
    data = path.read_bytes()
    assert_same(data)
    assert_same(data, chunk=61, seed=True)  # records cut across chunks: carried, read again


# --- generated kernel lines ------------------------------------------------------------

_STAMPS = (
    "[{boot}] ",
    "[{boot}][  T291] ",
    "[{boot}]",
    "[ {boot}]\x1c",
    "[123456789012.5] ",  # 12 digits: no stamp
    "[Mon Aug  5 03:54:13 2024] ",
    "[  +0.000844] ",
    "[Aug 5 03:54] ",
    "4,{seq},{us},-;",
    "6,{seq},{us},-,caller=T1;",
    "2024-08-05T03:54:{ss}+0000 gpu-7 kernel: ",
    "2024-08-05T03:54:{ss}.{frac}+02:00 gpu-7 kernel: [ {boot}] ",
    "2024-08-05 03:54:{ss},{frac}Z ",
    "2024-08-05T03:54:{ss} gpu-8 kernel[12]: ",
    "2024-02-31T03:54:{ss} gpu-7 kernel: ",
    "0000-01-01T00:00:00Z host kernel: ",
    "9999-12-31T23:59:59.9-01:00 host kernel: ",
    "kern  :err   : 2025-01-25T10:34:{ss},{frac}+00:00 ",
    "kern  :err   : no stamp ",
    "Aug  5 03:54:{ss} gpu-7 kernel: ",
    "Aug  5 03:54:{ss} gpu-7 kernel: [ {boot}] ",
    "Dec 31 23:59:{ss}.{frac} gpu-9 kernel: ",
    "Mai 12 03:54:{ss} knoten-1 kernel: ",
    "Foo 12 03:54:{ss} gpu-7 kernel: ",
    "déc. 12 03:54:{ss} gpu-7 kernel: ",
    "GPU 12 03:54:{ss} gpu-7 kernel: ",
    "10.1.2.3: kern: warning: [2026-04-22T21:25:20.45Z]: ",
    "alerts: ",
    "",
)
_BODIES = (
    "NVRM: Xid (PCI:0000:{bus}:00): {code}, pid={pid}, name={name}, {text}",
    "NVRM: Xid (0000:{bus}:00.{fn}): {code}, {text}",
    "NVRM: Xid (PCI:{domain}:{bus}:00 GPU-I:05 GPU-CI:1): {code}, pid='<unknown>', name=<unknown>, {text}",
    "NVRM: Xid (PCI:0000:{bus}:00): 119, pid={pid}, name={name}, Timeout after 6s of waiting for RPC response from GPU{gpu} GSP! Expected function 76",
    "NVRM: Xid (PCI:0000:{bus}:00): 99999999999999999999, pid=1, name=x, {text}",
    "NVRM: Xid (PCI:0000:{bus}:00): 79, pid=99999999999999999999, name=x, {text}",
    "NVRM: Xid (PCI:0000:{bus}:00): 79x, {text}",
    "NVRM: Xid (PCI:0000:{bus}:00): {code},pid='{pid}',{text}",
    "NVRM: Xid (PCI:0000:{bus}:00): {code}, pid={pid}, name=no comma after",
    "NVRM: Xid (PCI:0000:{bus}:00):{code}",
    "NVRM: Xid (PCI:zz) NVRM: Xid (PCI:0000:{bus}:00): {code}, {text}",
    "NVRM: _kgspLogXid119: ********** GSP Timeout **********",
    "NVRM: GPU at PCI:0000:{bus}:00: GPU-{uuid}\n{serial_line}",
    "NVRM: GPU at 0000:{bus}:00.{fn}: GPU-{uuid}",
    "NVRM: GPU Board Serial Number: {serial}",
    "NVRM: GPU 0000:{bus}:00.{fn}: GPU has fallen off the bus.",
    "NVRM: GPU {domain}:{bus}:00: GPU has fallen off the bus",
    "NVRM: The NVIDIA GPU 0000:{bus}:00.0\nNVRM: installed in this system has\nNVRM: fallen off the bus",
    "NVRM: GPU6 _kgspIsHeartbeatTimedOut: Heartbeat timed out",
    "nvidia-nvswitch{gpu}: SXid (PCI:0000:{bus}:00.0): {code}, {severity}, Link 30 LTSSM Fault Up",
    "nvidia-nvswitch: SXid (0000:{bus}:00.0): {code} {text}",
    "pcieport 0000:00:03.1: AER: Corrected error received: 0000:{bus}:00.0",
    "nvidia 0000:{bus}:00.0: PCIe Bus Error: severity=Corrected, type=Physical Layer, (Receiver ID)\nnvidia 0000:{bus}:00.0:   device [10de:2330] error status/mask=00000001/0000e000",
    "NCCL WARN NVRM: Xid (PCI:0000:{bus}:00): {code}, {text}",
    "kubelet: Evicted pod AER {text}",
    "NVSMI LOG NVRM: GPU 0000:{bus}:00.0: GPU has fallen off the bus.",
    "Linux version 5.15.0 NVRM",
    "AER: {text}",
    "{text}",
)
_SPACES = st.sampled_from([" ", " ", " ", "  ", "\t", " \t ", "\x0b", "\x1c", "   "])
_TEXT = st.lists(
    st.sampled_from([*"abcXYZ019 ,:'()-._\t\r\x1cé=<>", "fatal", "Non-Fatal", "GSP", "from GPU"]),
    max_size=20,
).map("".join)


_AER_SEVERITIES = (
    "Corrected", "Correctable", "corrected ", "Uncorrected (Non-Fatal)",
    "Uncorrectable (Fatal)", "Uncorrected (Fatal)", "NonFatal", "Warning", "Corrected, x",
)  # fmt: skip
# What follows an AER record's first line in the kernel's own words, and what does not
# belong to it; {dev} is the record's device, {other} another one.
_AER_FOLLOWING = (
    "{driver} {dev}:   device [10de:2330] error status/mask={status}/0000e000",
    "{driver} {dev}: AER:   device [1022:1483] error status/mask={status}/04400000",
    "{driver} {dev}:   device [10DE:20B2] error status/mask={status}/00400000",
    "{driver} {dev}:    [{bit}] {bit_name}{first}",
    "{driver} {dev}: AER:    [{bit}] {bit_name}{first}",
    "{driver} {dev}: AER:   TLP Header: 40000001 0000000f 9c004000 00000000",
    "{driver} {dev}:   TLP Header: 40000001",
    " SUBSYSTEM=pci",
    " DEVICE=+pci:{dev}",
    "\tSUBSYSTEM=pci",
    "  SUBSYSTEM=pci",
    "{driver} {other}:    [{bit}] {bit_name}{first}",
    "{driver} {other}:   device [10de:2330] error status/mask={status}/0000e000",
    "pcieport 0000:00:03.1: AER: Corrected error received: {dev}",
    "{driver} {dev}: [{bit}] {bit_name}",
    "{driver} {DEV}:    [{bit}] {bit_name}{first}",
    "{driver} 1{dev}:    [{bit}] {bit_name}{first}",
    "x {other}: y {driver} {dev}:    [{bit}] {bit_name}",
    "{text}",
)


# past 15 digits or 22 places, a stamp is not one exact division: CPython converts it
_BOOTS = (
    "5.000001", "1843.308145", "0.0", "99999999999.9", "123456789.123456",
    "1363349908.00806360", "12345678901.123456789", "0.00000000000000000000001",
)  # fmt: skip


@st.composite
def _line(draw: st.DrawFn) -> str:
    stamp = draw(st.sampled_from(_STAMPS))
    body = draw(st.sampled_from(_BODIES))
    fields = {
        "boot": draw(st.sampled_from(_BOOTS)),
        "seq": draw(st.integers(0, 99)),
        "us": draw(st.sampled_from(["5678901", "0", "12345678901234567", "123456789012345678"])),
        "ss": draw(st.sampled_from(["13", "59", "00"])),
        "frac": draw(st.sampled_from(["1", "859532", "123456789", "1234567891"])),
        "bus": draw(st.sampled_from(["07", "0f", "47", "4E", "b7"])),
        "fn": draw(st.sampled_from(["0", "1", "7", "8"])),
        "domain": draw(st.sampled_from(["0000", "00000000", "10003", "000"])),
        "code": draw(st.sampled_from(["79", "13", "0", "119", "00031", "9223372036854775807"])),
        "pid": draw(st.sampled_from(["1234", "<unknown>", "", "00", "12a"])),
        "name": draw(st.sampled_from(["python", "", "<unknown>", "pt main", "x'y"])),
        "gpu": draw(st.sampled_from(["0", "7", "99999999999"])),
        "uuid": draw(st.sampled_from(["5fc0bcec-8a5a", "a_b-c", ""])),
        "serial": draw(st.sampled_from(["1320321057807", "S/N:1", ""])),
        "severity": draw(st.sampled_from(["Fatal", "Non-fatal", "NonFatal", "fatal2", "nonfatal"])),
        "text": draw(_TEXT),
    }
    fields["serial_line"] = draw(
        st.sampled_from(["NVRM: GPU Board Serial Number: {serial}", "[ 1.0] other", ""])
    ).format(**fields)
    text = (stamp + body).format(**fields)
    # the same words with other whitespace between them
    parts = text.split(" ")
    return "".join(p + (draw(_SPACES) if i < len(parts) - 1 else "") for i, p in enumerate(parts))


@needs_build
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_line(), min_size=1, max_size=25),
    st.sampled_from(["\n", "\r\n"]),
    st.booleans(),
    st.one_of(st.none(), st.integers(1, 300)),
    st.booleans(),
)
def test_generated_kernel_lines_read_the_same(
    lines: list[str], newline: str, last_newline: bool, chunk: int | None, seed: bool
) -> None:
    data = newline.join(lines) + (newline if last_newline else "")
    assert_same(data.encode(), chunk=chunk, seed=seed)


_NEAR_MISSES_OF = (
    "[ 5.1] NVRM: Xid (PCI:0000:07:00): 79, pid=12, name=python, GPU has fallen off the bus.",
    "[ 5.2] nvidia-nvswitch3: SXid (PCI:0000:47:00.0): 12028, Non-fatal, Link 30 LTSSM Fault Up",
    "[ 5.3] NVRM: GPU at PCI:0000:0f:00: GPU-5fc0bcec-8a5a",
    "[ 5.4] NVRM: GPU 0000:4e:1F.0: GPU has fallen off the bus.",
    "[ 5.5] nvidia 0000:b7:00.0: PCIe Bus Error: severity=Corrected, type=Physical Layer",
)


@needs_build
def test_every_one_character_near_miss_reads_the_same() -> None:
    """Each record above with one character gone, or changed, wherever it is: the
    compiled loop's word search and field reads meet every near miss of its words
    (the last letter of "GPU has fallen off the bus", the "(" after "Xid") and
    decide as the regular expressions do."""
    lines = []
    for record in _NEAR_MISSES_OF:
        stamp = record.index("]") + 2  # the stamp stays: the records are told apart
        for at in range(stamp, len(record)):
            for instead in ("", "x", "("):
                lines.append(record[:at] + instead + record[at + 1 :])
    assert_same("\n".join(lines).encode() + b"\n")


@needs_build
def test_every_boot_stamp_is_the_double_python_reads() -> None:
    """Each stamp of ``_BOOTS`` on an Xid record: the same time, bit for bit, whether
    the loop divides it itself or asks CPython."""
    record = "[{}] NVRM: Xid (PCI:0000:07:00): 79, pid=1, GPU has fallen off the bus."
    assert_same("\n".join(record.format(boot) for boot in _BOOTS).encode() + b"\n")


@needs_build
@pytest.mark.parametrize("filler", [b"\n", b"[ 1.0] sixteen\n", b"x" * 31 + b"\n"])
def test_line_numbers_after_long_runs_of_short_lines(filler: bytes) -> None:
    """Lines counted sixteen bytes a step stay counted where one byte of every step is
    a newline for thousands of steps (each lane's count is summed before it wraps)."""
    record = b"[ 2.0] NVRM: Xid (PCI:0000:07:00): 79, pid=1, name=x, off the bus\n"
    for count in (255 * 16, 4096, 10_000):
        assert_same(filler * count + record)
        assert_same(record + filler * count + record)


_AER_STAMPS = ("[ {boot}] ", "Aug  5 03:54:{ss} gpu-7 kernel: [ {boot}] ", "3,{seq},{us},-;")


@st.composite
def _aer_record(draw: st.DrawFn) -> str:
    """An AER record in the kernel's own spacing (which the generator above shuffles):
    its first line, then lines that belong to it or end it."""
    fields: dict[str, str] = {
        "boot": draw(st.sampled_from(["6123.456801", "0.055556"])),
        "ss": draw(st.sampled_from(["13", "59"])),
        "seq": str(draw(st.integers(0, 99))),
        "us": draw(st.sampled_from(["5678901", "0"])),
        "driver": draw(st.sampled_from(["nvidia", "pcieport", "vfio-pci", "a.b-c_d", "x y"])),
        "bus": draw(st.sampled_from(["07", "3b", "B7"])),
        # the kernel's spellings, and now and then one the pattern refuses
        "aer": draw(st.sampled_from(["", "AER: ", "", "AER: ", "AER:  "])),
        "severity": draw(st.sampled_from(_AER_SEVERITIES)),
        "type": draw(
            st.sampled_from(
                ["Physical Layer, (Receiver ID)", " Data Link Layer ", "x", "Transaction Layer", ""]
            )
        ),
    }
    fields["dev"] = draw(
        st.sampled_from(
            [
                "0000:{bus}:00.0",
                "10003:{bus}:00.1",
                "0000:{bus}:00.0",
                "0000:{bus}:00.2",
                "0000:{bus}:00.8",
            ]
        )
    )
    fields["dev"] = fields["dev"].format(**fields)
    fields["DEV"] = fields["dev"].upper()
    fields["other"] = draw(st.sampled_from(["0000:c1:00.0", "0000:{bus}:00.1"])).format(**fields)
    stamp = draw(st.sampled_from(_AER_STAMPS))
    lines = [
        draw(st.sampled_from(["", "pcieport 0000:00:03.1: AER: Corrected error received: {dev}"])),
        "{driver} {dev}: {aer}PCIe Bus Error: severity={severity}, type={type}",
    ]
    lines = [line.format(**fields) for line in lines]
    for _ in range(draw(st.integers(0, 7))):
        lines.append(draw(st.sampled_from(_AER_FOLLOWING)))
        fields["text"] = draw(_TEXT)
        fields["status"] = draw(st.sampled_from(["00000001", "00001040", "0", "100000001"]))
        # bits both registers name, mostly; one that neither does (the Python path's)
        fields["bit"] = draw(st.sampled_from([" 0", "12", "13", "14", "15", "00", "014", "99"]))
        fields["bit_name"] = draw(st.sampled_from(["RxErr", "BadTLP", "Unknown Bit", ""]))
        fields["first"] = draw(st.sampled_from(["", "                  (First)", " (First) "]))
        lines[-1] = lines[-1].format(**fields)
    # /dev/kmsg's dictionary lines (" SUBSYSTEM=pci") follow a record without a stamp
    stamp = stamp.format(**fields)
    return "\n".join(line if line[0] in " \t" else stamp + line for line in lines if line)


@needs_build
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.one_of(_aer_record(), _line()), min_size=1, max_size=12),
    st.one_of(st.none(), st.integers(1, 400)),
    st.booleans(),
    st.booleans(),
)
def test_generated_aer_records_read_the_same(
    records: list[str], chunk: int | None, last_newline: bool, seed: bool
) -> None:
    """``seed``: GPUs known before (0000:07:00.0 on node n: its AER records are filled
    in with its UUID, serial and index)."""
    data = "\n".join(records) + ("\n" if last_newline else "")
    assert_same(data.encode(), chunk=chunk, seed=seed)


@needs_build
def test_the_loop_reads_the_kernels_aer_records_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """The records of a real-format AER log (a bit line, a status line, a TLP header,
    5-digit domains, a port's own record) are read in C: the Python reader is never
    asked, and the events are its."""
    asked = texts_read_by(monkeypatch, kmsg, "_read_aer")
    data = (DATA / "kernel" / "aer.dmesg").read_bytes()
    compiled = read(data, pure=False)
    assert asked == []
    python = read(data, pure=True)
    assert len(asked) == 6  # the Python path reads each record
    assert sum(len(b) for b in compiled["batches"]) == 6
    same_batches(python.pop("batches"), compiled.pop("batches"))
    assert python == compiled


@needs_build
def test_full_batches_are_sealed_at_the_same_rows() -> None:
    # 2,500 records, every 7th one left to the Python path: batches of 1024 either way
    lines = []
    for i in range(2500):
        bus = f"{i % 256:02x}"
        if i % 7 == 3:
            lines.append(
                f"[{i}.5] NVRM: GPU 0000:{bus}:00.0: RmInitAdapter failed! (0x25:0x65:1457)"
            )
        else:
            lines.append(f"[{i}.5] NVRM: Xid (PCI:0000:{bus}:00): {i}, pid={i}, name=p{i % 9}, x")
    assert_same("\n".join(lines).encode(), seed=True)
    assert_same("\n".join(lines).encode(), chunk=4096)


# --- the allocation counter sees what the extension allocates --------------------------


def _alloccount() -> Any:
    return pytest.importorskip("alloccount", reason="bench/alloccount is built by make install")


@needs_build
def test_the_allocation_counter_counts_the_extensions_own_blocks() -> None:
    alloccount = _alloccount()
    from fleetwatch.sources._kmsgscan import _allocate as allocate

    n = 1000
    allocate(n)
    alloccount.start()
    allocate(n)
    assert alloccount.stop() == n


def test_the_extension_allocates_through_pymem_only() -> None:
    # libc's allocator is invisible to the counter: the extension calls none of it, and
    # its own blocks come from fw_alloc/fw_calloc (PyMem), the one place PyMem is called
    source = (Path(kmsg_compiled.__file__).parent / "_kmsgscan.c").read_text()
    libc = r"(?<!\w)(?:malloc|calloc|realloc|free|strdup|strndup|asprintf|mmap|aligned_alloc)\s*\("
    assert re.findall(libc, source) == []
    wrappers = [
        line for line in source.splitlines() if line.startswith("static void") and "fw_" in line
    ]
    assert len(wrappers) == 3 and all("PyMem_" in line for line in wrappers)
    assert source.count("PyMem_") == 3 and "PyMem_Raw" not in source


@needs_build
def test_parsing_more_records_counts_more_allocations() -> None:
    alloccount = _alloccount()

    def allocations(n: int) -> int:
        # every record a new detail: a new string for the batch (its str and the slot the
        # extension keeps for it)
        data = "".join(
            f"[{i}.5] NVRM: Xid (PCI:0000:07:00): 13, pid=1, name=p, detail {i}\n" for i in range(n)
        ).encode()
        ctx = FileContext("f", "n", ReadOptions(), ReadStats(), Identities(), BatchBuilder(), 0.0)
        with pure_python(False):
            stream = LineStream(ctx)
        stream.feed(b"[1.0] NVRM: Xid (PCI:0000:07:00): 13, pid=1, name=p, x\n", eof=True)
        alloccount.start()
        stream.feed(data, eof=True)
        counted = int(alloccount.stop())
        assert ctx.stats.events == n + 1
        return counted

    small, large = allocations(200), allocations(400)
    assert large - small >= 2 * 200


# --- built without a compiler -----------------------------------------------------------


@pytest.mark.slow
def test_a_wheel_built_without_a_compiler_reads_with_the_python_path(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    tree = tmp_path / "tree"
    skip = shutil.ignore_patterns("*.so", "__pycache__", "*.egg-info")
    shutil.copytree(root / "src", tree / "src", ignore=skip)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(root / name, tree / name)
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    built = subprocess.run(
        [*pip, str(tree), "-w", str(tmp_path / "wheel")],
        env={**os.environ, "CC": "/bin/false"},  # a compiler that always fails
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    with zipfile.ZipFile(next((tmp_path / "wheel").glob("*.whl"))) as wheel:
        names = wheel.namelist()
        wheel.extractall(tmp_path / "unpacked")
    assert "fleetwatch/sources/kmsg_compiled.py" in names
    assert [n for n in names if n.endswith((".so", ".pyd", ".c"))] == []
    log = DATA / "kernel" / "xid-shapes.dmesg"
    check = (
        "from fleetwatch.sources import kmsg_compiled, read_paths\n"
        f"assert kmsg_compiled.__file__.startswith({str(tmp_path / 'unpacked')!r})\n"
        "assert not kmsg_compiled.built() and not kmsg_compiled.available()\n"
        f"print(sum(len(b) for b in read_paths([{str(log)!r}])))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", check],
        env={**os.environ, "PYTHONPATH": str(tmp_path / "unpacked")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert int(ran.stdout) == len(read(log.read_bytes(), pure=True)["batches"][0]) > 0

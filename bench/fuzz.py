"""A fuzzer for the readers: a million mutated records per reader through ``parse``.

Every reader is fed records cut from the real captures and real-format lines in
``tests/data``, mutated the ways the field breaks them: bit flips, truncation, numbers
past any column (2^31, 2^63, 2^64, 10^30, -2^63-1, 10^400, 5000 digits, ``²``), JSON
and XML nested 1,000 to 100,000 deep, values of the wrong JSON type, lone surrogates,
NUL bytes, invalid UTF-8, a line of another format spliced in, lines duplicated or
removed, CR line ends, and lines past the line-size limit.

Records are read the way ``fleetwatch parse`` reads a file (``files.read_input``: the
same head sniffing, document readers and line stream), from memory and many records
per buffer, so the fuzzer runs at reader speed. Every other buffer of a line format
goes through the live path instead: ``LineStream.feed`` in pieces, as a follower
hands it what was appended, then ``FileContext.take()``.

A crash is any of:

* ``escaped``: an exception that leaves the read or the seal of the batch;
* ``net``: a record lost to the generic net, ``ReadStats.failed`` (the stream's or the
  document path's ``except Exception``), or a value ``BatchBuilder.add`` refused as
  ``unknown field or value``: the reader did not know its record was bad, so the
  reason counted is not the reader's;
* ``unwritable``: a string in a batch that cannot be written as UTF-8 (a lone
  surrogate), which ``parse --output jsonl`` and the store would fail on; a time no
  clock can show (past year 9999), on which ``replay --output table`` failed;
* ``reason``: a reason counted (unreadable or skipped) that is made of the input: past
  60 characters or not printable ASCII. Reasons are a reader's fixed words, so a
  count of them stays a short table whatever the input holds.

Usage: ``python -m bench.fuzz [--records 1000000] [--seed 1] [--jobs 2]
[--readers kmsg,dcgm] [--save crash.bin]``. Exit 1 on any crash; the first crashing
input of each class is printed (repr, truncated) with the seed, buffer and record
that reproduce it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import random
import re
import signal
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Final

import numpy as np
from defusedxml import ElementTree as SafeXml

from fleetwatch.events import BadRecord, BatchBuilder, EventBatch
from fleetwatch.sources import kmsg
from fleetwatch.sources.context import FileContext, Identities, ReadOptions, ReadStats
from fleetwatch.sources.files import read_input, read_paths
from fleetwatch.sources.stream import LineStream
from fleetwatch.timestamps import parse_zone

ROOT: Final = Path(__file__).resolve().parent.parent
DATA: Final = ROOT / "tests" / "data"
SECONDS_BASE: Final = 10.0  # a read past this (and SECONDS_PER_MB) is too slow: see ``read``
SECONDS_PER_MB: Final = 2.0
EARLIEST: Final = datetime(1, 1, 1, tzinfo=UTC).timestamp()  # what datetime can show
LATEST: Final = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
REASON: Final = re.compile(r"[ -~]{1,60}")  # a reason is a reader's words, not the input's
REFERENCE_TIME: Final = 1_780_000_000.0  # the files' "modification time": fixed, for repeatability
# The first line of every stream buffer: plain kernel noise, so a buffer is always
# read as a log (a buffer that opened with "[" could be sniffed as a JSON document).
LEAD: Final = b"Jun  4 10:00:00 gpu-node-1 kernel: [    1.000000] Linux version 6.5.0 (fuzz)\n"


# --- the seed corpus ---------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One reader to fuzz: its seed records and how a buffer of them is read."""

    name: str
    reader: str  # the registry's name of the reader its records are for
    seeds: tuple[bytes, ...]
    shape: str  # "stream": records joined into one log; "document": one input each
    json: bool = False  # seeds are JSON: mutate their structure too
    xml: bool = False
    header: tuple[bytes, ...] = ()  # a CSV's headers: documents are a header and rows


def _lines(path: Path) -> list[bytes]:
    return [line + b"\n" for line in path.read_bytes().splitlines() if line.strip()]


def _windows(lines: list[bytes], keep: Callable[[bytes], bool], most: int = 4) -> list[bytes]:
    """Each kept line, and it with up to ``most - 1`` lines after it (multi-line records)."""
    out: list[bytes] = []
    for i, line in enumerate(lines):
        if keep(line):
            out.extend(b"".join(lines[i : i + n]) for n in range(1, most + 1))
    return out


def _fixtures(family: str, *, skip: tuple[str, ...] = ()) -> list[Path]:
    """Every capture of a fixture folder, whatever its extension (not its README)."""
    return [
        path
        for path in sorted((DATA / family).iterdir())
        if path.is_file() and path.name != "README.md" and path.name not in skip
    ]


def _kernel_seeds() -> list[bytes]:
    """Every kernel capture's lines the kernel reader looks at, and the lines after them."""
    words = re.compile(b"|".join(kmsg.READER.keywords))  # what the prefilter hands kmsg
    seeds: list[bytes] = []
    for path in [
        *_fixtures("kernel", skip=("journal.json",)),  # journal.json: the journal's
        DATA / "h100" / "dmesg-T-xid31-app-fault.txt",
        DATA / "h100" / "dmesg-xid31-app-fault.txt",
        DATA / "real" / "a100-node-healthy-dmesg.txt",
    ]:
        seeds += _windows(_lines(path), lambda line: words.search(line) is not None)
    return seeds


def _smi_text_seeds() -> list[bytes]:
    """Reports cut small: the banner, the top keys, one GPU and a few of its sections."""
    seeds: list[bytes] = []
    for path in (
        DATA / "h100" / "nvidia-smi-q.txt",
        DATA / "h100" / "nvidia-smi-q-after-fault.txt",
        DATA / "real" / "a100-nvidia-smi-q.txt",
        *(p for p in _fixtures("smi") if p.suffix == ".txt"),
    ):
        lines = path.read_bytes().splitlines(keepends=True)
        gpus = [i for i, line in enumerate(lines) if line.startswith(b"GPU 0")]
        top = lines[: gpus[0]]
        for g, start in enumerate(gpus):
            end = gpus[g + 1] if g + 1 < len(gpus) else len(lines)
            body = lines[start + 1 : end]
            cuts = [i for i, line in enumerate(body) if line[:4] == b"    " and line[4:5] != b" "]
            sections = [
                b"".join(body[a:b]) for a, b in zip(cuts, [*cuts[1:], len(body)], strict=True)
            ]
            for first in range(0, len(sections), 3):
                chosen = sections[first : first + 6]
                seeds.append(b"".join([*top, lines[start], *chosen, b"\n"]))
    return seeds


def _smi_xml_seeds() -> list[bytes]:
    """Each real report whole, and documents of one GPU with a few of its elements each."""
    seeds: list[bytes] = []
    for path in (DATA / "h100" / "nvidia-smi-q.xml", *_fixtures("smi")):
        if path.suffix != ".xml":
            continue
        raw = path.read_bytes()
        seeds.append(raw)
        root = SafeXml.fromstring(raw)
        gpu = root.find("gpu")
        assert gpu is not None
        children = list(gpu)
        tops = [c for c in root if c.tag != "gpu"]
        for first in range(0, len(children), 2):
            doc = ET.Element(root.tag)
            doc.extend(tops)
            part = ET.SubElement(doc, "gpu", gpu.attrib)
            part.extend(children[first : first + 5])
            ET.indent(doc)
            seeds.append(b'<?xml version="1.0" ?>\n' + ET.tostring(doc) + b"\n")
    return seeds


def _csv_parts() -> tuple[list[bytes], list[bytes]]:
    headers: list[bytes] = []
    rows: list[bytes] = []
    for path in (DATA / "h100" / "query.csv", DATA / "smi" / "query-loop.csv"):
        lines = _lines(path)
        headers.append(lines[0])
        rows += lines[1:]
    return headers, rows


def _k8s_objects() -> list[dict[str, Any]]:
    listed = json.loads((DATA / "k8s" / "events-list.json").read_bytes())
    objects: list[dict[str, Any]] = list(listed["items"])
    for line in _lines(DATA / "k8s" / "watch.jsonl"):
        with contextlib.suppress(ValueError):  # the capture's last line is cut short
            objects.append(json.loads(line)["object"])
    return objects


def _k8s_line_seeds() -> list[bytes]:
    seeds = _lines(DATA / "k8s" / "watch.jsonl")
    objects = _k8s_objects()
    seeds += [json.dumps(obj).encode() + b"\n" for obj in objects]
    seeds.append(json.dumps({"kind": "List", "items": objects[:4]}).encode() + b"\n")
    return seeds


def _k8s_document_seeds() -> list[bytes]:
    objects = _k8s_objects()
    seeds = [(DATA / "k8s" / "events-list.json").read_bytes()]
    for first in range(0, len(objects), 2):
        items = objects[first : first + 3]
        seeds.append(
            json.dumps({"apiVersion": "v1", "items": items, "kind": "List"}, indent=4).encode()
        )
        seeds.append(json.dumps(items[0], indent=2).encode())
    return seeds


def _k8s_text_seeds() -> list[bytes]:
    seeds: list[bytes] = []
    for name in ("get-events.txt", "kubelet.syslog"):
        seeds += _lines(DATA / "k8s" / name)
    for path in _fixtures("k8s"):
        if path.name.startswith("describe-"):  # every describe node/pod(s) paste
            seeds.append(path.read_bytes())
            seeds += _windows(_lines(path), lambda line: True, most=3)
    return seeds


def _prometheus_seeds() -> list[bytes]:
    """Each real answer as captured, and answers cut to a few series and samples each.

    The cut answers are written both ways an answer comes: on one line (``curl``) and
    indented (``jq``, the docs), so both the one-line sniff and the document path are hit.
    """
    seeds: list[bytes] = []
    for path in _fixtures("prometheus"):
        raw = path.read_bytes()
        seeds.append(raw)
        answer = json.loads(raw)
        data = answer.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("result"), list):
            continue
        for series in data["result"]:
            cut: dict[str, Any] = dict(series)
            if isinstance(cut.get("values"), list):
                cut["values"] = cut["values"][:3]
            one = {**answer, "data": {**data, "result": [cut]}}
            seeds.append(json.dumps(one, separators=(",", ":")).encode() + b"\n")
            seeds.append(json.dumps(one, indent=2).encode() + b"\n")
    return seeds


def _nvlink_seeds() -> list[bytes]:
    """Each real ``nvlink -e`` paste whole, each GPU's block, and its lines a few at a time."""
    seeds: list[bytes] = []
    for path in _fixtures("nvlink"):
        seeds.append(path.read_bytes())
        lines = path.read_bytes().splitlines(keepends=True)
        starts = [i for i, line in enumerate(lines) if line.startswith(b"GPU ")]
        for start in starts:
            end = next((i for i in starts if i > start), len(lines))
            seeds.append(b"".join(lines[start:end]))
        seeds += _windows([line for line in lines if line.strip()], lambda line: True)
    return seeds


def _nccl_seeds() -> list[bytes]:
    return _lines(DATA / "nccl" / "job-4-ranks.log") + _lines(
        DATA / "h100" / "nccl-watchdog-timeout.log"
    )


_ENVELOPE: Final = re.compile(rb"^.*?(?=NVRM|nvidia-nvswitch|\S+ \S+: (?:AER: )?PCIe|\{\d+\}\[)")


def _journal_seeds(kernel: list[bytes]) -> list[bytes]:
    """The real journal lines, and kernel records as journalctl -o json writes them."""
    seeds = _lines(DATA / "kernel" / "journal.json")
    for i, record in enumerate(kernel[:: max(1, len(kernel) // 400)]):
        for n, raw in enumerate(record.splitlines()):
            message = _ENVELOPE.sub(b"", raw).decode("utf-8", "replace")
            entry: dict[str, Any] = {
                "__REALTIME_TIMESTAMP": str(1_722_830_053_123_456 + i * 1000 + n),
                "_TRANSPORT": "kernel",
                "_HOSTNAME": f"gpu-node-{i % 8}",
                "MESSAGE": message if n % 2 == 0 else list(message.encode()),
            }
            seeds.append(json.dumps(entry).encode() + b"\n")
    return seeds


def _event_seeds() -> list[bytes]:
    """fleetwatch's own events (``parse --output jsonl``) of every capture in tests/data."""
    options = ReadOptions(zone=parse_zone("UTC"), year=2024)
    seeds: list[bytes] = []
    kinds: Counter[str] = Counter()
    for batch in read_paths([str(DATA)], options, ReadStats()):
        for record in batch.records():
            record["file"] = str(Path(record["file"]).relative_to(ROOT))  # the same anywhere
            kinds[record["kind"]] += 1
            if kinds[record["kind"]] <= 40:
                seeds.append(json.dumps(record, ensure_ascii=False).encode() + b"\n")
    return seeds


@cache
def targets() -> dict[str, Target]:
    """Every reader to fuzz, with its seeds (built once per process)."""
    kernel = _kernel_seeds()
    headers, rows = _csv_parts()
    found = [
        Target("kmsg", "kmsg", tuple(kernel), "stream"),
        Target("dcgm", "dcgm", tuple(_lines(DATA / "dcgm" / "scrape.prom")), "stream"),
        Target("smi-text", "smi_text", tuple(_smi_text_seeds()), "stream"),
        Target("smi-xml", "smi_xml", tuple(_smi_xml_seeds()), "document", xml=True),
        Target("smi-csv", "smi_csv", tuple(rows), "document", header=tuple(headers)),
        Target("smi-nvlink", "smi_nvlink", tuple(_nvlink_seeds()), "stream"),
        Target("k8s-json", "json_line", tuple(_k8s_line_seeds()), "stream", json=True),
        Target("k8s-doc", "k8s_json", tuple(_k8s_document_seeds()), "document", json=True),
        Target("k8s-text", "k8s_text", tuple(_k8s_text_seeds()), "stream"),
        Target("nccl", "nccl", tuple(_nccl_seeds()), "stream"),
        Target("prometheus", "prometheus_api", tuple(_prometheus_seeds()), "document", json=True),
        Target("journal", "json_line", tuple(_journal_seeds(kernel)), "stream", json=True),
        Target("jsonl", "json_line", tuple(_event_seeds()), "stream", json=True),
    ]
    return {t.name: t for t in found}


@cache
def _donors() -> tuple[bytes, ...]:
    """Single lines of every format, to splice into another's records."""
    lines: list[bytes] = []
    for target in targets().values():
        for seed in target.seeds[:300]:
            lines += [line + b"\n" for line in seed.splitlines()[:3] if line.strip()]
    return tuple(lines)


# --- mutations -----------------------------------------------------------------------

_HUGE: Final = (
    b"2147483648",
    b"4294967296",
    b"9223372036854775807",
    b"9223372036854775808",
    b"18446744073709551616",
    b"1" + b"0" * 30,
    b"-9223372036854775809",
    b"9" * 400,
    b"9" * 5000,  # past Python's int() digit limit
    b"1e999",
    b"-1",
    b"0",
    "²".encode(),  # str.isdigit() says yes, int() says no
    "٧٩".encode(),  # Arabic-Indic 79: \d matches it
    b"0x7fffffffffffffff",
)
_JSON_VALUES: Final[tuple[Any, ...]] = (
    None,
    True,
    -1,
    2**31,
    2**63,
    2**64,
    -(2**63) - 1,
    10**30,
    10**400,
    1.5,
    float("inf"),
    float("nan"),
    -1e308,
    "",
    "\ud800",
    "x\x00y",
    "²",
    "99999999999999999999999",
    [],
    {},
    [1, "a", None],
    {"kind": [], "name": {}},
)
_INVALID_UTF8: Final = (b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf")
_DIGITS: Final = re.compile(rb"\d+")
_DEEP_MARK: Final = "@@deep@@"


def _deep(rng: random.Random, json_like: bool) -> bytes:
    # mostly about the readers' limit (512) and the parser's (~1000); now and then far past
    roll = rng.random()
    if roll < 0.9:
        depth = rng.choice((513, 999, 1000, 1001, 2000))
    else:
        depth = 5000 if roll < 0.99 else 100_000
    if json_like and rng.random() < 0.5:
        return b'{"a":' * depth + b"1" + b"}" * depth
    if json_like:
        return b"[" * depth + b"]" * depth
    return b"<a>" * depth + b"x" + b"</a>" * depth


def _json_path_mutation(rng: random.Random, data: bytes) -> bytes | None:
    """Replace, drop or rename one value somewhere in a JSON record."""
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return None
    node: Any = obj
    for _ in range(rng.randrange(6)):
        children = list(node.values()) if isinstance(node, dict) else node
        if not isinstance(node, dict | list) or not children:
            break
        child = rng.choice(children)
        if not isinstance(child, dict | list):
            break
        node = child
    deep = rng.random() < 0.03  # a value nested past the parser's limit, spliced in below
    value = _DEEP_MARK if deep else rng.choice(_JSON_VALUES)
    if isinstance(node, dict) and node:
        key = rng.choice(list(node))
        roll = rng.random()
        if roll < 0.75:
            node[key] = value
        elif roll < 0.9:
            del node[key]
        else:
            node[key + rng.choice(("x", "", " "))] = node.pop(key)
    elif isinstance(node, list) and node:
        node[rng.randrange(len(node))] = value
    else:
        return None
    indent = 2 if data.count(b"\n") > 1 else None
    try:
        text = json.dumps(obj, ensure_ascii=rng.random() < 0.5, indent=indent)
    except (ValueError, RecursionError):
        return None
    out = text.encode("utf-8", "surrogatepass") + (b"" if indent else b"\n")
    return out.replace(b'"' + _DEEP_MARK.encode() + b'"', _deep(rng, True)) if deep else out


def _line_range(rng: random.Random, data: bytes) -> tuple[int, int]:
    """A random line of ``data``: its start and its end (after the newline)."""
    at = rng.randrange(len(data))
    start = data.rfind(b"\n", 0, at) + 1
    end = data.find(b"\n", at)
    return start, len(data) if end < 0 else end + 1


def mutate(rng: random.Random, data: bytes, target: Target) -> bytes:
    """``data`` changed one to three times, the ways logs and captures break."""
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        if not data:
            data = rng.choice(target.seeds)
        roll = rng.random()
        at = rng.randrange(len(data) + 1)
        if target.json and roll < 0.25:
            data = _json_path_mutation(rng, data) or data
        elif roll < 0.40:  # bit flips
            out = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(len(out))
                out[i] ^= 1 << rng.randrange(8)
            data = bytes(out)
        elif roll < 0.60:  # a number past any column
            runs = list(_DIGITS.finditer(data))
            if runs:
                run = rng.choice(runs)
                data = data[: run.start()] + rng.choice(_HUGE) + data[run.end() :]
        elif roll < 0.67:  # truncated: the head, or the tail, of the record
            data = data[:at] if rng.random() < 0.8 else data[at:]
        elif roll < 0.68:
            data = data[:at] + _deep(rng, not target.xml and rng.random() < 0.8) + data[at:]
        elif roll < 0.74:
            data = data[:at] + b"\x00" * rng.choice((1, 1, 4, 64)) + data[at:]
        elif roll < 0.78:
            data = data[:at] + rng.choice(_INVALID_UTF8) + data[at:]
        elif roll < 0.86:  # another format's line: before, after, or inside a line
            donor = rng.choice(_donors())
            if rng.random() < 0.5:
                start, _ = _line_range(rng, data) if data else (0, 0)
                data = data[:start] + donor + data[start:]
            else:
                data = data[:at] + donor.rstrip(b"\n") + data[at:]
        elif roll < 0.92:  # a line duplicated or removed
            start, end = _line_range(rng, data)
            line = data[start:end]
            data = data[:start] + (line * 2 if rng.random() < 0.5 else b"") + data[end:]
        elif roll < 0.94:
            data = data.replace(b"\n", rng.choice((b"\r\n", b"\r")))
        elif roll < 0.9405:  # a very long line: some past the line-size limit (1 MiB)
            size = rng.choice((70_000, 70_000, 300_000, 1_100_000))
            piece = data[at : at + 80].replace(b"\n", b" ") or b"x"
            data = data[:at] + piece * (size // len(piece)) + data[at:]
        elif roll < 0.97:
            data = data[:at] + rng.randbytes(rng.randint(1, 16)) + data[at:]
        elif target.xml:  # entities and character references an XML parser must refuse
            extra = rng.choice(
                (
                    b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>',
                    b"&#0;",
                    b"&b;",
                    b"<![CDATA[",
                    b'<gpu id="00000000:00:06.0">',
                )
            )
            data = data[:at] + extra + data[at:]
        else:
            data = data[: max(0, at - 16)] + data[at:]  # a few bytes deleted
    return data


# --- reading, and what counts as a crash -----------------------------------------------


class FuzzStats(ReadStats):
    """Read statistics that also note each record lost to the generic net, by class."""

    def __init__(self) -> None:
        super().__init__()
        self.net: Counter[str] = Counter()

    def failed(self, reader: str, error: Exception) -> None:
        self.net[crash_class(error)] += 1
        super().failed(reader, error)


class FuzzBuilder(BatchBuilder):
    """A batch builder that notes which reader handed it a value of the wrong type."""

    def __init__(self, stats: FuzzStats) -> None:
        super().__init__()
        self._stats = stats

    def add(self, fields: dict[str, Any]) -> None:
        try:
            super().add(fields)
        except BadRecord as exc:
            if exc.reason != "out of range":
                site = _caller(traceback.extract_stack(limit=4)[:-1])
                self._stats.net[f"BadRecord {exc.reason} at {site}"] += 1
            raise


def _caller(frames: traceback.StackSummary | list[traceback.FrameSummary]) -> str:
    """The innermost frame in fleetwatch's own code, as ``module.py:line function``."""
    for frame in reversed(frames):
        if "/fleetwatch/" in frame.filename and not frame.filename.endswith("context.py"):
            return f"{Path(frame.filename).name}:{frame.lineno} {frame.name}"
    return "?"


def crash_class(error: BaseException) -> str:
    """An exception's type and the reader line that raised it: one crash class."""
    return f"{type(error).__name__} at {_caller(traceback.extract_tb(error.__traceback__))}"


@dataclass
class Outcome:
    """What reading one buffer did."""

    events: int = 0
    unreadable: Counter[tuple[str, str]] = field(default_factory=Counter)
    net: Counter[str] = field(default_factory=Counter)
    escaped: Counter[str] = field(default_factory=Counter)
    unwritable: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)

    def crashes(self) -> Counter[str]:
        return Counter(
            {f"net: {k}": v for k, v in self.net.items()}
            | {f"escaped: {k}": v for k, v in self.escaped.items()}
            | {f"unwritable: {k}": v for k, v in self.unwritable.items()}
            | {f"reason: {k}": v for k, v in self.reasons.items()}
        )


def _check(batch: EventBatch, outcome: Outcome) -> None:
    ts = batch.columns["ts"]
    unshowable = int(np.count_nonzero((ts < EARLIEST) | (ts > LATEST)))  # NaN: neither
    if unshowable:
        outcome.unwritable["a time no clock shows (past year 9999 or before year 1)"] += unshowable
    for text in batch.strings:
        if not isinstance(text, str):
            outcome.unwritable[f"{type(text).__name__} in the string table"] += 1
            continue
        try:
            text.encode()
        except UnicodeEncodeError:
            outcome.unwritable["a string that is not UTF-8 (lone surrogate)"] += 1


class TooSlow(Exception):
    """Raised into a read that runs past its time: a record no reader reads in linear time."""


def _too_slow(signum: int, frame: Any) -> None:
    raise TooSlow


def read(inputs: list[bytes], live: bool) -> Outcome:
    """Read each of ``inputs`` as one file and check what comes out.

    As ``read_paths`` reads files: one builder for all, each input's batches taken as
    they fill, the last one sealed at the end; ``live``: as a follower reads a file,
    ``LineStream.feed`` piece by piece, every batch taken (sealed) after each piece.
    Each input has ``SECONDS_BASE`` and ``SECONDS_PER_MB`` per MiB to be read; past
    that, ``TooSlow`` is raised where the reader is, and names the slow line.
    """
    outcome = Outcome()
    stats = FuzzStats()
    builder = FuzzBuilder(stats)
    identities = Identities()
    options = ReadOptions(zone=parse_zone("UTC"))
    previous = signal.signal(signal.SIGALRM, _too_slow)
    try:
        for data in inputs:
            budget = SECONDS_BASE + SECONDS_PER_MB * len(data) / (1 << 20)
            signal.setitimer(signal.ITIMER_REAL, budget)
            ctx = FileContext(
                "fuzz.log", "fuzz-node", options, stats, identities, builder, REFERENCE_TIME
            )
            try:
                _read_input(ctx, data, live, outcome)
            except Exception as exc:
                outcome.escaped[crash_class(exc)] += 1
                builder = FuzzBuilder(stats)  # a failed seal may leave the builder half-full
            signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            _check(builder.seal(), outcome)
        except Exception as exc:
            outcome.escaped[crash_class(exc)] += 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    outcome.events = stats.events
    outcome.unreadable = stats.unreadable
    for (reader, reason), n in (stats.unreadable + stats.skipped).items():
        if not REASON.fullmatch(reason):
            outcome.reasons[f"a reason made of the input, counted by {reader}"] += n
    outcome.net = stats.net
    return outcome


def _read_input(ctx: FileContext, data: bytes, live: bool, outcome: Outcome) -> None:
    if not live:
        for _ in read_input(io.BufferedReader(io.BytesIO(data)), ctx):
            for batch in ctx.ready:
                _check(batch, outcome)
            ctx.ready.clear()
        for batch in ctx.ready:
            _check(batch, outcome)
        ctx.ready.clear()
        return
    stream = LineStream(ctx)
    step = 1 << (len(data) % 7 + 12)  # 4 KiB to 256 KiB pieces
    for pos in range(0, len(data), step):
        stream.feed(data[pos : pos + step])
        for batch in ctx.take():
            _check(batch, outcome)
    stream.feed(b"", eof=True)
    for batch in ctx.take():
        _check(batch, outcome)


# --- buffers ---------------------------------------------------------------------------


@dataclass
class Buffer:
    """One read's worth of mutated records, and where each record went."""

    inputs: list[bytes]
    records: list[tuple[int, bytes]]  # (input index, the record's bytes)
    live: bool


def make_buffer(target: Target, seed: int, index: int, count: int) -> Buffer:
    """Buffer ``index`` of ``target``: ``count`` records, the same for the same seed."""
    rng = random.Random(f"{seed}:{target.name}:{index}")
    records: list[tuple[int, bytes]] = []
    inputs: list[bytes] = []
    if target.shape == "stream":
        parts = [LEAD]
        while len(records) < count:
            record = rng.choice(target.seeds)
            if rng.random() < 0.9:
                record = mutate(rng, record, target)
            if not record.endswith(b"\n"):
                record += b"\n"
            records.append((0, record))
            parts.append(record)
        return Buffer([b"".join(parts)], records, live=index % 2 == 1)
    if target.header:  # a CSV: a header, mutated one time in ten, and its rows
        while len(records) < count:
            rows = [rng.choice(target.seeds) for _ in range(rng.randint(1, 200))]
            rows = [mutate(rng, row, target) if rng.random() < 0.9 else row for row in rows]
            header = rng.choice(target.header)
            if rng.random() < 0.1:
                header = mutate(rng, header, target)
            rows = rows[: count - len(records)]
            records += [(len(inputs), row) for row in rows]
            inputs.append(header + b"".join(r if r.endswith(b"\n") else r + b"\n" for r in rows))
        return Buffer(inputs, records, live=False)
    while len(records) < count:
        doc = rng.choice(target.seeds)
        if rng.random() < 0.9:
            doc = mutate(rng, doc, target)
        records.append((len(inputs), doc))
        inputs.append(doc)
    return Buffer(inputs, records, live=False)


def _records_per_buffer(target: Target) -> int:
    if target.shape == "document":
        return 500
    return 2_000 if target.name == "smi-text" else 10_000  # a report is ~50 lines


def reproduce(target: Target, buffer: Buffer, crash: str) -> tuple[bytes, str]:
    """The record of ``buffer`` that alone shows ``crash``, or the shortest run of them."""
    for where, record in buffer.records:
        if target.shape == "stream":
            alone = [LEAD + record]
        elif target.header:
            alone = [buffer.inputs[where]]
        else:
            alone = [record]
        if crash in read(alone, buffer.live).crashes():
            return alone[0], "alone"
    if target.shape == "stream":  # needs its neighbours: the shortest prefix that shows it
        low, high = 1, len(buffer.records)
        while low < high:
            mid = (low + high) // 2
            data = LEAD + b"".join(r for _, r in buffer.records[:mid])
            if crash in read([data], buffer.live).crashes():
                high = mid
            else:
                low = mid + 1
        data = LEAD + b"".join(r for _, r in buffer.records[:low])
        return data, f"after the {low - 1} records before it"
    return b"", "not reproduced alone"


@dataclass
class Report:
    """One reader's totals."""

    reader: str
    records: int = 0
    events: int = 0
    unreadable: Counter[tuple[str, str]] = field(default_factory=Counter)
    crashes: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    first: bytes = b""
    seconds: float = 0.0

    def merge(self, other: Report) -> None:
        self.records += other.records
        self.events += other.events
        self.unreadable += other.unreadable
        self.crashes += other.crashes
        for crash, example in other.examples.items():
            self.examples.setdefault(crash, example)
        self.first = self.first or other.first
        self.seconds += other.seconds


def fuzz_range(name: str, seed: int, first: int, last: int, records: int) -> Report:
    """Buffers ``first``..``last - 1`` of reader ``name``: at most ``records`` in all."""
    target = targets()[name]
    report = Report(name)
    per_buffer = _records_per_buffer(target)
    for index in range(first, last):
        want = min(per_buffer, records - index * per_buffer)
        if want <= 0:
            break
        started = time.perf_counter()
        buffer = make_buffer(target, seed, index, want)
        outcome = read(buffer.inputs, buffer.live)
        report.seconds += time.perf_counter() - started
        report.records += len(buffer.records)
        report.events += outcome.events
        report.unreadable += outcome.unreadable
        crashes = outcome.crashes()
        report.crashes += crashes
        for crash in crashes:
            if crash not in report.examples:
                data, how = reproduce(target, buffer, crash)
                mode = "live" if buffer.live else "file"
                report.examples[crash] = (
                    f"--seed {seed} reader {name} buffer {index} ({mode}), {how}: "
                    f"{data[:400]!r}{'…' if len(data) > 400 else ''}"
                )
                report.first = report.first or data
    return report


def _task(args: tuple[str, int, int, int, int]) -> Report:
    return fuzz_range(*args)


def run(records: int, seed: int, jobs: int, readers: list[str] | None = None) -> dict[str, Report]:
    """Fuzz each reader with ``records`` mutated records; the reports, by reader."""
    names = readers or list(targets())
    tasks: list[tuple[str, int, int, int, int]] = []
    for name in names:
        per_buffer = _records_per_buffer(targets()[name])
        buffers = -(-records // per_buffer)
        step = max(1, buffers // 8)  # a few tasks per reader: the cores stay busy to the end
        tasks += [(name, seed, b, min(b + step, buffers), records) for b in range(0, buffers, step)]
    tasks.sort(key=lambda t: t[0] in ("smi-xml", "k8s-doc", "smi-text"), reverse=True)
    reports = {name: Report(name) for name in names}
    if jobs > 1:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            for report in pool.imap_unordered(_task, tasks):
                reports[report.reader].merge(report)
    else:
        for task in tasks:
            report = _task(task)
            reports[report.reader].merge(report)
    return reports


def _print(reports: dict[str, Report], out: Any) -> None:
    head = ("reader", "records", "events", "unreadable", "crashes", "cpu s")
    print("{:<10} {:>10} {:>10} {:>11} {:>8} {:>7}".format(*head), file=out)
    for r in reports.values():
        print(
            f"{r.reader:<10} {r.records:>10,} {r.events:>10,} {sum(r.unreadable.values()):>11,} "
            f"{sum(r.crashes.values()):>8,} {r.seconds:>7.1f}",
            file=out,
        )
        reasons = ", ".join(
            f"{reader} {reason}: {n:,}" for (reader, reason), n in r.unreadable.most_common()
        )
        if reasons:
            print(f"  unreadable: {reasons}", file=out)
        for crash, n in r.crashes.most_common():
            print(f"  CRASH {crash}: {n:,} records", file=out)
            print(f"    first: {r.examples[crash]}", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="per reader")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=min(2, multiprocessing.cpu_count()))
    parser.add_argument("--readers", help=f"comma-separated, of: {', '.join(targets())}")
    parser.add_argument("--save", type=Path, help="write the first crashing input here")
    args = parser.parse_args(argv)
    readers = args.readers.split(",") if args.readers else None
    unknown = set(readers or ()) - set(targets())
    if unknown:
        parser.error(f"unknown reader(s): {', '.join(sorted(unknown))}")
    started = time.perf_counter()
    reports = run(args.records, args.seed, args.jobs, readers)
    wall = time.perf_counter() - started
    _print(reports, sys.stdout)
    crashes = sum(sum(r.crashes.values()) for r in reports.values())
    tried = sum(r.records for r in reports.values())
    print(f"{tried:,} records, {crashes:,} crashes, {wall:.1f} s wall with {args.jobs} process(es)")
    if crashes and args.save:
        first = next(r.first for r in reports.values() if r.crashes)
        args.save.write_bytes(first)
        print(f"first crashing input written to {args.save}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())

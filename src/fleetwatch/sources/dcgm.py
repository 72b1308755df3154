"""dcgm-exporter scrapes: Prometheus text, read with prometheus-client's own parser.

Each sample of a metric in ``catalog/dcgm_fields.toml`` becomes one event (source
``dcgm``) of that metric's kind and scope, for the GPU its labels name: ``gpu``
(NVML index), ``UUID``, ``pci_bus_id``, ``Hostname``/``hostname`` (the node), and the
workload on it, ``pod``, ``namespace``; MIG labels (``GPU_I_ID``) go to ``detail``.
``DCGM_FI_DEV_XID_ERRORS`` holds the last XID: its value is the code, 0 is none.

dcgm-exporter's windowed counter ``DCGM_EXP_CLOCK_EVENTS_COUNT`` (before 3.3.5
``DCGM_FI_EXP_CLOCK_THROTTLE_REASONS_COUNT``) is one series per reason: how many of the
last ``window_size_in_ms`` polls had the reason its ``clock_event`` (``throttle_reason``)
label names. A count above 0 is a ``clock_event`` sample with that reason's bit
(``catalog/clock_event_reasons.toml``, ``dcgm_label``), the count and window in
``detail``, so thermal_throttle judges it like any clocks-event sample. A count of 0
says the reason did not occur: no event (one zero sample per absent reason would
outnumber the reason that occurred, and thermal_throttle judges shares of samples).
A reason no catalog row names is counted "unknown clock event reason".

DCGM writes a "blank" sentinel for a field the GPU does not support (values from
0x7ffffff0 for 32-bit fields, 0x7ffffffffffffff0 for 64-bit, 2^47 for floats): that
is no value, never a count, and no event comes of it. Samples are parsed one line at
a time, so one bad line is one unreadable record, not a lost scrape. A sample whose
``gpu`` label no GPU index can be (2^31 and past) or whose time stamp no clock shows is
counted "out of range" and adds nothing: its labels are torn, so which GPU it speaks
for is not known, and nothing is learned from them (a wrong index learned for a PCI
address would be given to every later event of that GPU).

Speed: prometheus-client's parser costs ~40 µs a sample, almost all of it in the
label block, which repeats for every metric of a GPU in every scrape. Each distinct
``name{labels}`` head is read once and remembered (a bounded cache per file); a line
then costs the split of its value and time stamp. A block as dcgm-exporter writes it
(``name="value"`` pairs, no escapes, no spaces) is read by a regex that reads it as
the parser does (``_plain_labels``); any other block by that parser. Where the
compiled loop is built (``_kmsgscan.c``), a series whose sample was read here is told
to it (``_told``: the fields its samples add but line, time and value), and it reads
the next samples of that series straight into the batch's columns, in C, while what
they would learn and fill in is unchanged; any other line comes back here.
"""

from __future__ import annotations

import math
import re
from typing import Any, Final, NamedTuple

from fleetwatch.catalog import MetricRule, clock_event_reasons, dcgm_metrics
from fleetwatch.events import CLOCK_ID, KIND_ID, SCOPE_ID
from fleetwatch.pci import normalize_pci
from fleetwatch.sources.context import FileContext
from fleetwatch.sources.envelope import Envelope, showable
from fleetwatch.sources.numbers import INT32_MAX, INT64_MAX, INT64_MIN, OUT_OF_RANGE, whole
from fleetwatch.sources.reader import Reader

SOURCE: Final = "dcgm"
_INT32_BLANK: Final = 0x7FFFFFF0
_INT64_BLANK: Final = 0x7FFFFFFFFFFFFFF0
_FP64_BLANK: Final = 2.0**47
BLANK: Final = "blank value"  # why a sample is skipped (ReadStats.skipped)


def is_blank(value: float) -> bool:
    """True for DCGM's not-supported / not-found / no-permission sentinels."""
    return (
        _INT32_BLANK <= value <= _INT32_BLANK + 15
        or value >= float(_INT64_BLANK)
        or _FP64_BLANK <= value <= _FP64_BLANK + 15
    )


_HEADS: Final = "dcgm heads"  # ctx.memo key: this file's parsed heads
_MAX_HEADS: Final = 100_000
_MAX_HEAD_CHARS: Final = 4096  # a real head is a few hundred: a torn megabyte is not kept


class Labels(NamedTuple):
    """What a series' labels say of its GPU and workload: read once per series."""

    labels: dict[str, str]
    gpu: int | None
    gpu_out_of_range: bool  # a ``gpu`` label no index can be: the sample is torn
    node: str | None
    pci: str | None
    uuid: str | None
    pod: str | None
    namespace: str | None
    mig: str | None  # the MIG instance, for ``detail``


def read_labels(labels: dict[str, str]) -> Labels:
    """What ``labels`` say (dcgm-exporter's names, and Prometheus' ``exported_``)."""
    gpu_label = labels.get("gpu", "")
    gpu = None
    if gpu_label.isdecimal():  # "²" is a digit int() refuses
        gpu = whole(gpu_label, INT32_MAX)
    mig = None
    if "GPU_I_ID" in labels:
        mig = f"MIG instance {labels['GPU_I_ID']} {labels.get('GPU_I_PROFILE', '')}".strip()
    return Labels(
        labels,
        gpu,
        gpu is None and gpu_label.isdecimal(),
        labels.get("Hostname") or labels.get("hostname") or None,
        normalize_pci(labels.get("pci_bus_id", "")),
        labels.get("UUID") or labels.get("uuid") or None,
        labels.get("pod") or labels.get("exported_pod") or None,
        labels.get("namespace") or labels.get("exported_namespace") or None,
        mig,
    )


def _series(head: str, ctx: FileContext) -> tuple[str, Labels] | None:
    """``name{labels}`` -> (name, what its labels say), as ``_parsed`` reads it, once per
    file.

    Per file, not per process: a node's file repeats its few hundred heads every
    scrape, and a replay of ten thousand node files then holds one node's heads at a
    time, not the fleet's (memory that would grow with the input). Where a plain name
    is followed by its labels, the labels are read once for every metric that shares
    them (a GPU's dozens): the parser reads a label block alike whatever plain name is
    before it.
    """
    heads: dict[str, tuple[str, Labels] | None] | None = ctx.memo.get(_HEADS)
    if heads is None or len(heads) >= _MAX_HEADS:
        heads = ctx.memo[_HEADS] = {}
    if head in heads:
        return heads[head]
    found: tuple[str, Labels] | None
    plain = _PLAIN_NAME.match(head)
    if plain is None:
        found = _parsed(head)
    else:
        blocks: dict[str, Labels | None] | None = ctx.memo.get(_BLOCKS)
        if blocks is None or len(blocks) >= _MAX_HEADS:
            blocks = ctx.memo[_BLOCKS] = {}
        block = head[plain.end() :]
        if block in blocks:
            said = blocks[block]
        else:
            plain_labels = _plain_labels(block)
            if plain_labels is not None:
                said = read_labels(plain_labels)
            else:
                named = _parsed("x" + block)
                said = None if named is None else named[1]
            if len(block) <= _MAX_HEAD_CHARS:
                blocks[block] = said
        found = None if said is None else (plain[0], said)
    if len(head) <= _MAX_HEAD_CHARS:
        heads[head] = found
    return found


_BLOCKS: Final = "dcgm label blocks"  # ctx.memo key: what each label block says
# a name the parser takes as it is, with its labels right after it
_PLAIN_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*(?=\{)")


# A label block as dcgm-exporter writes it: name="value" pairs, comma-separated, with
# no escape, no space between and no reserved (``__``) name. The Prometheus parser reads
# such a block as these pairs say (test_dcgm holds the two equal), at ~80 µs a block:
# the first scrape of a fleet's every node file. Any other block is the parser's.
_LABEL: Final = r'(?!__)[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"'
_PLAIN_BLOCK: Final = re.compile(rf"\{{(?:{_LABEL}(?:,{_LABEL})*,?)?\}}")
_PAIR: Final = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\]*)"')


def _plain_labels(block: str) -> dict[str, str] | None:
    """``{name="value",...}`` as the parser reads it; None: not so plain, or a name twice
    (which the parser refuses)."""
    if _PLAIN_BLOCK.fullmatch(block) is None:
        return None
    pairs = _PAIR.findall(block)
    labels = dict(pairs)
    return labels if len(labels) == len(pairs) else None


def _parsed(head: str) -> tuple[str, Labels] | None:
    """``name{labels}`` -> (name, what its labels say), read by the Prometheus parser."""
    # imported at the first head, not with this module: prometheus_client brings
    # http.server and email with it, a third of the start-up of commands that read none
    from prometheus_client.parser import text_string_to_metric_families

    try:
        samples = [s for f in text_string_to_metric_families(head + " 0\n") for s in f.samples]
        if len(samples) == 1:
            return samples[0].name, read_labels(dict(samples[0].labels))
    except (ValueError, IndexError, KeyError, TypeError):
        pass
    return None


def read_line(text: str, env: Envelope, line: int, ctx: FileContext) -> None:
    """Read one exposition line (HELP and TYPE comments carry nothing we need)."""
    if text.startswith("#"):
        return
    end = text.rfind("}")
    if end >= 0:
        head, rest = text[: end + 1], text[end + 1 :]
    else:  # a sample without labels: name value [time stamp]
        head, _, rest = text.partition(" ")
    series = _series(head, ctx)
    fields = rest.split()
    if series is None or not 1 <= len(fields) <= 2:
        ctx.stats.bad(SOURCE, "malformed sample")
        return
    name, labels = series
    rule = dcgm_metrics().get(name)
    if rule is None:
        if len(head) <= _MAX_HEAD_CHARS:
            _told(ctx)[head] = None  # no event: the compiled loop may pass its samples by
        return
    try:
        value = float(fields[0])
    except ValueError:
        ctx.stats.bad(SOURCE, "malformed sample")
        return
    timestamp = None
    if len(fields) == 2:
        # every sample of one scrape has the same time stamp: read it once
        last_text, last = ctx.memo.get(_STAMP, _NO_STAMP)
        if fields[1] == last_text:
            timestamp = last
        else:
            timestamp = _stamp(fields[1], ctx)
            if timestamp is None:
                return
            ctx.memo[_STAMP] = (fields[1], timestamp)
    event = emit_sample(labels, rule, value, timestamp, env, line, ctx)
    if len(head) <= _MAX_HEAD_CHARS:
        told = _told(ctx)
        if event is not None:
            told[head] = _series_fields(event, env, ctx)
        elif head not in told:
            told[head] = True  # a metric with events: the loop counts its blank samples


_STAMP: Final = "dcgm stamp"  # ctx.memo key: the last time stamp's text and its time
_NO_STAMP: Final = ("", 0.0)


def _stamp(text: str, ctx: FileContext) -> float | None:
    """A sample's time stamp (milliseconds) in seconds; None: counted as unreadable."""
    try:
        stamp = int(text)
    except ValueError:
        # int() refuses a digit run past 4,300 digits: a number all the same, out of range
        ctx.stats.bad(SOURCE, OUT_OF_RANGE if text.lstrip("+-").isdecimal() else "malformed sample")
        return None
    # milliseconds past int64, or a time past what a clock shows (year 9999)
    timestamp = stamp / 1000 if INT64_MIN <= stamp <= INT64_MAX else None
    if timestamp is None or not showable(timestamp):
        ctx.stats.bad(SOURCE, OUT_OF_RANGE)
        return None
    return timestamp


def emit_sample(
    said: Labels,
    rule: MetricRule,
    value: float,
    timestamp: float | None,
    env: Envelope,
    line: int,
    ctx: FileContext,
) -> dict[str, Any] | None:
    """One sample of a dcgm-exporter series (what its labels say, its metric's rule) as
    its event. Returns the event's fields (as ``emit`` filled them in) where the
    series' next samples are alike but for line, time and value: a value added; or,
    without a value, an Xid series' or a per-reason count's sample, whose next samples
    of 0 or less add nothing but what this one learned. Else None.

    The exposition text and a Prometheus query answer (``prometheus_api``) both read
    their samples through here, so a sample means the same whichever way it came.
    """
    if is_blank(value):
        ctx.stats.skip(SOURCE, BLANK)
        return None
    if value != value:  # NaN: DCGM had nothing to report
        ctx.stats.skip(SOURCE, "NaN value")
        return None
    if value in (math.inf, -math.inf):  # no counter or gauge holds it; JSON cannot show it
        ctx.stats.bad(SOURCE, OUT_OF_RANGE)
        return None
    return _emit(said, rule, value, timestamp, env, line, ctx)


def _emit(
    said: Labels,
    rule: MetricRule,
    value: float,
    timestamp: Any,
    env: Envelope,
    line: int,
    ctx: FileContext,
) -> dict[str, Any] | None:
    if said.gpu_out_of_range:
        ctx.stats.bad(SOURCE, OUT_OF_RANGE)
        return None
    gpu, pci, uuid = said.gpu, said.pci, said.uuid
    node = said.node or env.host
    if pci is not None:
        ctx.identities.learn(node or ctx.node, pci, uuid=uuid, gpu=gpu)
    ts, clock = (float(timestamp), "wall") if timestamp is not None else (env.ts, env.clock)
    if ts is not None and not showable(ts):  # the time of a line before it, run past 9999
        ts, clock = None, "none"
    kind = rule.kind
    event: dict[str, Any] = {
        "kind": kind,
        "source": SOURCE,
        "line": line,
        "ts": ts,
        "clock": clock,
        "node": node,
        "pci": pci,
        "gpu": gpu,
        "uuid": uuid,
        "scope": rule.scope,
        "link": rule.nvlink,
        "pod": said.pod,
        "namespace": said.namespace,
    }
    if rule.counter is not None:  # which of its kind's counters: NVLink CRC flit or data
        event["detail"] = rule.counter
    if said.mig is not None:
        event["detail"] = said.mig
    if rule.reason_label is not None:
        if _windowed_reason(said.labels, rule.reason_label, value, event, ctx):
            ctx.emit(event)
        elif value <= 0 and said.labels.get(rule.reason_label, "") in _REASON_BITS:
            return event  # a reason that did not occur: no event, and no value
        return None
    if kind == "xid":
        if value > 0:  # else no XID since the exporter started
            event["code"] = int(value)
            ctx.emit(event)
        return event  # no value: only its zeros are alike
    event["value"] = value
    return event if ctx.emit(event) else None


_TOLD: Final = "dcgm told"  # ctx.memo key: what the compiled loop is told, by head


def _told(ctx: FileContext) -> dict[str, tuple[Any, ...] | bool | None]:
    """What the compiled loop is told of this file's series (bounded as the heads are):
    the fields its samples add (``_series_fields``), None (a metric without events) or
    True (a metric with events, whose blank samples it counts)."""
    told: dict[str, tuple[Any, ...] | bool | None] | None = ctx.memo.get(_TOLD)
    if told is None or len(told) >= _MAX_HEADS:
        told = ctx.memo[_TOLD] = {}
    return told


def _series_fields(event: dict[str, Any], env: Envelope, ctx: FileContext) -> tuple[Any, ...]:
    """What a sample's event (as ``emit`` left it: filled in) says that every sample of
    its series will say, while what is known of its GPU stands (that identity and its
    ``version``; None: no PCI address, nothing asked) and the envelope's host is this
    one. The strings in the order ``BatchBuilder.add`` met them, so that the string
    tables are the same; last, whether only its samples of 0 or less are alike (an
    event without a value: ``emit_sample``)."""
    get = event.get
    scope = get("scope")
    pci = get("pci")
    known = None if pci is None else ctx.identities.lookup(get("node") or ctx.node, pci)
    return (
        known,
        -1 if known is None else known.version,
        env.host,
        KIND_ID[event["kind"]],
        -1 if scope is None else SCOPE_ID[scope],
        -1 if get("link") is None else get("link"),
        -1 if get("gpu") is None else get("gpu"),
        get("node"),
        get("pci"),
        get("uuid"),
        get("pod"),
        get("namespace"),
        get("detail"),
        get("serial"),
        get("file"),
        "value" not in event,
    )


def _read_run(
    compiled: Any,
    buf: bytes,
    pos: int,
    limit: int,
    line: int,
    max_line: int,
    env: Envelope,
    ctx: FileContext,
) -> tuple[int, int, int] | None:
    """The compiled loop over the sample lines from ``pos``, for the series told to it."""
    told = ctx.memo.get(_TOLD)
    if not told:
        return None
    ts = math.nan if env.ts is None else env.ts
    found: tuple[int, int, int] | None = compiled.samples(
        buf, pos, limit, line, max_line, told, ts, CLOCK_ID[env.clock], env.host
    )
    return found


def _windowed_reason(
    labels: dict[str, str], label: str, count: float, event: dict[str, Any], ctx: FileContext
) -> bool:
    """A per-reason count in a window as a clocks-event sample; False: no event."""
    name = labels.get(label, "")
    bit = _REASON_BITS.get(name)
    if bit is None:
        ctx.stats.bad(SOURCE, "unknown clock event reason")
        return False
    if count <= 0:
        return False  # the reason did not occur in the window
    window = labels.get("window_size_in_ms", "")
    seconds = f" in {int(window) / 1000:g} s" if window.isdecimal() and len(window) < 16 else ""
    event["value"] = float(bit)
    event["detail"] = f"{name} seen {count:g} time(s){seconds}"
    return True


_REASON_BITS: Final = {r.dcgm_label: r.bit for r in clock_event_reasons() if r.dcgm_label}
_LINE_STARTS: Final = (
    "DCGM_FI_",
    "# HELP DCGM_FI_",
    "# TYPE DCGM_FI_",
    "DCGM_EXP_CLOCK_EVENTS_COUNT",
)


def _claims(text: str) -> bool:
    return text.startswith(_LINE_STARTS)


def _read(text: str, env: Envelope, line: int, _cursor: object, ctx: FileContext) -> None:
    read_line(text, env, line, ctx)


READER: Final = Reader(
    name="dcgm",
    source=SOURCE,
    kinds=frozenset(rule.kind for rule in dcgm_metrics().values()),
    description="dcgm-exporter's Prometheus text: DCGM_FI_* samples, clock event counts",
    keywords=(rb"DCGM_FI_", rb"DCGM_EXP_CLOCK_EVENTS_COUNT"),
    claims=_claims,
    read_line=_read,
    line_starts=_LINE_STARTS,
    read_run=_read_run,
)

"""NCCL and PyTorch ProcessGroupNCCL logs: who is which rank, and who timed out.

Records and events (source ``nccl``), found anywhere in the line, so a launcher's
prefix (``3: ``, ``[default3]:``) or glog's ``[rank0]:[E1126 …]`` does not hide them:

* ``host:pid:tid [dev] NCCL INFO … rank 24 nranks 32 cudaDev 0 nvmlDev 0 busId 7000 …
  - Init COMPLETE`` (NCCL 2.28 writes ``ncclCommInitRankConfig comm … rank 0 nranks 1
  …``) -> ``nccl_init``: rank, world size in ``value``, node, GPU (NVML numbering,
  never ``cudaDev``) and PCI address (``busId 7000`` -> ``0000:07:00.0``).
* ``Watchdog caught collective operation timeout: WorkNCCL(SeqNum=4, OpType=ALLREDUCE,
  …, Timeout(ms)=3000) ran for 3059 milliseconds`` and ``… timed out in blocking wait``
  (also inside "watchdog thread terminated with exception") -> ``nccl_timeout``: rank,
  seq, op, the timeout in ms as ``value``.
* ``last enqueued NCCL work: N, last completed NCCL work: M`` (older PyTorch) and
  ``failure detected by watchdog at work sequence id: 4 PG status: last enqueued work:
  4, last completed work: 3`` (PyTorch 2.11) -> ``nccl_progress``.
* ``NCCL WARN …`` (NET/IB completion errors with peer, status, vendor err, HCA), NCCL
  errors such as "unhandled system error", the heartbeat monitor and ``[F…]`` fatal
  records -> ``nccl_error`` with the message in ``detail``.

The rank comes from ``[rank7]:``, ``[Rank 7]`` or the process group tag ``[PG … Rank
7]``. PyTorch lines name no host: they take the host of that rank's ``Init COMPLETE``
line in the same file (the largest communicator's), else of the last NCCL line.

A record whose rank, world size, pid, NVML index, sequence number or work counter no
column holds (a digit run past int64; an NVML index past int32) is counted "out of
range" and adds nothing, and nothing is learned from it. Every pattern here runs in
time linear in the line, so a megabyte line of repeated record costs what it weighs.
"""

from __future__ import annotations

import re
from typing import Any, Final

from fleetwatch.pci import pci_from_nccl_bus_id
from fleetwatch.sources.context import FileContext
from fleetwatch.sources.cursor import Cursor
from fleetwatch.sources.envelope import Envelope
from fleetwatch.sources.numbers import INT32_MAX, INT64_MAX, OUT_OF_RANGE, whole
from fleetwatch.sources.reader import Reader

SOURCE: Final = "nccl"
# The host starts where a run of name characters starts: tried inside every run, the
# pattern is quadratic on a long one.
_PREFIX: Final = re.compile(
    r"(?<![\w.-])(?P<host>[\w.-]+):(?P<pid>\d+):\d+ \[\d+\] NCCL (?P<level>[A-Z]+)"
)
# "- Init COMPLETE" after it is looked for in code: ".*- Init COMPLETE" rescans the line
# from every "rank N nranks" in it.
_INIT: Final = re.compile(
    r"\brank (?P<rank>\d+) nranks (?P<nranks>\d+) cudaDev \d+(?: nvmlDev (?P<nvml>\d+))?"
    r" busId (?P<bus>[0-9a-fA-F]+)\b"
)
_INIT_COMPLETE: Final = "- Init COMPLETE"
_WORK: Final = re.compile(
    r"WorkNCCL\(SeqNum=(?P<seq>\d+), OpType=(?P<op>\w+)[^)(]*?Timeout\(ms\)=(?P<timeout>\d+)\)"
)
_PROGRESS_NEW: Final = re.compile(
    r"work sequence id: (?P<seq>\d+) PG status: last enqueued work: (?P<enq>\d+), "
    r"last completed work: (?P<done>-?\d+)"
)
_PROGRESS_OLD: Final = re.compile(
    r"(?:(?:Timeout at NCCL work|detected by watchdog at work): (?P<seq>\d+), )?"
    r"[Ll]ast enqueued NCCL work: (?P<enq>-?\d+), "
    r"last completed NCCL work: (?P<done>-?\d+)"
)
_RANK: Final = re.compile(r"\b[Rr]ank ?(?P<rank>\d+)\]")
_ERROR: Final = re.compile(
    r"(?:NCCL WARN |NCCL error:? |Heartbeat monitor timed out|ncclSystemError|"
    r"ncclUnhandledCudaError|ncclInternalError|ncclRemoteError|unhandled system error)"
)
_FATAL: Final = re.compile(r"\[F\d{3,4} [^\]]{0,200}?ProcessGroupNCCL[^\]]{0,200}\]\s*(?P<msg>.*)")
# A paste wrapped at the terminal's width breaks a watchdog record after "timeout:" or
# "detected"; its second line starts so.
_WRAPPED: Final = ("WorkNCCL(", "by watchdog at work")
_WRAP_POINTS: Final = ("timeout:", "timeout: ", "detected", "detected ")
_PG_TAG: Final = re.compile(r"^(?:\s*\[[^\]]*\])+\s*")
_SPACES: Final = re.compile(r"\s+")


def _memo(ctx: FileContext) -> dict[str, Any]:
    memo: dict[str, Any] | None = ctx.memo.get(SOURCE)
    if memo is None:  # not setdefault: it would build the default on every line
        memo = ctx.memo[SOURCE] = {"rank_host": {}, "host": None}
    return memo


def _base(
    kind: str, env: Envelope, line: int, rank: int | None, ctx: FileContext
) -> dict[str, Any]:
    memo = _memo(ctx)
    host = env.host
    if host is None and rank is not None and rank in memo["rank_host"]:
        host = memo["rank_host"][rank][0]
    if host is None:
        host = memo["host"]
    # NCCL and PyTorch name no job: the folder of the logs stands for it (files.expand)
    return env._replace(host=host).event(kind, SOURCE, line, rank=rank, job=ctx.job)


def _short(text: str, limit: int = 200) -> str:
    return _SPACES.sub(" ", text).strip()[:limit]


class _OutOfRange(Exception):
    """A number of the record that no column holds."""


def _int(digits: str, most: int = INT64_MAX) -> int:
    value = whole(digits, most)
    if value is None:
        raise _OutOfRange
    return value


def _rank(digits: str | None) -> int | None:
    return None if digits is None else _int(digits)


def read(text: str, env: Envelope, line: int, cursor: Cursor, ctx: FileContext) -> None:
    """Read the NCCL or ProcessGroupNCCL record in ``text``, if it is one."""
    if text.endswith(_WRAP_POINTS):
        (after,) = cursor.peek(1) or ("",)
        if after.lstrip().startswith(_WRAPPED):
            cursor.skip(1)
            text = f"{text.rstrip()} {after.strip()}"
    try:
        _read(text, env, line, ctx)
    except _OutOfRange:
        ctx.stats.bad(SOURCE, OUT_OF_RANGE)


def _read(text: str, env: Envelope, line: int, ctx: FileContext) -> None:
    memo = _memo(ctx)
    prefix = _PREFIX.search(text)
    if prefix is not None:
        memo["host"] = prefix["host"]
    # most NCCL lines are INFO chatter (rings, channels, transports): each record below
    # needs one of these words, so a line with none is read no further (by index: an
    # iterator, or any()'s generator, would be an allocation per line)
    at = 0
    while at < len(RECORD_WORDS):
        if RECORD_WORDS[at] in text:
            _record(text, env, prefix, line, memo, ctx)
            return
        at += 1


# Init COMPLETE, WorkNCCL(…), "last enqueued" (both progress forms), a [F… fatal
# record, and each of _ERROR's alternatives
RECORD_WORDS: Final = (
    "Init COMPLETE",
    "WorkNCCL(",
    "enqueued",
    "[F",
    "NCCL WARN ",
    "NCCL error",
    "Heartbeat monitor timed out",
    "ncclSystemError",
    "ncclUnhandledCudaError",
    "ncclInternalError",
    "ncclRemoteError",
    "unhandled system error",
)


def _record(
    text: str,
    env: Envelope,
    prefix: re.Match[str] | None,
    line: int,
    memo: dict[str, Any],
    ctx: FileContext,
) -> None:
    """The record in ``text`` (``prefix``: its NCCL prefix, if it has one), if any."""
    if prefix is not None:
        env = env._replace(host=env.host or prefix["host"])
    rank_match = _RANK.search(text)
    rank_digits = rank_match["rank"] if rank_match else None

    if prefix is not None and "Init COMPLETE" in text:
        m = _INIT.search(text)
        if m is None or text.find(_INIT_COMPLETE, m.end()) < 0:
            ctx.stats.bad(SOURCE, "malformed init")
            return
        rank, nranks, pid = _int(m["rank"]), _int(m["nranks"]), _int(prefix["pid"])
        nvml = m["nvml"]
        gpu = None if nvml is None else _int(nvml, INT32_MAX)
        known = memo["rank_host"].get(rank)
        if known is None or nranks >= known[1]:
            memo["rank_host"][rank] = (prefix["host"], nranks)
        pci = pci_from_nccl_bus_id(m["bus"])
        if pci is not None:
            ctx.identities.learn(prefix["host"], pci, gpu=gpu)
        event = _base("nccl_init", env, line, rank, ctx)
        event.update(value=float(nranks), gpu=gpu, pci=pci, pid=pid)
        ctx.emit(event)
    elif (m := _WORK.search(text)) and ("timeout" in text or "timed out" in text):
        seq = _int(m["seq"])
        event = _base("nccl_timeout", env, line, _rank(rank_digits), ctx)
        what = "timed out in blocking wait" if "blocking wait" in text else "watchdog timeout"
        if "terminated with exception" in text:
            what = "watchdog thread terminated"
        event.update(seq=seq, op=m["op"], value=float(m["timeout"]), detail=what)
        ctx.emit(event)
    elif m := _PROGRESS_NEW.search(text) or _PROGRESS_OLD.search(text):
        enq_digits, done_digits, seq_digits = m["enq"], m["done"], m["seq"]
        # -1: none yet, which a column holds as absent
        enqueued = None if enq_digits.startswith("-") else _int(enq_digits)
        done = None if done_digits.startswith("-") else _int(done_digits)
        failed_at = None if seq_digits is None else _int(seq_digits)
        event = _base("nccl_progress", env, line, _rank(rank_digits), ctx)
        event.update(seq=failed_at, last_enqueued=enqueued, last_completed=done)
        ctx.emit(event)
    elif m := _FATAL.search(text):
        event = _base("nccl_error", env, line, _rank(rank_digits), ctx)
        event["detail"] = _short(_PG_TAG.sub("", m["msg"])) or "fatal"
        ctx.emit(event)
    elif m := _ERROR.search(text):
        event = _base("nccl_error", env, line, _rank(rank_digits), ctx)
        start = m.start() + (len("NCCL WARN ") if m[0] == "NCCL WARN " else 0)
        event["detail"] = _short(text[start:])
        ctx.emit(event)


def _claims(text: str) -> bool:
    return "NCCL" in text


READER: Final = Reader(
    name="nccl",
    source=SOURCE,
    kinds=frozenset({"nccl_init", "nccl_timeout", "nccl_progress", "nccl_error"}),
    description="NCCL INFO/WARN lines and PyTorch ProcessGroupNCCL watchdog logs",
    keywords=(rb"NCCL",),
    claims=_claims,
    read_line=read,
)

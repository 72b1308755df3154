"""One test per class of crash the fuzzer (``bench/fuzz.py``) found, fixed in its reader.

Each record here once raised inside its reader, or reached a batch in a form no output
can write, or took time quadratic in its length. Now the reader that knows the record
counts it with its own reason (``json too deep``, ``kmsg out of range``, …), its
neighbours are read, and nothing reaches the stream's generic net: no reason counted
under ``stream`` or ``file``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fleetwatch.events import BatchBuilder
from fleetwatch.sources import json_line
from fleetwatch.sources.context import FileContext, Identities, ReadOptions, ReadStats
from fleetwatch.sources.stream import LineStream
from tests.conftest import Parsed, parse_text

XID = (
    "Jun  4 10:29:43 gpu-node-17 kernel: [ 1843.308145] NVRM: Xid (PCI:0000:3b:00): 79, "
    "pid=2761, name=python, GPU has fallen off the bus.\n"
)
BIG = [str(2**63), str(2**64), str(10**30), "9" * 5000]  # 5000: past int()'s digit limit
N = 1_000_000  # just under the line limit: quadratic patterns took minutes to hours here


def _journal(message: Any, **fields: Any) -> str:
    entry = {"__REALTIME_TIMESTAMP": "1722830053123456", "_HOSTNAME": "gpu-node-7"}
    entry.update(fields)
    entry["MESSAGE"] = message
    return json.dumps(entry) + "\n"


def _around(tmp_path: Path, record: str, name: str = "gpu-node-1.log") -> Parsed:
    """``record`` between two Xid lines; both Xids must be read, whatever it is."""
    found = parse_text(tmp_path, XID + record + XID, name=name)
    last = 2 + record.count("\n")
    xids = [e["line"] for e in found if e["kind"] == "xid" and e["source"] == "kmsg"]
    assert xids[0] == 1 and xids[-1] == last, xids
    assert not {reader for reader, _ in found.stats.unreadable} & {"stream", "file"}
    return found


@contextmanager
def _within(seconds: float) -> Iterator[None]:
    """Fail when the body runs longer than ``seconds`` (instead of running for hours)."""

    def _late(signum: int, frame: Any) -> None:
        raise TimeoutError(f"took longer than {seconds} s: quadratic in the line?")

    previous = signal.signal(signal.SIGALRM, _late)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _in_linear_time(tmp_path: Path, line: str) -> None:
    started = time.perf_counter()
    with _within(10.0):
        _around(tmp_path, line + "\n")
    assert time.perf_counter() - started < 10.0


# --- kernel log (kmsg) ----------------------------------------------------------------


@pytest.mark.parametrize("big", BIG)
@pytest.mark.parametrize(
    "record",
    [
        "kernel: NVRM: Xid (PCI:0000:3b:00): {n}, pid=1, name=x, Graphics Exception\n",
        "kernel: NVRM: Xid (PCI:0000:3b:00): 79, pid={n}, name=x, GPU has fallen off the bus\n",
        "kernel: nvidia-nvswitch3: SXid (PCI:0000:05:00.0): {n}, Fatal, Link 44 fatal error\n",
    ],
)
def test_a_kernel_number_past_int64_is_counted_out_of_range(
    tmp_path: Path, record: str, big: str
) -> None:
    found = _around(tmp_path, record.format(n=big))
    assert len(found) == 2
    assert found.stats.unreadable == {("kmsg", "out of range"): 1}


def test_a_pid_of_digits_int_refuses_is_no_pid(tmp_path: Path) -> None:
    found = _around(tmp_path, "kernel: NVRM: Xid (PCI:0000:3b:00): 13, pid=\u00b2, name=x, E\n")
    assert [(e["code"], e.get("pid")) for e in found] == [(79, 2761), (13, None), (79, 2761)]


def test_an_aer_bit_past_any_register_keeps_its_name(tmp_path: Path) -> None:
    report = (
        "pcieport 0000:3b:00.0: AER: PCIe Bus Error: severity=Corrected, type=Physical Layer, "
        "(Receiver ID)\n"
        f"pcieport 0000:3b:00.0:    [{'9' * 5000}] RxErr                  (First)\n"
    )
    found = _around(tmp_path, report)
    assert [e["detail"] for e in found.of("aer")] == ["Physical Layer: RxErr (First)"]


def test_an_aer_bit_line_with_a_long_run_of_spaces_reads_in_linear_time(tmp_path: Path) -> None:
    report = (
        "pcieport 0000:3b:00.0: AER: PCIe Bus Error: severity=Corrected, type=Physical Layer\n"
        "pcieport 0000:3b:00.0:    [ 0] Rx" + " " * N + "Err"
    )
    _in_linear_time(tmp_path, report)


KERNEL = Path(__file__).parent.parent / "data" / "kernel"


def _kernel_line(name: str, number: int) -> str:
    return (KERNEL / name).read_text().splitlines()[number - 1]


@pytest.mark.parametrize(
    ("name", "number"),
    [
        ("aer-firmware-first.dmesg", 38),  # igb …: AER: aer_status: 0x…, aer_mask: 0x…
        ("aer-firmware-first.dmesg", 32),  # pci …: AER: can't recover (…)
        ("aer-firmware-first.dmesg", 33),  # pcieport …: AER: device recovery failed
        ("aer-vfio-passthrough.log", 3),  # qemu-kvm: vfio_err_notifier_handler(…) Unrecoverable
    ],
)
def test_an_aer_line_after_a_long_word_reads_in_linear_time(
    tmp_path: Path, name: str, number: int
) -> None:
    # The driver's name was tried at every character of a run of digits (a mangled
    # time stamp), reading to the run's end each time.
    real = _kernel_line(name, number)
    message = real[real.index("]") + 2 :] if real.startswith("[") else real
    _in_linear_time(tmp_path, "[  " + "9" * (N // 4) + ".839168] " + message)
    _in_linear_time(tmp_path, "9" * (N // 4) + message)


# --- dcgm-exporter ----------------------------------------------------------------------

DCGM_XID = (
    'DCGM_FI_DEV_XID_ERRORS{{gpu="{gpu}",UUID="GPU-5fc0bcec-8a5a-7f5e-c1a3-9d6b2e0f4a11",'
    'pci_bus_id="00000000:3B:00.0",Hostname="gpu-node-17"}} 48{stamp}\n'
)


@pytest.mark.parametrize("gpu", [str(2**31), str(2**63), "9" * 5000])
def test_a_dcgm_gpu_label_past_int32_is_out_of_range_and_teaches_nothing(
    tmp_path: Path, gpu: str
) -> None:
    # The index was once learned for the PCI address before the event was refused:
    # every later event of that GPU then took it, and was refused too.
    xid_17 = XID.replace("gpu-node-17 kernel", "gpu-node-17 kernel:").replace(": [", " [")
    text = DCGM_XID.format(gpu=gpu, stamp="") + xid_17
    found = parse_text(tmp_path, text, name="gpu-node-17.log")
    assert [(e["source"], e.get("gpu")) for e in found] == [("kmsg", None)]
    assert found.stats.unreadable == {("dcgm", "out of range"): 1}


def test_a_dcgm_gpu_label_of_digits_int_refuses_is_no_index(tmp_path: Path) -> None:
    found = _around(tmp_path, DCGM_XID.format(gpu="\u00b2", stamp=""))
    assert [(e["code"], e.get("gpu")) for e in found.of("xid") if e["source"] == "dcgm"] == [
        (48, None)
    ]


@pytest.mark.parametrize("stamp", [str(2**63), "9" * 400, "9" * 5000])
def test_a_dcgm_time_stamp_past_int64_is_out_of_range(tmp_path: Path, stamp: str) -> None:
    found = _around(tmp_path, DCGM_XID.format(gpu="0", stamp=" " + stamp))
    assert found.stats.unreadable == {("dcgm", "out of range"): 1}


# --- NCCL -------------------------------------------------------------------------------

NCCL_INIT = (
    "gpu-node-3:2345:2345 [0] NCCL INFO comm 0x55d1c2a0 rank {rank} nranks {nranks} cudaDev 0 "
    "nvmlDev {nvml} busId 3b000 commId 0x1f2e3d4c5b6a7980 - Init COMPLETE\n"
)
NCCL_TIMEOUT = (
    "[rank{rank}]:[E1126 15:59:33.302415342 ProcessGroupNCCL.cpp:689] [Rank {rank}] "
    "Watchdog caught collective operation timeout: WorkNCCL(SeqNum={seq}, OpType=ALLREDUCE, "
    "NumelIn=1, NumelOut=1, Timeout(ms)=3000) ran for 3059 milliseconds before timing out.\n"
)


@pytest.mark.parametrize("big", [*BIG, "9" * 400])
@pytest.mark.parametrize(
    "record",
    [
        NCCL_INIT.format(rank="{n}", nranks=4, nvml=0),
        NCCL_INIT.format(rank=0, nranks="{n}", nvml=0),
        NCCL_TIMEOUT.format(rank="{n}", seq=4),
        NCCL_TIMEOUT.format(rank=0, seq="{n}"),
        "[rank0]:[E1126 15:59:33.3 ProcessGroupNCCL.cpp:1] failure detected by watchdog at "
        "work sequence id: 4 PG status: last enqueued work: {n}, last completed work: 3\n",
    ],
)
def test_an_nccl_number_past_int64_is_counted_out_of_range(
    tmp_path: Path, record: str, big: str
) -> None:
    found = _around(tmp_path, record.replace("{n}", big))
    assert found.stats.unreadable == {("nccl", "out of range"): 1}


def test_an_nccl_nvml_index_past_int32_is_out_of_range_and_teaches_nothing(
    tmp_path: Path,
) -> None:
    xid_node_3 = XID.replace("gpu-node-17", "gpu-node-3")
    text = NCCL_INIT.format(rank=0, nranks=4, nvml=2**31) + xid_node_3
    found = parse_text(tmp_path, text)
    assert [(e["kind"], e.get("gpu")) for e in found] == [("xid", None)]
    assert found.stats.unreadable == {("nccl", "out of range"): 1}


@pytest.mark.parametrize(
    "line",
    [
        # the host of "host:pid:tid [dev] NCCL", tried inside a long run of name characters
        "NCCL " + "0" * N,
        # "- Init COMPLETE" looked for after every "rank N nranks" of the line
        "gpu-node-3:1:1 [0] NCCL INFO "
        + "rank 0 nranks 4 cudaDev 0 busId 7000 " * (N // 40)
        + "Init COMPLETE",
        # a WorkNCCL( or an [F… tag, each read to the end of the line
        "NCCL WARN timeout " + "WorkNCCL(SeqNum=1, OpType=ALLREDUCE, " * (N // 40),
        "NCCL " + "[F1126 ProcessGroup" * (N // 20),
    ],
)
def test_a_long_nccl_line_reads_in_linear_time(tmp_path: Path, line: str) -> None:
    _in_linear_time(tmp_path, line)


# --- nvidia-smi -----------------------------------------------------------------------

SMI_TEXT = """
==============NVSMI LOG==============

Timestamp                                 : Tue Jun  4 10:15:00 2024
Driver Version                            : 470.182.03

Attached GPUs                             : {attached}
GPU 00000000:07:00.0
    GPU UUID                              : GPU-11111111-2222-3333-4444-555555555555
    Temperature
        GPU Current Temp                  : 88 C

"""


@pytest.mark.parametrize("attached", ["9" * 400, "9" * 5000, "-1"])
def test_an_smi_report_attaching_no_count_of_gpus_is_read_without_indexes(
    tmp_path: Path, attached: str
) -> None:
    found = _around(tmp_path, SMI_TEXT.format(attached=attached))
    assert [(e["value"], e.get("gpu")) for e in found.of("temperature")] == [(88.0, None)]
    xml = (
        '<?xml version="1.0" ?>\n<nvidia_smi_log>\n'
        f"<attached_gpus>{attached}</attached_gpus>\n"
        '<gpu id="00000000:07:00.0">\n<temperature><gpu_temp>88 C</gpu_temp></temperature>\n'
        "</gpu>\n</nvidia_smi_log>\n"
    )
    found = parse_text(tmp_path, xml, name="smi.xml")
    assert [(e["value"], e.get("gpu")) for e in found.of("temperature")] == [(88.0, None)]
    assert found.stats.unreadable == {}


CSV_HEAD = "timestamp, index, pci.bus_id, temperature.gpu, clocks_throttle_reasons.active\n"
CSV_ROW = "2024/06/04 10:15:00.125, {index}, 00000000:07:00.0, {temp}, {mask}\n"


def _csv(tmp_path: Path, *rows: str) -> Parsed:
    good = CSV_ROW.format(index=0, temp=40, mask="0x0")
    found = parse_text(tmp_path, CSV_HEAD + good + "".join(rows) + good, name="q.csv")
    assert [e["line"] for e in found.of("temperature")][::2][:1] == [2]
    assert found.of("temperature")[-1]["line"] == 3 + len(rows)
    return found


def test_a_csv_row_the_csv_parser_refuses_is_a_malformed_row(tmp_path: Path) -> None:
    found = _csv(tmp_path, CSV_ROW.format(index=0, temp="9" * 200_000, mask="0x0"))
    assert found.stats.unreadable == {("smi", "malformed csv row"): 1}


@pytest.mark.parametrize("index", [str(2**31), "9" * 5000])
def test_a_csv_index_past_int32_is_out_of_range(tmp_path: Path, index: str) -> None:
    found = _csv(tmp_path, CSV_ROW.format(index=index, temp=50, mask="0x0"))
    assert [e["value"] for e in found.of("temperature")] == [40.0, 40.0]
    assert found.stats.unreadable == {("smi", "out of range"): 1}


def test_a_csv_index_of_digits_int_refuses_is_no_index(tmp_path: Path) -> None:
    row = CSV_ROW.format(index="\u00b2", temp=50, mask="0x0").replace("07:00", "0F:00")
    found = _csv(tmp_path, row)
    assert [(e["value"], e.get("gpu")) for e in found.of("temperature")] == [
        (40.0, 0),
        (50.0, None),
        (40.0, 0),
    ]
    assert found.stats.unreadable == {}


def test_a_csv_clock_mask_past_64_bits_is_out_of_range(tmp_path: Path) -> None:
    found = _csv(tmp_path, CSV_ROW.format(index=0, temp=50, mask="0x" + "f" * 300))
    assert [e["value"] for e in found.of("temperature")] == [40.0, 50.0, 40.0]
    assert found.stats.unreadable == {("smi", "out of range"): 1}


def test_a_csv_time_with_5000_fraction_digits_reads(tmp_path: Path) -> None:
    row = CSV_ROW.format(index=0, temp=50, mask="0x0").replace(".125", "." + "1" * 5000)
    found = _csv(tmp_path, row)
    assert [e["ts"] for e in found.of("temperature")][1] == pytest.approx(1717496100.111111111)


def test_a_report_line_with_a_long_run_of_spaces_reads_in_linear_time(tmp_path: Path) -> None:
    _in_linear_time(tmp_path, SMI_TEXT.format(attached=1).rstrip("\n") + "\n    T" + " " * N + "x")


def test_a_long_first_line_of_spaces_is_read_in_linear_time(tmp_path: Path) -> None:
    # Every file's first 64 KiB line is checked for a --query-gpu CSV header, unit by
    # unit: a quadratic look for "[W]" at its end took 11 s here; now milliseconds.
    with _within(3.0):
        found = parse_text(tmp_path, "a,x" + " " * 60_000 + "y\n" + XID)
    assert [e["line"] for e in found] == [2]


@pytest.mark.parametrize("encoding", ["UPF-8", "x" * 5000])
def test_an_smi_xml_report_declaring_an_unknown_encoding_is_invalid_xml(
    tmp_path: Path, encoding: str
) -> None:
    real = (Path(__file__).parent.parent / "data" / "smi" / "535-a100-sxm4.xml").read_text()
    assert real.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    found = parse_text(tmp_path, real.replace("UTF-8", encoding, 1), name="q.xml")
    assert len(found) == 0
    assert found.stats.unreadable == {("smi", "invalid xml (LookupError)"): 1}


# --- nvidia-smi nvlink -e ----------------------------------------------------------------

NVLINK = Path(__file__).parent.parent / "data" / "nvlink" / "h100-nvlink-e.txt"


def test_an_nvlink_block_is_read_live_once_its_end_has_come() -> None:
    # Each GPU line looked 4096 lines ahead: a follower waited for 4096 more lines
    # before it read a block, and every "GPU N:" line of another listing cost 4096.
    lines = NVLINK.read_bytes().splitlines(keepends=True)
    assert lines[16] == b"Another useful command is:\n"  # the paste's first foreign line
    ctx = FileContext(
        "nvlink.txt", "gpu-node-1", ReadOptions(), ReadStats(), Identities(), BatchBuilder(), 0.0
    )
    stream = LineStream(ctx)
    rest = KERNEL.joinpath("aer-firmware-first.dmesg").read_bytes()  # lines of another log
    stream.feed(b"".join(lines[:17]) + rest)  # no end of input: more may come
    events = [e for batch in ctx.take() for e in batch.records()]
    assert [(e["kind"], e["link"]) for e in events if e["kind"] == "nvlink_crc"] == [
        ("nvlink_crc", 0),
        ("nvlink_crc", 1),
        ("nvlink_crc", 17),
    ]
    assert len([e for e in events if e["kind"].startswith("nvlink_")]) == 9


# --- Kubernetes ---------------------------------------------------------------------------

EVICTED: dict[str, Any] = {
    "kind": "Event",
    "reason": "Evicted",
    "message": "The node was low on resource: memory.",
    "involvedObject": {"kind": "Pod", "name": "trainer-0", "namespace": "ml"},
    "metadata": {"name": "trainer-0.17", "namespace": "ml"},
    "source": {"host": "gpu-node-9"},
}


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("metadata",), -1e308),
        (("metadata",), [1]),
        (("involvedObject", "name"), [1, "a", None]),
        (("involvedObject", "namespace"), 2**31),
        (("involvedObject", "kind"), {}),
        (("involvedObject", "namespace"), True),
    ],
)
def test_an_event_with_a_name_or_part_of_the_wrong_type_is_malformed(
    tmp_path: Path, where: tuple[str, ...], value: Any
) -> None:
    event = json.loads(json.dumps(EVICTED))
    node = event
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    found = _around(tmp_path, json.dumps(event) + "\n")
    assert found.stats.unreadable == {("k8s", "malformed event"): 1}


def test_an_event_with_a_message_that_is_no_string_is_read_without_it(tmp_path: Path) -> None:
    found = _around(tmp_path, json.dumps({**EVICTED, "message": {"a": [1]}}) + "\n")
    assert [(e["pod"], e.get("detail")) for e in found.of("pod_evicted")] == [("trainer-0", None)]


@pytest.mark.parametrize(
    "line",
    [
        "ml  " + "9" * N + "m  Warning  Evicted  pod/x  The node was low on resource: memory.",
        "eviction manager: " + "pods a_b(" * (N // 10),
    ],
)
def test_a_long_kubernetes_line_reads_in_linear_time(tmp_path: Path, line: str) -> None:
    # the digits of an age; the uid in parentheses of an old kubelet eviction line
    _in_linear_time(tmp_path, line)


# --- Prometheus HTTP API answers -----------------------------------------------------------

PROM_XID = Path(__file__).parent.parent / "data" / "prometheus" / "query-range-xid.json"


def _prometheus(tmp_path: Path, answer: dict[str, Any]) -> Parsed:
    found = parse_text(tmp_path, json.dumps(answer) + "\n", name="answer.json")
    assert not {reason for _, reason in found.stats.unreadable} & {"reader failed (TypeError)"}
    assert not {reader for reader, _ in found.stats.unreadable} & {"stream", "file"}
    return found


@pytest.mark.parametrize("result_type", [{}, [], ["matrix"], None, 1])
def test_a_prometheus_result_type_of_the_wrong_type_is_a_result_without_series(
    tmp_path: Path, result_type: Any
) -> None:
    answer = json.loads(PROM_XID.read_bytes())
    answer["data"]["resultType"] = result_type
    found = _prometheus(tmp_path, answer)
    assert len(found) == 0
    assert found.stats.unreadable == {("dcgm", "result without series"): 1}


PROM_ERROR = PROM_XID.with_name("query-error-bad-data.json")


@pytest.mark.parametrize("error_type", ["bad_dqta", "b\u00b2d_data", "[" * 5000, "x" * 100_000])
def test_a_prometheus_error_type_not_documented_is_counted_unknown(
    tmp_path: Path, error_type: str
) -> None:
    # The error type was once the reason: every mutated one a reason of its own, as long
    # as the input made it.
    answer = json.loads(PROM_ERROR.read_bytes())
    found = _prometheus(tmp_path, answer)
    assert found.stats.unreadable == {("dcgm", "query error (bad_data)"): 1}
    answer["errorType"] = error_type
    found = _prometheus(tmp_path, answer)
    assert found.stats.unreadable == {("dcgm", "query error (unknown)"): 1}


# --- JSON: nested past the limit, values of the wrong type, lone surrogates -----------

DEEP = [json_line.MAX_DEPTH, 1000, 5000, 100_000]


def _deep_list(depth: int) -> str:
    return "[" * depth + "]" * depth


def _deep_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("depth", [json_line.MAX_DEPTH - 1, *DEEP])
def test_a_journal_line_nested_past_the_limit_is_counted_too_deep(
    tmp_path: Path, depth: int
) -> None:
    # The limit is the reader's, the same on any stack: the parser's own (about 1,000,
    # fewer the deeper the stack it is called from) is never reached.
    deep = '{"__REALTIME_TIMESTAMP":"1","MESSAGE":' + _deep_list(depth) + "}\n"
    found = _around(tmp_path, deep)
    too_deep = depth + 1 > json_line.MAX_DEPTH
    assert found.stats.unreadable == ({("json", "too deep"): 1} if too_deep else {})


def test_brackets_inside_strings_are_no_nesting(tmp_path: Path) -> None:
    message = "[{" * 3000 + "NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name=x, E"
    found = _around(tmp_path, _journal(message))
    assert [e["code"] for e in found] == [79, 13, 79]


@pytest.mark.parametrize("depth", DEEP)
def test_a_kubernetes_line_nested_past_the_parser_is_counted_too_deep(
    tmp_path: Path, depth: int
) -> None:
    deep = '{"type":"ADDED","object":' + _deep_object(depth) + "}\n"
    assert _around(tmp_path, deep).stats.unreadable == {("json", "too deep"): 1}


def test_a_journal_record_before_a_line_nested_too_deep_is_read(tmp_path: Path) -> None:
    # The AER reader looks at the entries after its head: the deep one ends the report.
    head = "nvidia 0000:3b:00.0: PCIe Bus Error: severity=Corrected, type=Physical Layer"
    found = _around(tmp_path, _journal(head) + '{"MESSAGE":' + _deep_list(3000) + "}\n")
    assert [e["detail"] for e in found.of("aer")] == ["Physical Layer: no error bits"]
    assert found.stats.unreadable == {("json", "too deep"): 1}


@pytest.mark.parametrize("depth", DEEP)
def test_a_whole_json_document_nested_too_deep_is_counted_too_deep(
    tmp_path: Path, depth: int
) -> None:
    listed = '{\n  "kind": "List",\n  "items": [\n    ' + _deep_object(depth) + "\n  ]\n}\n"
    found = parse_text(tmp_path, listed, name="events.json")
    assert found.stats.unreadable == {("json", "too deep"): 1}
    one = '{\n  "kind": "Event",\n  "reason": ' + _deep_list(depth) + "\n}\n"
    found = parse_text(tmp_path, one, name="event.json")
    assert found.stats.unreadable == {("json", "too deep"): 1}


def test_a_document_item_too_deep_keeps_the_items_before_it(tmp_path: Path) -> None:
    evicted = {
        "kind": "Event",
        "reason": "Evicted",
        "message": "The node was low on resource: memory.",
        "involvedObject": {"kind": "Pod", "name": "trainer-0", "namespace": "ml"},
        "source": {"host": "gpu-node-9"},
        "lastTimestamp": "2024-06-04T10:29:43Z",
    }
    text = '{\n"items": [\n' + json.dumps(evicted) + ",\n" + _deep_list(2000) + "\n]\n}\n"
    found = parse_text(tmp_path, text, name="events.json")
    assert [(e["pod"], e["line"]) for e in found] == [("trainer-0", 3)]
    assert found.stats.unreadable == {("json", "too deep"): 1}


def test_a_file_whose_first_line_is_nested_too_deep_is_read_as_a_log(tmp_path: Path) -> None:
    # It once escaped every net: the document sniffing parsed the first line unguarded.
    found = parse_text(tmp_path, _deep_object(5000) + "\n" + XID)
    assert [e["line"] for e in found] == [2]
    assert found.stats.unreadable == {("json", "too deep"): 1}
    found = parse_text(tmp_path, "[" * 5000 + "\n" + XID)  # no record's line: noise
    assert [e["line"] for e in found] == [2]


@pytest.mark.parametrize(
    ("field", "value", "counted"),
    [
        ("clock", [1, "a"], {("jsonl", "invalid event"): 1}),
        ("source", {}, {("jsonl", "invalid event"): 1}),
        ("value", 10**400, {("jsonl", "out of range"): 1}),
        ("code", 2**64, {("jsonl", "out of range"): 1}),
        ("kind", [], {}),  # no kind of ours: some other program's JSON, as {"kind": "x"}
    ],
)
def test_an_own_event_with_a_field_of_the_wrong_type_is_counted(
    tmp_path: Path, field: str, value: Any, counted: dict[tuple[str, str], int]
) -> None:
    event = {"kind": "xid", "ts": 1717496100.0, "clock": "wall", "source": "kmsg", "code": 79}
    found = _around(tmp_path, json.dumps({**event, field: value}) + "\n")
    assert found.stats.unreadable == counted


def test_a_lone_surrogate_escape_is_read_as_a_replacement_character(tmp_path: Path) -> None:
    # json.loads keeps "\ud800" as a lone surrogate: no UTF-8 writer (parse --output
    # jsonl, the store) could write the event.
    xid = "NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name=py\ud800, Graphics \udfff Exception"
    evicted = {**EVICTED, "involvedObject": {"kind": "Pod", "name": "w\ud800", "namespace": "ml"}}
    text = _journal(xid) + json.dumps(evicted) + "\n" + _journal("x \ud83d\ude00 y")
    found = _around(tmp_path, text)
    assert [e["process"] for e in found.of("xid")][1] == "py\ufffd"
    assert [e["pod"] for e in found.of("pod_evicted")] == ["w\ufffd"]
    listed = '{\n"items": [\n' + json.dumps(evicted) + "\n]\n}\n"
    found = parse_text(tmp_path, listed, name="events.json")
    assert [e["pod"] for e in found.of("pod_evicted")] == ["w\ufffd"]


@pytest.mark.parametrize("stamp", [float("inf"), 10**400, "9" * 5000])
def test_a_journal_time_no_clock_shows_leaves_the_record_without_time(
    tmp_path: Path, stamp: Any
) -> None:
    entry = _journal(XID.split("kernel: ")[1].strip(), __REALTIME_TIMESTAMP=stamp)
    found = _around(tmp_path, entry)
    assert [(e["line"], e["clock"]) for e in found] == [(1, "wall"), (2, "none"), (3, "wall")]


# --- times no clock shows -------------------------------------------------------------
# Each was read as seconds past year 9999 (or before year 1), and `fleetwatch replay
# --output table` failed on it: datetime cannot show it. A stamp no clock shows is no
# stamp: its record is read untimed. A record that is its own time is 'out of range'.

XID_TEXT = XID.split("kernel: ")[1]


@pytest.mark.parametrize(
    "record",
    [
        "[" + "9" * 23 + ".000000] " + XID_TEXT.split("] ", 1)[1],  # dmesg, seconds since boot
        "4,1234," + "9" * 20 + ",-;" + XID_TEXT.split("] ", 1)[1],  # /dev/kmsg, microseconds
        _journal(XID_TEXT.split("] ", 1)[1].strip(), __REALTIME_TIMESTAMP="1" + "0" * 30),
    ],
)
def test_a_stamp_no_clock_shows_leaves_its_record_untimed(tmp_path: Path, record: str) -> None:
    found = parse_text(tmp_path, "[Aug 5 03:55] start\n" + record)
    assert [(e["code"], e["ts"], e["clock"]) for e in found] == [(79, None, "none")]
    assert found.stats.unreadable == {}


def test_a_dmesg_h_delta_no_clock_shows_is_no_delta(tmp_path: Path) -> None:
    # a 20-digit delta on a line that is no record is not summed into the next one: the
    # record is its anchor plus its own delta
    record = "[  +" + "9" * 20 + ".000000] x\n[  +0.250000] " + XID_TEXT.split("] ", 1)[1]
    found = parse_text(tmp_path, "[Aug 5 03:55] start\n" + record, year=2026)
    anchor = datetime(2026, 8, 5, 3, 55, tzinfo=UTC).timestamp()
    assert [(e["code"], e["ts"], e["clock"]) for e in found] == [(79, anchor + 0.25, "wall")]
    assert found.stats.unreadable == {}


def test_a_syslog_stamp_with_5000_fraction_digits_reads(tmp_path: Path) -> None:
    found = _around(tmp_path, XID.replace("10:29:43", "10:29:43." + "1" * 5000))
    assert [e["ts"] % 60 for e in found.of("xid")][1] == pytest.approx(43.111111111)


@pytest.mark.parametrize(
    "record",
    [
        DCGM_XID.format(gpu="0", stamp=" " + "9" * 17),  # ms: within int64, past 9999
        json.dumps({"kind": "xid", "ts": 1e300, "clock": "wall", "source": "kmsg", "code": 79})
        + "\n",
    ],
)
def test_a_record_whose_own_time_no_clock_shows_is_out_of_range(
    tmp_path: Path, record: str
) -> None:
    found = _around(tmp_path, record)
    assert len(found) == 2
    assert {reason for _, reason in found.stats.unreadable} == {"out of range"}


def test_a_kubectl_age_no_clock_shows_is_no_time(tmp_path: Path) -> None:
    row = "ml  999999999d  Warning  Evicted  pod/x  The node was low on resource: memory.\n"
    found = _around(tmp_path, row)
    assert [(e["pod"], e["ts"]) for e in found.of("pod_evicted")] == [("x", None)]


@pytest.mark.slow
def test_fleetwatch_writes_what_the_fuzzer_once_broke_it_with(tmp_path: Path) -> None:
    text = (
        XID.replace("[ 1843.308145]", "[" + "9" * 23 + ".0]")
        + _journal(XID_TEXT.split("] ", 1)[1].strip(), __REALTIME_TIMESTAMP="1" + "0" * 30)
        + _journal("NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name=py\ud800, Graphics Exception")
        + _deep_object(5000)
        + "\n"
    )
    path = tmp_path / "gpu-node-17.log"
    path.write_text(_deep_object(5000) + "\n" + text)
    for args in (["parse", "--output", "jsonl"], ["replay", "--output", "table"]):
        done = subprocess.run(
            [sys.executable, "-m", "fleetwatch", *args, str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr

"""Kernel log records: NVIDIA Xid and SXid, fallen off the bus, GPU identity, PCIe AER.

The reader sees one kernel message at a time, behind whatever envelope carried it
(dmesg, syslog, journal, /dev/kmsg, a forwarder: ``envelope.py``), and finds the
record anywhere in the line, so an unknown wrapper does not hide it.

Records and the events they become (source ``kmsg``):

* ``NVRM: Xid (PCI:0000:3b:00): 79, pid=…, name=…, <text>`` -> ``xid`` with pci,
  code, pid, process and the text as ``detail``. Also the old ``(0000:03:00)`` form,
  MIG ``(PCI:0000:01:00 GPU-I:05)``, ``pid='<unknown>'``, XID 154's recovery action
  and 45's "caused by previous Xid N" (kept in ``detail``).
* ``nvidia-nvswitchN: SXid (PCI:…): 20034, Fatal, …`` -> ``sxid`` with severity.
* ``NVRM: GPU 0000:09:00.0: GPU has fallen off the bus.``, the three-line
  ``The NVIDIA GPU … / installed in this system has / fallen off the bus …`` and
  ``RmInitAdapter failed`` -> ``gpu_lost``.
* ``NVRM: GPU at PCI:0000:48:00: GPU-…`` (and the ``GPU Board Serial Number`` line
  after it) -> ``gpu_identity``, and the node's PCI -> UUID/serial map learns it.
* ``… 0000:3b:00.0: PCIe Bus Error: severity=…, type=…`` with its ``error
  status/mask`` and ``[ n] Name`` lines -> one ``aer`` event per report: severity,
  the error names (today's spelling, from ``catalog/aer.toml``) in ``detail``.
* Firmware-first ``{N}[Hardware Error]:`` blocks with a PCIe section -> ``aer``.

A line that names a record but does not parse is counted unreadable ("malformed xid");
one whose code or pid no column holds (a digit run past int64) is counted "out of range".
"""

from __future__ import annotations

import re
from typing import Any, Final

from fleetwatch.catalog import aer_bits
from fleetwatch.pci import normalize_pci
from fleetwatch.sources.context import FileContext
from fleetwatch.sources.cursor import Cursor
from fleetwatch.sources.envelope import Envelope
from fleetwatch.sources.numbers import OUT_OF_RANGE, whole
from fleetwatch.sources.reader import Reader

SOURCE: Final = "kmsg"
_PCI: Final = r"[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}(?:\.[0-7])?"
_XID: Final = re.compile(
    r"NVRM: Xid \((?:PCI:)?(?P<pci>" + _PCI + r")(?:\s+GPU-I:\w+)?(?:\s+GPU-CI:\w+)?\):"
    r"\s*(?P<code>\d+)\b,?\s*(?P<rest>.*)"
)
_PID_NAME: Final = re.compile(r"pid='?(?P<pid>[^,']*)'?,\s*(?:name=(?P<name>[^,]*?),\s*)?")
_SXID: Final = re.compile(
    r"nvidia-nvswitch\d*: SXid \((?:PCI:)?(?P<pci>" + _PCI + r")\):\s*(?P<code>\d+)\b,?\s*"
    r"(?P<rest>.*)"
)
_NONFATAL: Final = re.compile(r"\bnon-?fatal\b", re.IGNORECASE)
_FATAL: Final = re.compile(r"\bfatal\b", re.IGNORECASE)
_OFF_BUS: Final = re.compile(r"NVRM: GPU (?P<pci>" + _PCI + r"): GPU has fallen off the bus")
_OFF_BUS_LONG: Final = re.compile(r"NVRM: The NVIDIA GPU (?P<pci>" + _PCI + r")")
_INIT_FAILED: Final = re.compile(
    r"NVRM: (?:GPU (?P<pci>" + _PCI + r"): )?RmInitAdapter failed!?\s*(?P<rest>.*)"
)
_GPU_AT: Final = re.compile(r"NVRM: GPU at (?:PCI:)?(?P<pci>" + _PCI + r"): (?P<uuid>GPU-[\w-]+)")
_SERIAL: Final = re.compile(r"NVRM: GPU Board Serial Number: (?P<serial>\S+)")
_DEV: Final = r"(?P<dev>[0-9a-fA-F]{4,5}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])"
_AER_HEAD: Final = re.compile(
    _DEV + r": (?:AER: )?PCIe Bus Error: severity=(?P<sev>[^,]+), type=(?P<type>[^,]+)"
)
_AER_STATUS: Final = re.compile(
    _DEV + r":(?: AER:)?\s+device \[(?P<id>[0-9a-fA-F]{4}:[0-9a-fA-F]{4})\] "
    r"error status/mask=(?P<status>[0-9a-fA-F]+)/"
)
# The name and its "(First)" are split in code: a lazy name before optional spaces is
# quadratic on a long run of spaces.
_AER_BIT: Final = re.compile(_DEV + r":(?: AER:)?\s+\[\s*(?P<bit>\d+)\]\s+(?P<name>.*)")
_FIRST: Final = "(First)"
_AER_TLP: Final = re.compile(_DEV + r":(?: AER:)?\s+TLP Header:")
_KMSG_DICT: Final = re.compile(r"^ [A-Z_]+=")  # /dev/kmsg's SUBSYSTEM=/DEVICE= lines
_APEI: Final = re.compile(r"\{(?P<id>\d+)\}\[Hardware Error\]:\s*(?P<text>.*)")
_SPACES: Final = re.compile(r"\s{2,}")
_AER_SEVERITY: Final = {"corrected": "corrected", "correctable": "corrected"}
_AER_FOLLOW_LINES: Final = 40


def _severity_of_aer(text: str) -> str | None:
    low = text.strip().lower()
    if low in _AER_SEVERITY:
        return _AER_SEVERITY[low]
    if "non-fatal" in low or "nonfatal" in low:
        return "nonfatal"
    if "fatal" in low:
        return "fatal"
    return None


def _event(kind: str, env: Envelope, line: int, **fields: Any) -> dict[str, Any]:
    return env.event(kind, SOURCE, line, **fields)


def read(text: str, env: Envelope, line: int, cursor: Cursor, ctx: FileContext) -> None:
    """Read the kernel record in ``text``, if it is one."""
    if env.clock == "boot" and env.ts is not None:
        ctx.saw_boot_clock(env.host or ctx.node, env.ts)
    if "NVRM" in text:
        _read_nvrm(text, env, line, cursor, ctx)
    elif "SXid" in text:
        _read_sxid(text, env, line, ctx)
    elif "PCIe Bus Error" in text:
        _read_aer(text, env, line, cursor, ctx)
    elif "[Hardware Error]" in text:
        _read_apei(text, env, line, cursor, ctx)
    elif "Linux version" in text:
        ctx.identities.reboot(env.host or ctx.node)


def _read_nvrm(text: str, env: Envelope, line: int, cursor: Cursor, ctx: FileContext) -> None:
    if "Xid" in text:
        m = _XID.search(text)
        if m is None:
            ctx.stats.bad(SOURCE, "malformed xid")
            return
        rest = m["rest"]
        code = whole(m["code"])
        out_of_range = code is None
        pid = process = None
        if pm := _PID_NAME.match(rest):
            digits = pm["pid"]
            if digits.isdecimal():  # not "<unknown>"; and "²" is a digit int() refuses
                pid = whole(digits)
                out_of_range = out_of_range or pid is None
            process = pm["name"] if pm["name"] not in (None, "", "<unknown>") else None
            rest = rest[pm.end() :]
        if out_of_range:
            ctx.stats.bad(SOURCE, OUT_OF_RANGE)
            return
        ctx.emit(
            _event(
                "xid",
                env,
                line,
                pci=normalize_pci(m["pci"]),
                code=code,
                pid=pid,
                process=process,
                detail=_SPACES.sub(" ", rest.strip()) or None,
            )
        )
    elif m := _GPU_AT.search(text):
        pci = normalize_pci(m["pci"])
        assert pci is not None
        node = env.host or ctx.node
        serial = None
        following = cursor.peek(1)
        if following and (sm := _SERIAL.search(following[0])):
            serial = sm["serial"]
            cursor.skip(1)
        ctx.identities.learn(node, pci, uuid=m["uuid"], serial=serial)
        ctx.last_identity_pci = pci
        ctx.emit(_event("gpu_identity", env, line, pci=pci, uuid=m["uuid"], serial=serial))
    elif m := _SERIAL.search(text):
        pci = ctx.last_identity_pci
        if pci is not None:
            ctx.identities.learn(env.host or ctx.node, pci, serial=m["serial"])
        ctx.emit(_event("gpu_identity", env, line, pci=pci, serial=m["serial"]))
    elif m := _OFF_BUS.search(text):
        ctx.emit(
            _event("gpu_lost", env, line, pci=normalize_pci(m["pci"]), detail="fallen off the bus")
        )
    elif m := _OFF_BUS_LONG.search(text):
        # Old drivers print one message over three lines; only the first is stamped.
        found = "fallen off the bus" in text
        if not found:
            following = cursor.peek(2)
            for i, extra in enumerate(following):
                if "fallen off the bus" in extra:
                    cursor.skip(i + 1)
                    found = True
                    break
        if found:
            pci = normalize_pci(m["pci"])
            ctx.emit(_event("gpu_lost", env, line, pci=pci, detail="fallen off the bus"))
    elif m := _INIT_FAILED.search(text):
        pci = normalize_pci(m["pci"]) if m["pci"] else None
        detail = f"RmInitAdapter failed {m['rest'].strip()}".strip()
        ctx.emit(_event("gpu_lost", env, line, pci=pci, detail=detail))


def _read_sxid(text: str, env: Envelope, line: int, ctx: FileContext) -> None:
    m = _SXID.search(text)
    if m is None:
        ctx.stats.bad(SOURCE, "malformed sxid")
        return
    code = whole(m["code"])
    if code is None:
        ctx.stats.bad(SOURCE, OUT_OF_RANGE)
        return
    rest = m["rest"]
    severity = "nonfatal" if _NONFATAL.search(rest) else "fatal" if _FATAL.search(rest) else None
    ctx.emit(
        _event(
            "sxid",
            env,
            line,
            pci=normalize_pci(m["pci"]),
            code=code,
            severity=severity,
            detail=_SPACES.sub(" ", rest.strip()) or None,
        )
    )


def _read_aer(text: str, env: Envelope, line: int, cursor: Cursor, ctx: FileContext) -> None:
    head = _AER_HEAD.search(text)
    severity = None if head is None else _severity_of_aer(head["sev"])
    if head is None or severity is None:
        ctx.stats.bad(SOURCE, "malformed aer")
        return
    dev = head["dev"].lower()
    bits = aer_bits()
    register = bits.correctable if severity == "corrected" else bits.uncorrectable
    names: list[str] = []
    status: int | None = None
    device_id = None
    consumed = 0
    want = 4  # a report is usually 2-4 lines: look further only when they all belong
    while True:
        following = cursor.peek(want)
        for extra in following[consumed:]:
            if (m := _AER_BIT.search(extra)) and m["dev"].lower() == dev:
                label = m["name"].rstrip()
                first = label.endswith(_FIRST)
                if first:
                    label = label[: -len(_FIRST)].rstrip()
                bit = whole(m["bit"])  # None past any register: the name says it then
                name = register.get(bit) if bit is not None else None
                name = name or bits.new_name.get(label.lower(), label)
                names.append(name + (" (First)" if first else ""))
            elif (m := _AER_STATUS.search(extra)) and m["dev"].lower() == dev:
                status = int(m["status"], 16)
                device_id = m["id"].lower()
            elif _KMSG_DICT.match(extra):
                pass
            elif not ((m := _AER_TLP.search(extra)) and m["dev"].lower() == dev):
                break
            consumed += 1
        else:
            if len(following) == want and want < _AER_FOLLOW_LINES:
                want *= 4
                continue
        break
    cursor.skip(consumed)
    if not names and status:
        names = [register.get(b, f"bit {b}") for b in range(32) if status >> b & 1]
    detail = f"{head['type'].strip()}: {', '.join(names) or 'no error bits'}"
    if device_id:
        detail += f"; device {device_id}"
    ctx.emit(_event("aer", env, line, pci=normalize_pci(dev), severity=severity, detail=detail))


_APEI_SEVERITY: Final = {"corrected": "corrected", "recoverable": "nonfatal", "fatal": "fatal"}


def _read_apei(text: str, env: Envelope, line: int, cursor: Cursor, ctx: FileContext) -> None:
    first = _APEI.search(text)
    if first is None:
        return
    block = [first["text"]]
    consumed = 0
    for extra in cursor.peek(64):
        m = _APEI.search(extra)
        if m is None or m["id"] != first["id"]:
            break
        block.append(m["text"])
        consumed += 1
    cursor.skip(consumed)
    fields: dict[str, str] = {}
    pcie = False
    for entry in block:
        key, _, value = entry.partition(":")
        key = key.strip()
        if key == "section_type" and "PCIe" in value:
            pcie = True
        if key and key not in fields:
            fields[key] = value.strip()
    if not pcie:
        return  # a memory or processor section: not ours
    severity = _APEI_SEVERITY.get(fields.get("event severity", "").lower())
    dev = normalize_pci(fields.get("device_id", "").split(",")[0].strip())
    bits = aer_bits()
    names: list[str] = []
    for key, register in (
        ("aer_cor_status", bits.correctable),
        ("aer_uncor_status", bits.uncorrectable),
    ):
        raw = fields.get(key, "").split(",")[0].strip()
        try:
            status = int(raw, 16) if raw else 0
        except ValueError:
            status = 0
        names += [register.get(b, f"bit {b}") for b in range(32) if status >> b & 1]
    detail = f"APEI firmware-first: {', '.join(names) or 'no error bits'}"
    ctx.emit(_event("aer", env, line, pci=dev, severity=severity, detail=detail))


_WORDS: Final = ("NVRM", "SXid", "PCIe Bus Error", "[Hardware Error]", "Linux version")


def _claims(text: str) -> bool:
    return any(word in text for word in _WORDS)


READER: Final = Reader(
    name="kmsg",
    source=SOURCE,
    kinds=frozenset({"xid", "sxid", "gpu_lost", "gpu_identity", "aer"}),
    description="kernel log lines: dmesg, /dev/kmsg, syslog, journal messages",
    keywords=(
        rb"NVRM",  # Xid, fallen off the bus, GPU identity
        rb"SXid",  # NVSwitch
        rb"AER",  # PCIe AER
        rb"PCIe Bus Error",  # PCIe AER on kernels that print no "AER:" tag
        rb"Hardware Error",  # APEI firmware-first blocks
        rb"Linux version",  # a boot: forget the GPUs seen before it
    ),
    claims=_claims,
    read_line=read,
)

"""Kernel log records: NVIDIA Xid and SXid, GSP and RM faults, GPU identity, PCIe AER.

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
* NVRM faults without an Xid (``catalog/rm_errors.toml``: GSP heartbeat and RPC
  timeouts, the ``*** GSP Timeout ***`` banner, memory-subsystem errors, "reset
  required", PMU halted, …), e.g. ``NVRM: GPU6 _kgspIsHeartbeatTimedOut: Heartbeat
  timed out, …`` -> ``gsp_timeout`` / ``rm_error`` (or ``gpu_lost``) with the
  catalog's name as ``detail``, ``gpu`` from the driver's ``GPU<n>`` prefix and
  ``pci`` when the line prints one (``… for GPU at PCI:0000:0a:00 …``) or the node's
  log has mapped that index to a bus. The only mapping taken is the driver's own: an
  Xid 119 line prints both, ``Xid (PCI:0000:01:00): 119, … response from GPU0 GSP!``.
  ``GPU<n>`` is the driver's GPU instance, which is nvidia-smi's index on systems
  where both count GPUs in bus order (the usual case, not a guarantee). A banner
  without an index takes the PCI address of the Xid 119 line printed with it (within
  ``_RM_BORROW_LINES``). The lines after a fault that belong to it (the same
  function's further lines, ``RPC history`` tables, ``kflcnCoreDump`` register
  dumps) are consumed with it, at most ``_RM_FOLLOW_LINES``: one event per fault,
  never one per dump line. A dump header seen on its own consumes its table too.
* The firmware-first AER print of the kernel (``cper_print_aer``) under any driver,
  ``vfio-pci 0000:42:00.0: AER: aer_status: 0x00040000, aer_mask: 0x…`` with its
  ``[18] MalfTLP (First)``, ``aer_layer=…`` and ``aer_uncor_severity: 0x…`` lines
  -> ``aer``. The register: uncorrectable when an ``aer_uncor_severity`` line
  follows (the kernel prints it only for uncorrectable errors) or a named bit is an
  uncorrectable one, else corrected. Fatal when a status bit is set in the printed
  severity register, else when one is fatal by default (``fatal`` in
  ``catalog/aer.toml``). The same error printed just before as an APEI block of the
  same device (within ``_APEI_TWIN_S``) is that block's event, not a second one.
* ``pcieport 0001:c6:01.0: AER: device recovery failed`` -> ``aer``, fatal, on the
  device printed; ``detail`` names the endpoint whose error it followed (``behind it
  0001:c8:00.0``) when the log's last endpoint report or ``can't recover`` line was
  within ``_BEHIND_LINES`` lines.
* A VMM's ``qemu-kvm: vfio_err_notifier_handler(0000:42:00.0) Unrecoverable error
  detected`` -> ``aer``, fatal, on the passed-through device.

A line that names a record but does not parse is counted unreadable ("malformed xid");
one whose code, pid or GPU index no column holds is counted "out of range".

The commonest of these (an Xid, an SXid, a GPU's identity, the one-line "fallen off
the bus") behind the commonest stamps are also read by a compiled twin
(``kmsg_compiled.py``) where it is built; this module is the definition it is held to.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from fleetwatch.catalog import RmFault, aer_bits, rm_faults
from fleetwatch.pci import normalize_pci
from fleetwatch.sources.context import FileContext
from fleetwatch.sources.cursor import Cursor
from fleetwatch.sources.envelope import Envelope
from fleetwatch.sources.numbers import INT32_MAX, OUT_OF_RANGE, whole
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
# A driver's name starts where a word does: tried inside a long word (a run of digits),
# each start reads to the word's end, which is quadratic in the line.
_DRIVER: Final = r"(?<![\w.-])(?P<drv>[\w.-]+) "
_DRIVER_DEV: Final = re.compile(_DRIVER + _DEV + r":")
_AER_FW: Final = re.compile(
    r"(?:" + _DRIVER + ")?" + _DEV + r":(?: AER:)? aer_status: 0x(?P<status>[0-9a-fA-F]{1,8})"
    r"(?:, aer_mask: 0x(?P<mask>[0-9a-fA-F]{1,8}))?"
)
_AER_FW_LAYER: Final = re.compile(_DEV + r":(?: AER:)? aer_layer=(?P<layer>[^,]+)")
_AER_FW_SEVERITY: Final = re.compile(
    _DEV + r":(?: AER:)? aer_uncor_severity: 0x(?P<sev>[0-9a-fA-F]{1,8})"
)
_RECOVERY_FAILED: Final = re.compile(
    r"(?:" + _DRIVER + ")?" + _DEV + r":(?: AER:)? [Dd]evice recovery failed"
)
_CANT_RECOVER: Final = re.compile(_DRIVER + _DEV + r":(?: AER:)? can't recover")
_VMM_UNRECOVERABLE: Final = re.compile(
    r"(?<!\w)(?P<fn>\w+)\((?P<dev>" + _PCI + r")\) Unrecoverable error detected"
)
_PORT_DRIVER: Final = "pcieport"
_APEI_TWIN_S: Final = 5.0  # the AER print follows its APEI block within milliseconds
_BEHIND_LINES: Final = 64  # how far back an endpoint's report explains a port's failure
# NVRM faults without an Xid (catalog/rm_errors.toml) and what follows them.
_RM_GPU: Final = re.compile(r"NVRM: GPU(?P<gpu>\d+) ")
_RM_PCI: Final = re.compile(r"PCI:(?P<pci>" + _PCI + r")|NVRM: GPU (?P<bare>" + _PCI + r"):")
_RM_FUNCTION: Final = re.compile(r"NVRM: (?:GPU\d+ )?(?P<fn>[A-Za-z_]\w*):")
_XID_RM_INDEX: Final = re.compile(r"from GPU(?P<gpu>\d+) GSP")
_RM_DUMP_HEAD: Final = re.compile(
    r"RPC (?:event )?history \(CPU|GSP RPC buffer contains|kflcnCoreDump"
)
_RM_DUMP_ROW: Final = re.compile(r"NVRM:\s{3,}\S")  # table rows, register words
_RM_FOLLOW_LINES: Final = 512
_RM_BORROW_LINES: Final = 8
_RM_INDICES_PER_NODE: Final = 64  # more GPU indices than any node has: junk, not learned


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
    elif "aer_status:" in text:
        _read_aer_firmware_first(text, env, line, cursor, ctx)
    elif "evice recovery failed" in text:
        _read_recovery_failed(text, env, line, ctx)
    elif "can't recover" in text:
        if m := _CANT_RECOVER.search(text):
            _saw_endpoint(ctx, env, line, m["dev"], m["drv"])
    elif "Unrecoverable error detected" in text:
        _read_vmm(text, env, line, ctx)
    elif "[Hardware Error]" in text:
        _read_apei(text, env, line, cursor, ctx)
    elif "Linux version" in text:
        node = env.host or ctx.node
        ctx.identities.reboot(node)
        _rm_indices(ctx).pop(node, None)


def _read_nvrm(text: str, env: Envelope, line: int, cursor: Cursor, ctx: FileContext) -> None:
    if "Xid" in text:
        m = _XID.search(text)
        if m is None:
            if (fault := _rm_fault(text)) is not None:  # "_kgspLogXid119: *** GSP Timeout"
                _read_rm_fault(text, fault, env, line, cursor, ctx)
            else:
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
        pci = normalize_pci(m["pci"])
        if code == 119 and pci is not None and (im := _XID_RM_INDEX.search(rest)):
            index = whole(im["gpu"], INT32_MAX)
            if index is not None:  # the driver's own map: this GPU<n> is at this PCI
                learn_index(ctx, env.host or ctx.node, index, pci)
        ctx.emit(
            _event(
                "xid",
                env,
                line,
                pci=pci,
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
        learn_identity(ctx, node, pci, m["uuid"], serial)
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
    elif (fault := _rm_fault(text)) is not None:
        _read_rm_fault(text, fault, env, line, cursor, ctx)
    elif _RM_DUMP_HEAD.search(text):
        cursor.skip(_rm_continuation(text, cursor))  # a dump on its own: nothing to read


def learn_identity(ctx: FileContext, node: str, pci: str, uuid: str, serial: str | None) -> None:
    """``NVRM: GPU at PCI:…: GPU-…`` (and its serial line): the GPU in that slot."""
    ctx.identities.learn(node, pci, uuid=uuid, serial=serial)
    ctx.last_identity_pci = pci  # for a serial line printed on its own after it


def _rm_fault(text: str) -> RmFault | None:
    for fault in rm_faults():
        if fault.phrase in text:
            return fault
    return None


def _rm_indices(ctx: FileContext) -> dict[str, dict[int, str]]:
    """Node -> the driver's GPU index -> PCI address, as this file's log mapped them."""
    return _memo(ctx, "kmsg.rm_index")


def _memo(ctx: FileContext, name: str) -> dict[Any, Any]:
    """This reader's table ``name`` in the file's memory (made on first use only)."""
    table: dict[Any, Any] | None = ctx.memo.get(name)
    if table is None:
        table = ctx.memo[name] = {}
    return table


def learn_index(ctx: FileContext, node: str, index: int, pci: str) -> None:
    """The driver's own map: its GPU ``index`` on ``node`` is at ``pci`` (Xid 119)."""
    known = _rm_indices(ctx).setdefault(node, {})
    if index in known or len(known) < _RM_INDICES_PER_NODE:
        known[index] = pci


def _read_rm_fault(
    text: str, fault: RmFault, env: Envelope, line: int, cursor: Cursor, ctx: FileContext
) -> None:
    """One NVRM fault record: the GPU it names, and the lines that belong to it."""
    gpu = None
    if gm := _RM_GPU.search(text):
        gpu = whole(gm["gpu"], INT32_MAX)
        if gpu is None:
            cursor.skip(_rm_continuation(text, cursor))
            ctx.stats.bad(SOURCE, OUT_OF_RANGE)
            return
    pm = _RM_PCI.search(text)
    pci = normalize_pci(pm["pci"] or pm["bare"]) if pm else None
    node = env.host or ctx.node
    borrowed = None
    if gpu is None and pci is None and fault.kind == "gsp_timeout":
        borrowed = _borrow_xid119(cursor)  # a banner printed by the Xid 119 it goes with
    consumed = _rm_continuation(text, cursor)
    if borrowed is not None:
        pci, gpu = borrowed
    elif pci is None and gpu is not None:
        pci = _rm_indices(ctx).get(node, {}).get(gpu)
    cursor.skip(consumed)
    ctx.emit(_event(fault.kind, env, line, gpu=gpu, pci=pci, detail=fault.name))


def _borrow_xid119(cursor: Cursor) -> tuple[str | None, int | None] | None:
    """The PCI address (and index) of an Xid 119 line among the next few, if any."""
    for extra in cursor.peek(_RM_BORROW_LINES):
        m = _XID.search(extra)
        if m is None or m["code"] != "119":
            continue
        im = _XID_RM_INDEX.search(m["rest"])
        return normalize_pci(m["pci"]), whole(im["gpu"], INT32_MAX) if im else None
    return None


def _continuation(cursor: Cursor, belongs: Callable[[str], bool], most: int) -> int:
    """How many of the lines after a record's first belong to it (``belongs`` says, in
    order, until a line does not), at most ``most``. A record is usually a few lines:
    the cursor is asked for 4, and for 4 times more only while they all belong."""
    consumed = 0
    want = 4
    while True:
        following = cursor.peek(want)
        for extra in following[consumed:]:
            if consumed >= most or not belongs(extra):
                return consumed
            consumed += 1
        if len(following) < want or want >= most:
            return consumed
        want = min(want * 4, most)


def _bit_line(m: re.Match[str]) -> tuple[int | None, str, bool]:
    """An AER bit line's bit (None past any register), its label and "(First)"."""
    label = m["name"].rstrip()
    first = label.endswith(_FIRST)
    if first:
        label = label[: -len(_FIRST)].rstrip()
    return whole(m["bit"]), label, first


def _same_device(m: re.Match[str] | None, dev: str) -> bool:
    return m is not None and m["dev"].lower() == dev


def _rm_continuation(text: str, cursor: Cursor) -> int:
    """How many lines after ``text`` belong to its record: the same GPU's same
    function's further lines that name no fault (a banner's note and closing line) and
    dump lines, up to ``_RM_FOLLOW_LINES``."""
    fm = _RM_FUNCTION.search(text)
    function = fm[0] if fm else None  # "NVRM: GPU6 _kgspLogRpcTimeout:": one GPU's function

    def belongs(extra: str) -> bool:
        if _RM_DUMP_ROW.search(extra) or _KMSG_DICT.match(extra):
            return True
        if "NVRM" not in extra:
            return False
        if _RM_DUMP_HEAD.search(extra):
            return True
        em = _RM_FUNCTION.search(extra) if function is not None else None
        # the same fault again is its own record
        return em is not None and em[0] == function and _rm_fault(extra) is None

    return _continuation(cursor, belongs, _RM_FOLLOW_LINES)


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

    def belongs(extra: str) -> bool:
        nonlocal status, device_id
        if (m := _AER_BIT.search(extra)) and m["dev"].lower() == dev:
            bit, label, first = _bit_line(m)
            name = register.get(bit) if bit is not None else None
            name = name or bits.new_name.get(label.lower(), label)
            names.append(name + (" (First)" if first else ""))
        elif (m := _AER_STATUS.search(extra)) and m["dev"].lower() == dev:
            status = int(m["status"], 16)
            device_id = m["id"].lower()
        elif not _KMSG_DICT.match(extra):
            return _same_device(_AER_TLP.search(extra), dev)
        return True

    cursor.skip(_continuation(cursor, belongs, _AER_FOLLOW_LINES))
    if not names and status:
        names = [register.get(b, f"bit {b}") for b in range(32) if status >> b & 1]
    detail = f"{head['type'].strip()}: {', '.join(names) or 'no error bits'}"
    if device_id:
        detail += f"; device {device_id}"
    if (dm := _DRIVER_DEV.search(text)) and dm["drv"] != _PORT_DRIVER:
        _saw_endpoint(ctx, env, line, dev, dm["drv"])
    ctx.emit(_event("aer", env, line, pci=normalize_pci(dev), severity=severity, detail=detail))


def _saw_endpoint(ctx: FileContext, env: Envelope, line: int, dev: str, driver: str) -> None:
    saw_endpoint(ctx, env.host or ctx.node, line, dev, driver)


def saw_endpoint(ctx: FileContext, node: str, line: int, dev: str, driver: str) -> None:
    """Remember the last endpoint (not a port) that reported an error, per node: a
    port's failed recovery that follows is about the device behind it."""
    if driver == _PORT_DRIVER:
        return
    endpoints = _memo(ctx, "kmsg.aer_endpoint")
    dev = dev.lower()
    known = endpoints.get(node)
    if known is not None and known[0][:-1] == dev[:-1] and known[0] < dev:
        dev, driver = known[0], known[1]  # the GPU's audio function is the same card
    endpoints[node] = (dev, driver, line)


def _read_aer_firmware_first(
    text: str, env: Envelope, line: int, cursor: Cursor, ctx: FileContext
) -> None:
    """``<driver> <dev>: AER: aer_status: 0x…, aer_mask: 0x…`` and its lines."""
    head = _AER_FW.search(text)
    if head is None:
        ctx.stats.bad(SOURCE, "malformed aer")
        return
    dev = head["dev"].lower()
    status = int(head["status"], 16)
    bits = aer_bits()
    labels: list[tuple[int | None, str, bool]] = []  # (bit, name, first)
    layer = None
    severity_register = None

    def belongs(extra: str) -> bool:
        nonlocal layer, severity_register
        if (m := _AER_BIT.search(extra)) and m["dev"].lower() == dev:
            bit, label, first = _bit_line(m)
            labels.append((bit, bits.new_name.get(label.lower(), label), first))
        elif (m := _AER_FW_LAYER.search(extra)) and m["dev"].lower() == dev:
            layer = m["layer"].strip()
        elif (m := _AER_FW_SEVERITY.search(extra)) and m["dev"].lower() == dev:
            severity_register = int(m["sev"], 16)
        elif not _KMSG_DICT.match(extra):
            return _same_device(_AER_TLP.search(extra), dev)
        return True

    cursor.skip(_continuation(cursor, belongs, _AER_FOLLOW_LINES))
    uncorrectable_names = set(bits.uncorrectable.values()) - set(bits.correctable.values())
    uncorrectable = severity_register is not None or any(
        name in uncorrectable_names for _, name, _ in labels
    )
    register = bits.uncorrectable if uncorrectable else bits.correctable
    named = 0
    for bit, _, _ in labels:
        if bit is not None and bit < 32:
            named |= 1 << bit
    errors = status or named
    if not uncorrectable:
        severity = "corrected"
    elif severity_register is not None:
        severity = "fatal" if errors & severity_register else "nonfatal"
    else:
        severity = "fatal" if errors & bits.fatal_mask else "nonfatal"
    names = [name + (" (First)" if first else "") for _, name, first in labels]
    if not names:
        names = [register.get(b, f"bit {b}") for b in range(32) if status >> b & 1]
    detail = f"{layer or 'firmware-first AER'}: {', '.join(names) or 'no error bits'}"
    driver = head["drv"]
    if driver:
        detail += f"; driver {driver}"
        _saw_endpoint(ctx, env, line, dev, driver)
    node = env.host or ctx.node
    twin = _memo(ctx, "kmsg.apei_last").get(node)
    if (
        twin is not None
        and twin[0] == normalize_pci(dev)
        and env.ts is not None
        and twin[1] is not None
        and abs(env.ts - twin[1]) <= _APEI_TWIN_S
    ):
        return  # the APEI block just before was this error: its event stands for both
    ctx.emit(_event("aer", env, line, pci=normalize_pci(dev), severity=severity, detail=detail))


def _read_recovery_failed(text: str, env: Envelope, line: int, ctx: FileContext) -> None:
    m = _RECOVERY_FAILED.search(text)
    if m is None:
        return  # another driver's words, not the AER core's
    detail = "device recovery failed"
    if m["drv"]:
        detail += f"; driver {m['drv']}"
    endpoint = _memo(ctx, "kmsg.aer_endpoint").get(env.host or ctx.node)
    dev = m["dev"].lower()
    if endpoint is not None and endpoint[0] != dev and 0 <= line - endpoint[2] <= _BEHIND_LINES:
        detail += f"; behind it {normalize_pci(endpoint[0])} ({endpoint[1]})"
    pci = normalize_pci(dev)
    ctx.emit(_event("aer", env, line, pci=pci, severity="fatal", detail=detail))


def _read_vmm(text: str, env: Envelope, line: int, ctx: FileContext) -> None:
    m = _VMM_UNRECOVERABLE.search(text)
    if m is None:
        return  # not a passthrough device's error
    detail = f"VMM: unrecoverable error on a passed-through device ({m['fn']})"
    pci = normalize_pci(m["dev"])
    ctx.emit(_event("aer", env, line, pci=pci, severity="fatal", detail=detail))


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
    if dev is not None:  # the kernel prints this error again as "AER: aer_status: …"
        _memo(ctx, "kmsg.apei_last")[env.host or ctx.node] = (dev, env.ts)
    ctx.emit(_event("aer", env, line, pci=dev, severity=severity, detail=detail))


CLAIM_WORDS: Final = (  # a line with none of these is not a kernel record
    "NVRM",
    "SXid",
    "PCIe Bus Error",
    "aer_status:",  # firmware-first AER as the AER core prints it
    "evice recovery failed",  # AER: device (or Device) recovery failed
    "AER: can't recover",  # the endpoint behind a port that fails recovery
    "Unrecoverable error detected",  # a VMM on a passed-through device's error
    "[Hardware Error]",
    "Linux version",
)


def _claims(text: str) -> bool:
    for word in CLAIM_WORDS:  # noqa: SIM110 (any() makes a generator per candidate line)
        if word in text:
            return True
    return False


READER: Final = Reader(
    name="kmsg",
    source=SOURCE,
    kinds=frozenset({"xid", "sxid", "gpu_lost", "gpu_identity", "aer", "gsp_timeout", "rm_error"}),
    description="kernel log lines: dmesg, /dev/kmsg, syslog, journal messages",
    keywords=(
        rb"NVRM",  # Xid, fallen off the bus, GPU identity, GSP and RM faults
        rb"SXid",  # NVSwitch
        rb"AER",  # PCIe AER, in every form the AER core prints
        rb"Unrecoverable error detected",  # QEMU's vfio_err_notifier_handler
        rb"PCIe Bus Error",  # PCIe AER on kernels that print no "AER:" tag
        rb"Hardware Error",  # APEI firmware-first blocks
        rb"Linux version",  # a boot: forget the GPUs seen before it
    ),
    claims=_claims,
    read_line=read,
)

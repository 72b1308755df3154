"""The envelope of a log line: its time stamp and host, whatever wrote it.

The same kernel record reaches us behind many prefixes::

    [ 1843.308145] NVRM: …                                  dmesg (boot clock)
    [   36.782543][  T291] NVRM: …                          dmesg with caller id
    [Mon Aug  5 03:54:13 2024] NVRM: …                      dmesg -T (local time)
    [Aug 5 03:54] … / [  +0.000844] NVRM: …                 dmesg -H (relative)
    kern  :err   : 2025-01-25T10:34:54,859532+00:00 NVRM: … dmesg -x --time-format iso
    Aug  5 03:54:13 gpu-7 kernel: [ 1843.3] NVRM: …         syslog, with or without host
    2024-08-05T03:54:13+0000 gpu-7 kernel: NVRM: …          journalctl -o short-iso
    4,1234,5678901,-;NVRM: …                                /dev/kmsg
    10.1.2.3: kern: warning: [2026-04-22T21:25:20.45Z]: …   a log forwarder
    [rank0]:[E1126 15:59:33.302415342 ProcessGroupNCCL.cpp:689] …   glog, behind a tag
    [rank14]:[E909 09:55:29.307629539 ProcessGroupNCCL.cpp:607] …   PyTorch: month unpadded

``parse`` peels the leading stamps it knows; when none leads the line (an alerting
wrapper, a launcher prefix) it searches the text before the record for one.
A wall-clock stamp wins over a boot-clock one when a line has both.
"""

from __future__ import annotations

import re
from typing import Any, Final, NamedTuple

from fleetwatch.timestamps import TimeRules, month_number


class Envelope(NamedTuple):
    """What a line's prefix says: when (``ts``, ``clock``) and where (``host``)."""

    ts: float | None
    clock: str
    host: str | None
    relative: bool = False  # dmesg -H delta: ts is seconds since the previous line
    boot: float | None = None  # the kernel's own stamp, when a wall-clock line carries one too

    def event(self, kind: str, source: str, line: int, **fields: Any) -> dict[str, Any]:
        """An event's fields: its kind and origin, this envelope's time and host, ``fields``.

        A time no clock shows (a ``dmesg -H`` sum run past year 9999) is no time.
        """
        ts = self.ts
        timed = ts is None or EARLIEST <= ts <= LATEST
        return {
            "kind": kind,
            "source": source,
            "line": line,
            "ts": ts if timed else None,
            "clock": self.clock if timed else "none",
            "node": self.host,
            **fields,
        }


NO_ENVELOPE: Final = Envelope(None, "none", None)

# The times a clock can show (datetime's years 1 to 9999, in seconds). A stamp's digits
# are bounded so that none reads past them: 11 digits of seconds since boot (3,000
# years), 17 of microseconds. A longer run is no stamp, and its line is read untimed.
EARLIEST: Final = -62_135_596_800.0
LATEST: Final = 253_402_300_799.0


def showable(ts: float) -> bool:
    """Whether ``ts`` (seconds, of either clock) is a time a clock can show."""
    return EARLIEST <= ts <= LATEST


_ISO: Final = r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?(Z|[+-]\d\d:?\d\d)?"
_DMESG_BOOT: Final = re.compile(r"\[\s*(\d{1,11}\.\d+)\](?:\[\s*[TC]\d+\])?\s?")
_DMESG_RELATIVE: Final = re.compile(r"\[\s*\+\s*(\d{1,11}\.\d+)\]\s?")
_DMESG_CTIME: Final = re.compile(
    r"\[[A-Za-z]{3} ([A-Za-z]{3})\s+(\d{1,2}) (\d\d):(\d\d):(\d\d) (\d{4})\]\s?"
)
_DMESG_HUMAN: Final = re.compile(r"\[([A-Za-z]{3})\s*(\d{1,2}) (\d\d):(\d\d)(?::(\d\d))?\]\s?")
_FACILITY: Final = re.compile(r"[a-z]+\s*:[a-z]+\s*: ")
_ISO_LEAD: Final = re.compile(_ISO + r"\s?")
_KMSG: Final = re.compile(r"\d+,\d+,(\d{1,17}),[^;]*;")  # µs since boot
_FORWARDER: Final = re.compile(r"([\w.:-]+?): \w+: \w+: \[" + _ISO + r"\]: ")
_SYSLOG: Final = re.compile(
    r"([^\W\d_]{3,5}\.?)\s+(\d{1,2}) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,9})\d*)?\s"
)
_HOST_IDENT: Final = re.compile(r"([^\s:\[\]]+) [^\s:\[\]]+(?:\[\d+\])?: ")
# glog pads the month (E0909); PyTorch's c10 logger does not (E909, E112 = 12 January):
# the day is always two digits, so the digits before it are the month.
_GLOG: Final = re.compile(r"\b([IWEF])(\d{1,2})(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?\b")
# Stamps searched for anywhere before the record when none leads the line.
_EMBEDDED: Final = re.compile(
    r"\[\s*(\d{1,11}\.\d+)\]|\[[A-Za-z]{3} ([A-Za-z]{3})\s+(\d{1,2}) (\d\d):(\d\d):(\d\d) (\d{4})\]"
    r"|" + _ISO
)


def _fraction(digits: str | None) -> float:
    return int(digits) / 10 ** len(digits) if digits else 0.0


def _offset_s(zone: str) -> int:
    if zone == "Z":
        return 0
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    return sign * (int(digits[:2]) * 3600 + int(digits[2:4]) * 60)


def _iso(groups: tuple[str | None, ...], rules: TimeRules) -> float | None:
    y, mo, d, h, mi, s, frac, zone = (g or "" for g in groups)
    sec = int(s) + _fraction(frac)
    if zone:
        return rules.utc(int(y), int(mo), int(d), int(h), int(mi), sec, _offset_s(zone))
    return rules.local(int(y), int(mo), int(d), int(h), int(mi), sec)


def _syslog(m: re.Match[str], rules: TimeRules) -> float | None:
    month = month_number(m[1])
    if month is None:
        return None
    day = int(m[2])
    year = rules.infer_year(month, day)
    return rules.local(year, month, day, int(m[3]), int(m[4]), int(m[5]) + _fraction(m[6]))


def _glog(m: re.Match[str], rules: TimeRules) -> float | None:
    month, day = int(m[2]), int(m[3])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    year = rules.infer_year(month, day)
    return rules.local(year, month, day, int(m[4]), int(m[5]), int(m[6]) + _fraction(m[7]))


def parse(text: str, rules: TimeRules, record_at: int | None = None) -> Envelope:
    """The envelope of ``text``; ``record_at`` bounds the search for an embedded stamp."""
    pos = 0
    host: str | None = None
    wall: float | None = None
    boot: float | None = None
    first = text[:1]
    if first == "[":
        # what each stamp needs after its "[" comes first (a regex that fails costs two
        # allocations: PyTorch's "[rank0]:[E0604 …" tried all four)
        second, fifth = text[1:2], text[4:5]
        numeric = second.isdecimal() or second.isspace()
        # "[Thu Nov …" and "[Nov26 …", "[Nov 26 …": three letters, then a space or digit
        dated = second.isascii() and second.isalpha() and (fifth.isspace() or fifth.isdecimal())
        if numeric and (m := _DMESG_BOOT.match(text)):
            boot = float(m[1])
        elif dated and fifth == " " and (m := _DMESG_CTIME.match(text)):
            wall = rules.ctime(m[1], m[2], m[3], m[4], m[5], m[6])
        elif (numeric or second == "+") and (m := _DMESG_RELATIVE.match(text)):
            return Envelope(float(m[1]), "none", None, relative=True)
        elif dated and (m := _DMESG_HUMAN.match(text)):
            month = month_number(m[1])
            if month is not None:
                day = int(m[2])
                year = rules.infer_year(month, day)
                wall = rules.local(year, month, day, int(m[3]), int(m[4]), float(m[5] or 0))
    elif first.isdigit():
        if m := _ISO_LEAD.match(text):
            wall = _iso(m.groups(), rules)
            pos = m.end()
            # dmesg --time-format iso writes a comma and no host; syslog and journal a host.
            if "," not in m[0] and (h := _HOST_IDENT.match(text, pos)):
                host = h[1]
                if k := _DMESG_BOOT.match(text, h.end()):
                    boot = float(k[1])
        elif m := _KMSG.match(text):
            boot = int(m[1]) / 1e6
        elif m := _FORWARDER.match(text):
            host = m[1]
            wall = _iso(m.groups()[1:], rules)
    # Each regex call costs two allocations even when it fails at once: a cheap test of
    # what a stamp needs comes first (a facility is lower case; a syslog time has a
    # colon within its first 32 characters).
    elif "a" <= first <= "z" and (m := _FACILITY.match(text)):
        if iso := _ISO_LEAD.match(text, m.end()):
            wall = _iso(iso.groups(), rules)
    elif first.isalpha() and text.find(":", 0, 32) > 0 and (m := _SYSLOG.match(text)):
        wall = _syslog(m, rules)
        if wall is not None:
            pos = m.end()
            if h := _HOST_IDENT.match(text, pos):
                host = h[1]
                pos = h.end()
            # syslog may carry the kernel's own stamp after the ident: it anchors the clock
            if k := _DMESG_BOOT.match(text, pos):
                boot = float(k[1])
    if wall is not None:
        return Envelope(wall, "wall", host, boot=boot)
    if boot is not None:
        return Envelope(boot, "boot", host)
    head = text if record_at is None else text[:record_at]
    if not head:
        return NO_ENVELOPE if host is None else Envelope(None, "none", host)
    if m := _GLOG.search(head):
        wall = _glog(m, rules)
        if wall is not None:
            return Envelope(wall, "wall", host)
    if m := _EMBEDDED.search(head):
        if m[1]:
            return Envelope(float(m[1]), "boot", host)
        if m[2]:
            wall = rules.ctime(m[2], m[3], m[4], m[5], m[6], m[7])
        else:
            wall = _iso(m.groups()[7:], rules)
        if wall is not None:
            return Envelope(wall, "wall", host)
    return NO_ENVELOPE if host is None else Envelope(None, "none", host)


# A line that starts with any stamp ``parse`` knows: used to find the nearest stamped
# line before a record that has none (NCCL INFO lines).
STAMPED_LINE: Final = re.compile(
    rb"^(?:\[\s*\d+\.\d+\]|\[[A-Za-z]{3} [A-Za-z]{3}\s|\d{4}-\d\d-\d\d[T ]\d\d:"
    rb"|[a-z]+\s*:[a-z]+\s*: \d{4}-|[A-Za-z]{3}\s+\d{1,2} \d\d:\d\d:\d\d\s|\d+,\d+,\d+,[^;\n]*;"
    rb"|.{0,60}?\[[IWEF]\d{3,4} \d\d:\d\d:\d\d)",
    re.MULTILINE,
)

"""Turning the many time stamps of logs into epoch seconds.

Rules (DESIGN.md): a stamp without a year (syslog ``Aug  5 03:54:13``, glog
``E1126 15:59:33``) takes the year from ``--year``, else from the file's modification
time, stepping back one year for a date after that time (a log written in January
still holds December's lines). A stamp without a zone is local time, or ``--tz``.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fleetwatch.catalog import months

__all__ = ["TimeRules", "TimeZoneError", "month_number", "parse_zone"]


class TimeZoneError(ValueError):
    """``--tz`` names no known time zone."""


def parse_zone(name: str) -> ZoneInfo:
    """The zone called ``name`` (``UTC``, ``Europe/Paris``)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise TimeZoneError(f"unknown time zone {name!r}") from exc


def month_number(text: str) -> int | None:
    """1-12 for a month abbreviation in any shipped locale (``Aug``, ``Mai``, ``déc.``)."""
    key = text.lower().rstrip(".")
    found = months().get(key)
    if found is None and len(key) > 3:
        found = months().get(key[:3])
    return found


@dataclass
class TimeRules:
    """How one input resolves partial stamps: its year, its zone, its reference time."""

    year: int | None = None
    zone: ZoneInfo | None = None
    reference: float = field(default_factory=time.time)
    _minutes: dict[tuple[int, int, int, int, int], float] = field(default_factory=dict)
    _today: tuple[int, int, int] | None = field(default=None, repr=False, compare=False)
    """The reference's year, month and day, in the zone: read at the first stamp."""

    def infer_year(self, month: int, day: int) -> int:
        """The year of a stamp that has none."""
        if self.year is not None:
            return self.year
        if self._today is None:
            ref = datetime.fromtimestamp(self.reference, self.zone)
            self._today = (ref.year, ref.month, ref.day)
        year, ref_month, ref_day = self._today
        # A date more than a day after the file was last written is last year's.
        if month > ref_month or (month == ref_month and day > ref_day + 1):
            return year - 1
        return year

    def local(self, y: int, mo: int, d: int, h: int, mi: int, sec: float) -> float | None:
        """Epoch seconds of a wall-clock time in the input's zone (None if impossible)."""
        key = (y, mo, d, h, mi)
        base = self._minutes.get(key)
        if base is None:
            try:
                if self.zone is None:
                    base = time.mktime((y, mo, d, h, mi, 0, 0, 0, -1))
                else:
                    base = datetime(y, mo, d, h, mi, tzinfo=self.zone).timestamp()
            except (ValueError, OverflowError):
                return None
            if len(self._minutes) > 4096:  # bounded: a long file walks through time
                self._minutes.clear()
            self._minutes[key] = base
        return base + sec

    def ctime(self, mon: str, day: str, h: str, mi: str, s: str, y: str) -> float | None:
        """Epoch seconds of a ctime-style local stamp (``Thu Nov 26 16:00:42 2026``)."""
        month = month_number(mon)
        if month is None:
            return None
        return self.local(int(y), month, int(day), int(h), int(mi), float(s))

    def utc(
        self, y: int, mo: int, d: int, h: int, mi: int, sec: float, offset_s: int
    ) -> float | None:
        """Epoch seconds of a time with an explicit UTC offset."""
        if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60):
            return None
        try:
            return calendar.timegm((y, mo, d, h, mi, 0)) + sec - offset_s
        except (ValueError, OverflowError):
            return None

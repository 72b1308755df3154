"""The kernel log, live: ``/dev/kmsg`` when it can be read, else ``journalctl -k -f``.

``/dev/kmsg`` hands out one record per read: ``priority,sequence,microseconds,flags;
message``, then continuation lines (`` KEY=value``) that are skipped. The sequence
number starts again at every boot, so the position is the pair (``boot_id`` from
``/proc/sys/kernel/random/boot_id``, last sequence read): after a restart in the same
boot, records up to that sequence are skipped, and after a reboot the new boot's
records are all new. Re-reading the old kernel lines after a restart, and raising
their faults again, is a known bug of other tools; this position is what prevents it.
Each record becomes a syslog-style line with both stamps (wall time, and the boot
clock in brackets) and goes through the same kernel-line reader as ``replay``.
If the ring buffer wrapped past records not yet read, the loss is counted.

Without ``/dev/kmsg`` (no permission, a container), ``journalctl -k -f -o json``
runs as a child process; its JSON lines are journal entries the ``replay`` reader
knows, and the position is the journal cursor (``--after-cursor``).

On the very first start (no position) both begin at the end: history is for replay.

Built with ``once=True`` (``fleetwatch slurm-health``) it reads what the log holds past
its position and returns: the device until no record is left, ``journalctl -k`` without
``-f`` to its end. Its very first run reads this boot's whole kernel log, as every run
after a reboot does (a health check's first run is often at boot, on a node whose
``/var/lib`` starts empty; the boot's early faults are the node's health).

A record that may go on (an AER report spans several kernel records) is held until
the next record shows it ended, or the log has been quiet for ``quiet_s``. The
position saved is that of the last record read *before* the ones held, so a restart
reads a held record again rather than skipping it.
"""

from __future__ import annotations

import errno
import json
import os
import select
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from fleetwatch.events import BatchBuilder
from fleetwatch.inputs.live import Deliver, SourceError
from fleetwatch.sources.context import FileContext, Identities, ReadOptions, ReadStats
from fleetwatch.sources.stream import LineStream

BOOT_ID: Final = Path("/proc/sys/kernel/random/boot_id")
RECORD_BYTES: Final = 8192  # a read smaller than a record fails with EINVAL
MAX_UPTIME_US: Final = 10**16  # 317 years of uptime, in the record's microseconds


@dataclass(frozen=True)
class KmsgSettings:
    """``[watch.kmsg]``: the kernel log of this node."""

    device: str = "/dev/kmsg"
    """The kernel's record device."""
    journalctl: str = "journalctl"
    """The journalctl program, used when the device cannot be read."""
    quiet_s: float = 0.2
    """A record held for the records that may continue it is read after this many
    quiet seconds."""


class HeldPositions:
    """The position of each line handed to a stream, until the stream has read it.

    ``settled`` is the position of the last line read, never of one still held: what a
    restart can resume after without losing a held record.
    """

    def __init__(self, settled: Any) -> None:
        self.settled = settled
        self._fed: list[Any] = []  # positions of the lines fed and not yet settled

    def fed(self, position: Any) -> None:
        self._fed.append(position)

    def read_up_to(self, held: int) -> Any:
        """All but the last ``held`` lines fed were read: their position is settled."""
        done = len(self._fed) - held
        if done > 0:
            self.settled = self._fed[done - 1]
            del self._fed[:done]
        return self.settled


def kmsg_record(raw: bytes) -> tuple[int, float, str] | None:
    """(sequence, seconds since boot, message) of one ``/dev/kmsg`` record."""
    head, sep, rest = raw.partition(b";")
    fields = head.split(b",")
    if not sep or len(fields) < 3:
        return None
    try:
        sequence, micros = int(fields[1]), int(fields[2])
    except ValueError:
        return None
    if not 0 <= micros < MAX_UPTIME_US or sequence < 0:
        return None  # no kernel wrote that: a clock past any uptime, a negative sequence
    message = rest.split(b"\n", 1)[0].decode("utf-8", "replace")  # not the KEY=value lines
    return sequence, micros / 1e6, message


class KmsgSource:
    """Reads the kernel log as it is written."""

    def __init__(
        self,
        settings: KmsgSettings,
        node: str,
        options: ReadOptions,
        saved: Any,
        once: bool = False,
    ) -> None:
        self.name = "kmsg"
        self.settings = settings
        self.once = once  # read what is there, then return (see the module docstring)
        self.node = node
        self.options = options
        self.stats = ReadStats()
        self.saved: dict[str, Any] = dict(saved or {})
        self.via = ""  # "device" or "journal", once running

    def check(self) -> None:
        """The device, or else journalctl, must be there to read."""
        try:
            os.close(os.open(self.settings.device, os.O_RDONLY | os.O_NONBLOCK))
        except OSError as exc:
            if shutil.which(self.settings.journalctl) is None:
                raise SourceError(
                    f"--kmsg: cannot read {self.settings.device} ({exc.strerror or exc}) "
                    f"and there is no {self.settings.journalctl} to read the journal with"
                ) from exc

    def run(self, deliver: Deliver, stop: threading.Event) -> None:
        try:
            fd = os.open(self.settings.device, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            self.via = "journal"
            self._journal(deliver, stop)
            return
        self.via = "device"
        try:
            self._device(fd, deliver, stop)
        finally:
            os.close(fd)

    def _stream(self) -> LineStream:
        builder = BatchBuilder()
        ctx = FileContext(
            self.name, self.node, self.options, self.stats, Identities(), builder, time.time()
        )
        return LineStream(ctx)

    # -- /dev/kmsg --------------------------------------------------------------------

    def _device(self, fd: int, deliver: Deliver, stop: threading.Event) -> None:
        boot = BOOT_ID.read_text().strip() if BOOT_ID.exists() else "unknown"
        after = self.saved.get("seq", -1) if self.saved.get("boot_id") == boot else -1
        if not self.saved and not self.once:  # first start: from now on
            try:
                os.lseek(fd, 0, os.SEEK_END)
            except OSError as exc:
                if exc.errno != errno.ESPIPE:  # a pipe in the device's place: nothing to skip
                    raise
        booted = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
        stream = self._stream()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        held = HeldPositions(self.saved.get("seq", -1) if after >= 0 else -1)
        grew = time.monotonic()
        while not stop.is_set():
            poller.poll(100)
            lines: list[str] = []
            while True:
                try:
                    raw = os.read(fd, RECORD_BYTES)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno == errno.EPIPE:  # the ring buffer overwrote unread records
                        self.stats.bad("kmsg", "records lost (ring buffer wrapped)")
                        continue
                    raise
                if not raw:
                    break  # a device that ended (a pipe without a writer): nothing more now
                record = kmsg_record(raw)
                if record is None:
                    self.stats.bad("kmsg", "not a kmsg record")
                    continue
                sequence, since_boot, message = record
                if sequence <= after:
                    continue  # read before the restart
                held.fed(sequence)
                stamp = datetime.fromtimestamp(booted + since_boot, UTC).isoformat()
                lines.append(f"{stamp} {self.node} kernel: [{since_boot:12.6f}] {message}\n")
            if lines:
                stream.feed("".join(lines).encode())
                grew = time.monotonic()
            elif stream.held and time.monotonic() - grew >= self.settings.quiet_s:
                stream.flush()
            elif self.once and not stream.held:
                return  # nothing left to read, nothing held
            else:
                continue
            seq = held.read_up_to(stream.held)
            batches = stream.ctx.take()
            if seq >= 0 and (batches or self.saved.get("seq") != seq):
                self.saved = {"boot_id": boot, "seq": seq}
                deliver(batches, self.saved)

    # -- journalctl -k -f -------------------------------------------------------------

    def _journal(self, deliver: Deliver, stop: threading.Event) -> None:
        command = [self.settings.journalctl, "-k", "-o", "json", "--no-pager"]
        command += [] if self.once else ["-f"]  # once: to the end (-k is this boot)
        cursor = self.saved.get("cursor")
        if cursor:
            command.append(f"--after-cursor={cursor}")
        elif not self.once:
            command.append("--lines=0")
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert child.stdout is not None
        stream = self._stream()
        pending = b""
        held = HeldPositions(cursor)
        grew = time.monotonic()
        try:
            while not stop.is_set():
                ready, _, _ = select.select([child.stdout], [], [], 0.1)
                if not ready:
                    if stream.held and time.monotonic() - grew >= self.settings.quiet_s:
                        stream.flush()
                        self._deliver_journal(stream, held, deliver)
                    continue
                chunk = os.read(child.stdout.fileno(), 1 << 16)
                if not chunk and self.once and child.wait() == 0:
                    stream.flush()  # the journal's end: nothing more comes to continue a record
                    self._deliver_journal(stream, held, deliver)
                    return
                if not chunk:
                    raise RuntimeError(f"journalctl exited ({child.wait()})")
                pending += chunk
                complete, _, pending = pending.rpartition(b"\n")
                if not complete:
                    pending = complete + pending
                    continue
                for line in complete.split(b"\n"):
                    cursor = _journal_cursor(line) or cursor
                    held.fed(cursor)
                stream.feed(complete + b"\n")
                grew = time.monotonic()
                self._deliver_journal(stream, held, deliver)
        finally:
            child.terminate()
            child.wait(timeout=5)
            child.stdout.close()

    def _deliver_journal(self, stream: LineStream, held: HeldPositions, deliver: Deliver) -> None:
        cursor = held.read_up_to(stream.held)
        self.saved = {"cursor": cursor} if cursor else {}
        deliver(stream.ctx.take(), self.saved or None)


def _journal_cursor(line: bytes) -> str | None:
    """The ``__CURSOR`` of one journal JSON line (None where it has none or is bad)."""
    at = line.find(b'"__CURSOR"')
    if at < 0:
        return None
    try:
        entry = json.loads(line)
    except (ValueError, RecursionError):
        return None  # the reader counts a bad line
    cursor = entry.get("__CURSOR") if isinstance(entry, dict) else None
    return cursor if isinstance(cursor, str) else None

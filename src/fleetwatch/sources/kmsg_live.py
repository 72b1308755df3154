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
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from fleetwatch.events import BatchBuilder
from fleetwatch.sources.context import FileContext, Identities, ReadOptions, ReadStats
from fleetwatch.sources.live import Deliver
from fleetwatch.sources.stream import LineStream

BOOT_ID: Final = Path("/proc/sys/kernel/random/boot_id")
RECORD_BYTES: Final = 8192  # a read smaller than a record fails with EINVAL


@dataclass(frozen=True)
class KmsgSettings:
    """``[watch.kmsg]``: the kernel log of this node."""

    device: str = "/dev/kmsg"
    """The kernel's record device."""
    journalctl: str = "journalctl"
    """The journalctl program, used when the device cannot be read."""


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
    message = rest.split(b"\n", 1)[0].decode("utf-8", "replace")  # not the KEY=value lines
    return sequence, micros / 1e6, message


class KmsgSource:
    """Reads the kernel log as it is written."""

    def __init__(self, settings: KmsgSettings, node: str, options: ReadOptions, saved: Any) -> None:
        self.name = "kmsg"
        self.settings = settings
        self.node = node
        self.options = options
        self.stats = ReadStats()
        self.saved: dict[str, Any] = dict(saved or {})
        self.via = ""  # "device" or "journal", once running

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
        if not self.saved:  # first start: from now on
            try:
                os.lseek(fd, 0, os.SEEK_END)
            except OSError as exc:
                if exc.errno != errno.ESPIPE:  # a pipe in the device's place: nothing to skip
                    raise
        booted = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
        stream = self._stream()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        last = after
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
                record = kmsg_record(raw)
                if record is None:
                    self.stats.bad("kmsg", "not a kmsg record")
                    continue
                sequence, since_boot, message = record
                if sequence <= after:
                    continue  # read before the restart
                last = sequence
                stamp = datetime.fromtimestamp(booted + since_boot, UTC).isoformat()
                lines.append(f"{stamp} {self.node} kernel: [{since_boot:12.6f}] {message}\n")
            if lines:
                stream.feed("".join(lines).encode())
                self.saved = {"boot_id": boot, "seq": last}
                deliver(stream.ctx.take(), self.saved)

    # -- journalctl -k -f -------------------------------------------------------------

    def _journal(self, deliver: Deliver, stop: threading.Event) -> None:
        command = [self.settings.journalctl, "-k", "-f", "-o", "json", "--no-pager"]
        cursor = self.saved.get("cursor")
        command += [f"--after-cursor={cursor}"] if cursor else ["--lines=0"]
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert child.stdout is not None
        stream = self._stream()
        pending = b""
        try:
            while not stop.is_set():
                ready, _, _ = select.select([child.stdout], [], [], 0.1)
                if not ready:
                    continue
                chunk = os.read(child.stdout.fileno(), 1 << 16)
                if not chunk:
                    raise RuntimeError(f"journalctl exited ({child.wait()})")
                pending += chunk
                complete, _, pending = pending.rpartition(b"\n")
                if not complete:
                    pending = complete + pending
                    continue
                for line in complete.splitlines():
                    with contextlib.suppress(ValueError):  # the reader counts a bad line
                        cursor = json.loads(line).get("__CURSOR", cursor)
                stream.feed(complete + b"\n")
                self.saved = {"cursor": cursor} if cursor else {}
                deliver(stream.ctx.take(), self.saved or None)
        finally:
            child.terminate()
            child.wait(timeout=5)
            child.stdout.close()

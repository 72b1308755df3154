"""The JSONL output of watch mode: one transition a line, exactly once.

Each line is the finding's JSON (``Finding.to_json``) with ``transition`` (new,
escalated, resolved) and, when it was not announced, ``quiet`` (silenced, flapping).
Lines are written and fsynced before the store commits, and the store records how
many bytes of the file are committed. At start the file is cut back to that length:
lines written after the last commit (a crash came between) are dropped, and their
events are read again and write them once more. So no line is lost or doubled.
A write that fails (a full disk) is cut back at once, so no torn line stays, and so
is a write whose commit then failed (``cut``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fleetwatch.sinks.json_line import json_line


class TransitionLog:
    """An append-only JSONL file whose committed length the store keeps."""

    def __init__(self, path: Path, committed: int | None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.size = os.lseek(self._fd, 0, os.SEEK_END)
        if committed is not None and self.size > committed:
            self.cut(committed)  # written, but never committed

    def write(self, records: list[dict[str, Any]]) -> int:
        """Append and fsync ``records``; the file's new length (commit it).

        An ``OSError`` (no space) leaves the file as it was before the call.
        """
        if records:
            data = "".join(map(json_line, records))
            left = memoryview(data.encode())
            try:
                while left:  # unbuffered: a failure is this call's, a short write goes on
                    left = left[os.write(self._fd, left) :]
                os.fsync(self._fd)
            except OSError:
                self.cut(self.size)
                raise
            self.size = os.lseek(self._fd, 0, os.SEEK_END)
        return self.size

    def cut(self, size: int) -> None:
        """Take the file back to ``size`` bytes (what the store has committed)."""
        os.ftruncate(self._fd, size)
        self.size = size

    def close(self) -> None:
        os.close(self._fd)

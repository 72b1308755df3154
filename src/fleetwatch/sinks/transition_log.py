"""The JSONL output of watch mode: one transition a line, exactly once.

Each line is the finding's JSON (``Finding.to_json``) with ``transition`` (new,
escalated, resolved) and, when it was not announced, ``quiet`` (silenced, flapping).
Lines are written and fsynced before the store commits, and the store records how
many bytes of the file are committed. At start the file is cut back to that length:
lines written after the last commit (a crash came between) are dropped, and their
events are read again and write them once more. So no line is lost or doubled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class TransitionLog:
    """An append-only JSONL file whose committed length the store keeps."""

    def __init__(self, path: Path, committed: int | None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")
        size = self._file.tell()
        if committed is not None and size > committed:
            self._file.truncate(committed)  # written, but never committed
            self._file.seek(committed)
        self.size = self._file.tell()

    def write(self, records: list[dict[str, Any]]) -> int:
        """Append and fsync ``records``; the file's new length (commit it)."""
        if records:
            data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            self._file.write(data.encode())
            self._file.flush()
            os.fsync(self._file.fileno())
            self.size = self._file.tell()
        return self.size

    def close(self) -> None:
        self._file.close()

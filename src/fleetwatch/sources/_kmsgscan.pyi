"""Types of the compiled kernel-record loop (_kmsgscan.c; kmsg_compiled.py loads it)."""

from typing import Any

def configure(config: dict[str, Any], /) -> None: ...
def _allocate(n: int, /) -> None: ...

class Scanner:
    def __init__(self, ctx: Any, hooks: Any) -> None: ...
    def scan(
        self,
        buf: bytes,
        limit: int,
        hits: list[int],
        pos: int,
        counted: int,
        line: int,
        eof: bool,
        max_line: int,
        /,
    ) -> tuple[int, int, int, int, int] | None: ...
    def samples(
        self,
        buf: bytes,
        pos: int,
        limit: int,
        line: int,
        max_line: int,
        told: dict[str, Any],
        env_ts: float,
        env_clock: int,
        env_host: str | None,
        /,
    ) -> tuple[int, int, int] | None: ...

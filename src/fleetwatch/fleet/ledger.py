"""What the fleet remembers in Redis: shard leases, each shard's committed state, the
findings, the output stream of transitions, and the live workers.

Keys (``P`` is the prefix, ``fleetwatch`` by default)::

    P:lease:<shard>   the owner's token, with a time to live (SET NX PX)
    P:state:<shard>   JSON: committed offset, detector state per family, lifecycle
    P:findings        hash: finding id -> finding JSON (the latest version)
    P:out             stream of transitions (new, escalated, resolved)
    P:workers         sorted set: worker name -> its heartbeat's expiry (ms)
    P:refused         how many stale commits were refused
    P:bad             how many entries could not be decoded

A commit is one Lua script, so Redis runs it whole or not at all: it checks that the
caller still holds the shard's lease (a worker paused past its lease finds another
owner, or none, and is refused and counted), then writes the state with its offset,
upserts the findings by id and appends the transitions. Detector state and offset move
together, so an entry is applied exactly once however often it is delivered.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from typing import Any, Final

import redis

_COMMIT: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  redis.call('INCR', KEYS[5])
  return 0
end
redis.call('SET', KEYS[2], ARGV[2])
local n = tonumber(ARGV[3])
for i = 0, n - 1 do
  redis.call('HSET', KEYS[3], ARGV[4 + 2 * i], ARGV[5 + 2 * i])
end
for i = 4 + 2 * n, #ARGV do
  redis.call('XADD', KEYS[4], '*', 'transition', ARGV[i])
end
return 1
"""

_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def finding_row(transition: dict[str, Any]) -> dict[str, Any]:
    """The findings hash's row for a transition (JSON): the finding and its status."""
    row = {k: v for k, v in transition.items() if k not in ("transition", "quiet")}
    row["status"] = "resolved" if transition.get("transition") == "resolved" else "open"
    return row


class Ledger:
    """Leases, commits and findings of one fleet, in one Redis."""

    def __init__(self, client: redis.Redis, prefix: str = "fleetwatch") -> None:
        self.client: Any = client  # replies as Any: see ``transport.RedisStreams``
        self.prefix = prefix
        self._commit = client.register_script(_COMMIT)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def key(self, *parts: object) -> str:
        return ":".join([self.prefix, *(str(p) for p in parts)])

    # -- leases ------------------------------------------------------------------------

    @staticmethod
    def token(worker: str) -> str:
        """A lease token: the worker's name (for people) and a random part (for safety)."""
        return f"{worker}/{secrets.token_hex(8)}"

    def acquire(self, shard: int, token: str, lease_ms: int) -> bool:
        return bool(self.client.set(self.key("lease", shard), token, nx=True, px=lease_ms))

    def renew(self, shard: int, token: str, lease_ms: int) -> bool:
        return bool(self._renew(keys=[self.key("lease", shard)], args=[token, lease_ms]))

    def release(self, shard: int, token: str) -> None:
        self._release(keys=[self.key("lease", shard)], args=[token])

    def owner(self, shard: int) -> str | None:
        """The token holding ``shard`` now (None: free)."""
        raw = self.client.get(self.key("lease", shard))
        return None if raw is None else raw.decode()

    # -- workers -----------------------------------------------------------------------

    def heartbeat(self, worker: str, ttl_ms: int) -> int:
        """Say ``worker`` is alive for ``ttl_ms``; return how many workers are alive."""
        now = int(time.time() * 1000)
        pipe = self.client.pipeline()
        pipe.zremrangebyscore(self.key("workers"), "-inf", now)
        pipe.zadd(self.key("workers"), {worker: now + ttl_ms})
        pipe.zcard(self.key("workers"))
        return int(pipe.execute()[-1])

    def leave(self, worker: str) -> None:
        self.client.zrem(self.key("workers"), worker)

    # -- state and commits ---------------------------------------------------------------

    def load(self, shard: int) -> dict[str, Any] | None:
        """A shard's committed state (None: never committed); ``ValueError`` for a value
        that is not a JSON object."""
        raw = self.client.get(self.key("state", shard))
        if raw is None:
            return None
        try:
            state = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"state of shard {shard} is not JSON") from exc
        if not isinstance(state, dict):
            raise ValueError(f"state of shard {shard} is not a JSON object")
        return state

    def commit(
        self,
        shard: int,
        token: str,
        state: dict[str, Any],
        findings: Sequence[dict[str, Any]],
        transitions: Sequence[dict[str, Any]],
    ) -> bool:
        """Write it all if ``token`` still holds ``shard``; False (counted): refused."""
        args: list[str | int] = [token, json.dumps(state, separators=(",", ":")), len(findings)]
        for finding in findings:
            args += [finding["id"], json.dumps(finding, separators=(",", ":"))]
        args += [json.dumps(t, separators=(",", ":")) for t in transitions]
        keys = [
            self.key("lease", shard),
            self.key("state", shard),
            self.key("findings"),
            self.key("out"),
            self.key("refused"),
        ]
        return bool(self._commit(keys=keys, args=args))

    def tell(self, transitions: Sequence[dict[str, Any]]) -> None:
        """Record transitions made outside a shard (a live agent's node detectors): each
        finding's latest version by id, each transition on the output stream."""
        pipe = self.client.pipeline(transaction=True)
        for t in transitions:
            row = finding_row(t)
            pipe.hset(self.key("findings"), row["id"], json.dumps(row, separators=(",", ":")))
            pipe.xadd(self.key("out"), {"transition": json.dumps(t, separators=(",", ":"))})
        pipe.execute()

    def count_bad(self, n: int = 1) -> None:
        self.client.incrby(self.key("bad"), n)

    # -- reading the results --------------------------------------------------------------

    def findings(self) -> list[dict[str, Any]]:
        """Every finding the fleet has committed, latest version of each (a value that is
        not a JSON object, which no fleetwatch writes, is left out)."""
        rows = []
        for value in self.client.hgetall(self.key("findings")).values():
            try:
                row = json.loads(value)
            except (ValueError, RecursionError):
                continue
            if isinstance(row, dict):
                rows.append(row)
        return rows

    def transitions(self) -> list[dict[str, Any]]:
        """The output stream, oldest first (for tests and small fleets)."""
        return [
            json.loads(fields[b"transition"]) for _, fields in self.client.xrange(self.key("out"))
        ]

    def counter(self, name: str) -> int:
        raw = self.client.get(self.key(name))
        return 0 if raw is None else int(raw)

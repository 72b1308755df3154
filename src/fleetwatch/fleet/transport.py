"""The streams between agents and correlators: a small interface, and Redis Streams.

One stream per shard. An agent appends entries (``publish``); the one owner of a shard
reads them in order after the offset it last committed (``read``). The offset is kept
with the detector state in the owner's atomic commit (``ledger``), not in a consumer
group: with one owner per shard by lease, a group's pending list would be a second
record of progress, and a takeover would have to reconcile the two. Delivery is at
least once (a worker killed after reading reads again from its commit); the commit
makes the effect exactly once. ``trim`` drops what every owner has committed.

A Kafka backend fits the same interface: a shard is a partition, ``read`` is a seek to
the committed offset and a poll, ``publish`` is a keyed produce.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

BEGINNING = "0-0"
"""The offset before a stream's first entry."""


@dataclass(frozen=True)
class Entry:
    """One stream entry: its id (the offset) and its fields."""

    id: str
    fields: Mapping[bytes, bytes]


class Transport(Protocol):
    """What agents and correlators need of a stream engine."""

    def publish(self, items: Sequence[tuple[int, Mapping[str, bytes]]]) -> None:
        """Append each (shard, fields) entry, in order per shard."""
        ...

    def read(self, shards: Mapping[int, str], count: int, block_ms: int) -> dict[int, list[Entry]]:
        """Up to ``count`` entries per shard after its offset; wait up to ``block_ms``
        when there are none (0: do not wait)."""
        ...

    def last(self, shard: int) -> str:
        """The id of a shard's newest entry (``BEGINNING`` when empty)."""
        ...

    def trim(self, shard: int, upto: str) -> None:
        """Forget a shard's entries up to and including ``upto``."""
        ...


def stream_key(prefix: str, shard: int) -> str:
    return f"{prefix}:in:{shard}"


class RedisStreams:
    """``Transport`` on Redis Streams (XADD, XREAD, XTRIM)."""

    def __init__(self, client: redis.Redis, prefix: str = "fleetwatch") -> None:
        # redis-py's replies are typed as unions of every reply shape: read as Any here,
        # with the shapes these commands give (bytes, decode_responses off)
        self.client: Any = client
        self.prefix = prefix

    def publish(self, items: Sequence[tuple[int, Mapping[str, bytes]]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for shard, fields in items:
            pipe.xadd(stream_key(self.prefix, shard), dict(fields))
        pipe.execute()

    def read(self, shards: Mapping[int, str], count: int, block_ms: int) -> dict[int, list[Entry]]:
        if not shards:
            return {}
        streams = {stream_key(self.prefix, s): offset for s, offset in shards.items()}
        by_key = {stream_key(self.prefix, s): s for s in shards}
        replies = self.client.xread(streams, count=count, block=block_ms or None)
        out: dict[int, list[Entry]] = {}
        for key, entries in replies or []:
            name = key.decode() if isinstance(key, bytes) else key
            out[by_key[name]] = [
                Entry(i.decode() if isinstance(i, bytes) else i, fields) for i, fields in entries
            ]
        return out

    def last(self, shard: int) -> str:
        # the last id ever added, which trimming does not change
        try:
            info = self.client.xinfo_stream(stream_key(self.prefix, shard))
        except redis.ResponseError:  # no such stream: nothing was ever published to it
            return BEGINNING
        raw = info["last-generated-id"]
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    def trim(self, shard: int, upto: str) -> None:
        # exact, not "~": an approximate trim frees only whole nodes of 100 entries,
        # which a quiet shard may never fill
        ms, seq = (int(p) for p in upto.split("-"))
        key = stream_key(self.prefix, shard)
        self.client.xtrim(key, minid=f"{ms}-{seq + 1}", approximate=False)


def client_for(url: str, timeout_s: float = 10.0) -> redis.Redis:
    """A client for ``url`` that connects when first used and never retries by itself:
    its caller keeps what it sends and tries again with its own pause (redis-py's own
    retries would block a sender for seconds on every outage)."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=min(5.0, timeout_s),
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


def connect(url: str) -> redis.Redis:
    """A client for ``url`` (``redis://host:port/db``); checked with a PING."""
    # a read blocks for a third of a lease at most: 10 s is a Redis that hangs
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
    client.ping()
    return client


REDIS_DOWN: Final = (redis.ConnectionError, redis.TimeoutError)
"""What a Redis that is down, restarting or unreachable raises."""


class Outage:
    """Riding out a Redis that does not answer: a growing pause between tries, and a
    log line when it goes, at most one a minute while it stays away, and one when it
    answers again (not one per try)."""

    FIRST_PAUSE_S: Final = 0.1
    LAST_PAUSE_S: Final = 2.0
    REPEAT_S: Final = 60.0

    def __init__(self, who: str, logger: logging.Logger) -> None:
        self.who = who
        self.log = logger
        self.pause = self.FIRST_PAUSE_S
        self.since: float | None = None
        self._said = 0.0

    def failed(self, exc: Exception, stop: Callable[[], bool]) -> None:
        """Say so (now and then) and wait the pause out, or until ``stop()``."""
        now = time.monotonic()
        if self.since is None or now - self._said >= self.REPEAT_S:
            gone = "" if self.since is None else f" for {now - self.since:.0f} s"
            self.log.warning("%s: redis unavailable%s (%s); retrying", self.who, gone, exc)
            self._said = now
        if self.since is None:
            self.since = now
        deadline = now + self.pause
        while not stop() and time.monotonic() < deadline:
            time.sleep(0.05)  # nothing to wait on: Redis is what is down
        self.pause = min(self.pause * 2, self.LAST_PAUSE_S)

    def answered(self) -> None:
        """Redis answered: say so if it had not, and start the pauses over."""
        if self.since is not None:
            self.log.warning(
                "%s: redis answers again (after %.0f s)", self.who, time.monotonic() - self.since
            )
        self.since = None
        self.pause = self.FIRST_PAUSE_S

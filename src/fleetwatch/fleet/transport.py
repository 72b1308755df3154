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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

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

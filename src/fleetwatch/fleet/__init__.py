"""Fleet mode: node agents publish event batches to sharded streams; correlators own
shards by lease and commit detector state, offsets, findings and transitions together.

One concept per module, in the order data flows:

* ``codec``: an ``EventBatch`` as the bytes of one stream entry, and back;
* ``shards``: which shard an event goes to (the routing table, with its reasons);
* ``thin``: samples a family needs only for their labels, sent when they change;
* ``transport``: the small stream interface, and its Redis Streams backend;
* ``uplink``: a live agent's sends, kept in its store until Redis has them;
* ``agent``: a live agent (a watch of the node family, the rest by its uplink), or
  finished files published to their shards;
* ``ledger``: leases, the one-script commit, findings and transitions in Redis;
* ``correlate``: a worker that leases shards, runs an engine per shard, commits
  atomically per read.

And to run it on one machine: ``local`` (a throwaway loopback ``redis-server``),
``demo`` (``make fleet-demo``) and ``check`` (``make fleet-check``).
"""

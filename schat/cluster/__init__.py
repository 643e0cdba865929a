"""Several server processes as one chat: the bus between them and what travels on it.

A cluster is server processes (nodes) sharing one PostgreSQL store and one
Redis bus. Each node runs the whole chat domain for its own sessions; what one
node's domain publishes (:class:`schat.chat.fanout.Fanout`) goes to its own
sessions and over the bus to the others (:mod:`schat.cluster.node`), which
apply it to their copy of the rooms (:mod:`schat.chat.replica`) and deliver it
to theirs. docs/CLUSTER.md describes the whole; the modules:

| module | holds |
|---|---|
| ``ids`` | message ids and login tokens every node makes alone, unique and in time order |
| ``codec`` | the compact bus messages (origin node, sequence per channel) |
| ``bus`` | Redis pub/sub on the event loop: batching, reconnecting |
| ``node`` | the glue: the Fanout, takeover, admin actions, DMs |
| ``presence`` | who is online on the other nodes, heartbeats and the lease, rosters |
| ``catchup`` | what a node reads from the store when the bus cannot tell it: a room's recent history, what it missed during an outage, rooms' state, mail |
| ``settings`` | ``ClusterSettings`` (``--bus``, the presence lease) |
"""

from schat.cluster.settings import ClusterSettings

__all__ = ["ClusterSettings"]

"""A node's cluster settings (the ``schat serve`` options that make it one)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

# Seconds a node may stay silent on the bus before the others count it gone and
# drop its members from presence (its heartbeat comes four times per lease).
PRESENCE_LEASE = 10.0
MIN_LEASE, MAX_LEASE = 1.0, 600.0


def new_node_id() -> str:
    return secrets.token_hex(4)


@dataclass
class ClusterSettings:
    """``bus``: the Redis URL; ``lease``: the presence lease in seconds; ``node``: this
    process's id on the bus (random per start); ``control``: whether this process
    serves the data home's control socket (one worker of ``--workers`` does);
    ``reuse_port``: listen with SO_REUSEPORT beside the other workers."""

    bus: str
    lease: float = PRESENCE_LEASE
    node: str = field(default_factory=new_node_id)
    control: bool = True
    # Share the listening port with the other workers of `serve --workers` (SO_REUSEPORT).
    reuse_port: bool = False

    def __post_init__(self) -> None:
        if not MIN_LEASE <= self.lease <= MAX_LEASE:
            raise ValueError(f"the presence lease must be {MIN_LEASE:g} to {MAX_LEASE:g} s")

    @property
    def beat(self) -> float:
        """Seconds between heartbeats."""
        return self.lease / 4

"""The sans-I/O ``schat/1`` protocol (docs/PROTOCOL.md).

Importing the package loads :mod:`schat.protocol.registry`, which registers
every message type (chat and direct-message ones alike) before any is decoded.
"""

from schat.protocol import registry  # noqa: F401

"""The record layer: AES-256-OCB records with implicit sequence numbers.

Record on the wire: ``length (4, big-endian) ‖ ciphertext ‖ tag (16)``.
Nonce: the direction's 12-byte IV XOR the 64-bit sequence number (big-endian,
right-aligned); the sequence number is never sent, so a replayed, reordered or
dropped record fails its tag. Associated data: the 4-byte frame header.
"""

from __future__ import annotations

import logging

from schat.crypto import aead
from schat.errors import CryptoError, LocalProtocolError, RemoteProtocolError
from schat.protocol.framing import MAX_FRAME, pack_header

TAG_SIZE = aead.TAG_SIZE
NONCE_SIZE = aead.NONCE_SIZE
MAX_PAYLOAD = MAX_FRAME - TAG_SIZE
# Never wrap or approach OCB's limits: a direction stops after 2^24 records.
MAX_RECORDS = 2 ** 24

logger = logging.getLogger("schat.protocol")

_seal = aead.seal
_open = aead.open_


class SecureChannel:
    """Seal outgoing and open incoming records for one side of a connection.

    ``send_seq``/``recv_seq`` set the starting sequence numbers (0 in the
    protocol; other values exist to test the record limit).
    """

    __slots__ = ("_send_key", "_send_iv", "_recv_key", "_recv_iv", "send_seq", "recv_seq")

    def __init__(self, send_key: bytes, send_iv: bytes, recv_key: bytes, recv_iv: bytes,
                 send_seq: int = 0, recv_seq: int = 0):
        if len(send_key) != aead.KEY_SIZE or len(recv_key) != aead.KEY_SIZE:
            raise LocalProtocolError("record keys are 32 bytes")
        if len(send_iv) != NONCE_SIZE or len(recv_iv) != NONCE_SIZE:
            raise LocalProtocolError("record IVs are 12 bytes")
        self._send_key = bytes(send_key)
        self._send_iv = int.from_bytes(send_iv, "big")
        self._recv_key = bytes(recv_key)
        self._recv_iv = int.from_bytes(recv_iv, "big")
        self.send_seq = send_seq
        self.recv_seq = recv_seq

    def seal(self, payload: bytes) -> bytes:
        """One complete frame carrying ``payload`` (1..65,519 bytes)."""
        seq = self.send_seq
        if seq >= MAX_RECORDS:
            raise LocalProtocolError("record limit for this connection reached; reconnect")
        size = len(payload) + TAG_SIZE
        # An empty payload would make a record that open() refuses.
        if not TAG_SIZE < size <= MAX_FRAME:
            raise LocalProtocolError(f"record payload of {len(payload)} bytes is outside 1..{MAX_PAYLOAD}")
        header = pack_header(size)
        sealed = _seal(self._send_key, (self._send_iv ^ seq).to_bytes(NONCE_SIZE, "big"), payload, header)
        self.send_seq = seq + 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("record out seq=%d size=%d", seq, size)
        return header + sealed

    def open(self, header: bytes, body: bytes) -> bytes:
        """The payload of the next incoming record; RemoteProtocolError on any failure."""
        seq = self.recv_seq
        if seq >= MAX_RECORDS:
            raise RemoteProtocolError("peer exceeded the record limit for one connection")
        if len(body) <= TAG_SIZE:
            raise RemoteProtocolError("record too short")
        try:
            payload = _open(self._recv_key, (self._recv_iv ^ seq).to_bytes(NONCE_SIZE, "big"), body, header)
        except CryptoError:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("record in seq=%d size=%d: tag check FAILED", seq, len(body))
            raise RemoteProtocolError(
                "record failed authentication (tampered, replayed, reordered or dropped)"
            ) from None
        self.recv_seq = seq + 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("record in seq=%d size=%d", seq, len(body))
        return payload

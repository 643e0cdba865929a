"""The record layer: AES-256-OCB records with implicit sequence numbers.

Record on the wire: ``length (4, big-endian) ‖ ciphertext ‖ tag (16)``.
Nonce: the direction's 12-byte IV XOR the 64-bit sequence number (big-endian,
right-aligned); the sequence number is never sent, so a replayed, reordered or
dropped record fails its tag. Associated data: the 4-byte frame header.
"""

from __future__ import annotations

import logging

from Crypto.Cipher import AES

from schat.errors import LocalProtocolError, RemoteProtocolError
from schat.protocol.framing import MAX_FRAME, pack_header

TAG_SIZE = 16
NONCE_SIZE = 12
MAX_PAYLOAD = MAX_FRAME - TAG_SIZE
# Never wrap or approach OCB's limits: a direction stops after 2^24 records.
MAX_RECORDS = 2 ** 24

logger = logging.getLogger("schat.protocol")

_new = AES.new
_OCB = AES.MODE_OCB


class SecureChannel:
    """Seal outgoing and open incoming records for one side of a connection.

    ``send_seq``/``recv_seq`` set the starting sequence numbers (0 in the
    protocol; other values exist to test the record limit).
    """

    __slots__ = ("_send_key", "_send_iv", "_recv_key", "_recv_iv", "send_seq", "recv_seq")

    def __init__(self, send_key: bytes, send_iv: bytes, recv_key: bytes, recv_iv: bytes,
                 send_seq: int = 0, recv_seq: int = 0):
        if len(send_key) != 32 or len(recv_key) != 32:
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
        if size > MAX_FRAME:
            raise LocalProtocolError(f"record payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
        header = pack_header(size)
        cipher = _new(self._send_key, _OCB, nonce=(self._send_iv ^ seq).to_bytes(NONCE_SIZE, "big"))
        cipher.update(header)
        ciphertext, tag = cipher.encrypt_and_digest(payload)
        self.send_seq = seq + 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("record out seq=%d size=%d", seq, size)
        return header + ciphertext + tag

    def open(self, header: bytes, body: bytes) -> bytes:
        """The payload of the next incoming record; RemoteProtocolError on any failure."""
        seq = self.recv_seq
        if seq >= MAX_RECORDS:
            raise RemoteProtocolError("peer exceeded the record limit for one connection")
        if len(body) <= TAG_SIZE:
            raise RemoteProtocolError("record too short")
        cipher = _new(self._recv_key, _OCB, nonce=(self._recv_iv ^ seq).to_bytes(NONCE_SIZE, "big"))
        cipher.update(header)
        try:
            payload = cipher.decrypt_and_verify(body[:-TAG_SIZE], body[-TAG_SIZE:])
        except ValueError:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("record in seq=%d size=%d: tag check FAILED", seq, len(body))
            raise RemoteProtocolError(
                "record failed authentication (tampered, replayed, reordered or dropped)"
            ) from None
        self.recv_seq = seq + 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("record in seq=%d size=%d", seq, len(body))
        return payload

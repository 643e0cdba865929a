"""The record layer: AES-256-OCB records with implicit sequence numbers.

Record on the wire: ``length (4, big-endian) ‖ ciphertext ‖ tag (16)``.
Nonce: the direction's 12-byte IV XOR the 64-bit sequence number (big-endian,
right-aligned); the sequence number is never sent, so a replayed, reordered or
dropped record fails its tag. Associated data: the 4-byte frame header.

This is the server's hot path (one record per recipient per flush): a busy
channel keeps its OCB key objects and reuses them, so a record costs one C call
for the cipher and a few operations around it. An OpenSSL key object holds
about 2.6 KiB and most of a server's members are idle: the sending one is kept
once the channel has sealed LAZY_SEAL_RECORDS records within SEAL_WINDOW
seconds, the receiving one once the peer has sent LAZY_OPEN_RECORDS records;
before that each record gets a one-shot key object (about 2 µs more), and
:meth:`SecureChannel.trim` drops them again from a channel that fell idle. Debug
logging of records is decided once, when the channel is made: with debug on,
the channel is a :class:`LoggingChannel`, so a record never asks the logger.
"""

from __future__ import annotations

import logging
from time import monotonic

from schat.crypto import aead
from schat.crypto import backend as crypto_backend
from schat.errors import CryptoError, LocalProtocolError, RemoteProtocolError
from schat.protocol.framing import MAX_FRAME, pack_header

TAG_SIZE = aead.TAG_SIZE
NONCE_SIZE = aead.NONCE_SIZE
MAX_PAYLOAD = MAX_FRAME - TAG_SIZE
# Never wrap or approach OCB's limits: a direction stops after 2^24 records.
MAX_RECORDS = 2 ** 24
# Records a peer sends before its channel keeps a receiving key object.
LAZY_OPEN_RECORDS = 8
# Records sealed within SEAL_WINDOW seconds before the channel keeps a sending key object.
LAZY_SEAL_RECORDS = 8
SEAL_WINDOW = 1.0
_NEVER = float("-inf")

logger = logging.getLogger("schat.protocol")


class SecureChannel:
    """Seal outgoing and open incoming records for one side of a connection.

    ``send_seq``/``recv_seq`` set the starting sequence numbers (0 in the
    protocol; other values exist to test the record limit). ``backend`` picks
    the library (:mod:`schat.crypto.backend`; default OpenSSL). Made while
    the ``schat.protocol`` logger is at DEBUG, the object is a
    :class:`LoggingChannel`.
    """

    __slots__ = ("_send_key", "_send_iv", "_recv_key", "_recv_iv", "send_seq", "recv_seq",
                 "_backend", "_seal", "_open", "_seal_mark", "_seal_since", "_open_mark",
                 "_trim_sent", "_trim_received")

    def __new__(cls, *args, **kwargs):
        if cls is SecureChannel and logger.isEnabledFor(logging.DEBUG):
            cls = LoggingChannel
        return object.__new__(cls)

    def __init__(self, send_key: bytes, send_iv: bytes, recv_key: bytes, recv_iv: bytes,
                 send_seq: int = 0, recv_seq: int = 0, backend=None):
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
        self._backend = crypto_backend.get(backend).NAME
        # The kept key objects' methods (None: one-shot key objects for now), and the
        # sequence numbers (and time) their counts start from.
        self._seal = None
        self._open = None
        self._seal_mark = send_seq
        self._seal_since = _NEVER
        self._open_mark = recv_seq
        # send_seq and recv_seq at the last trim().
        self._trim_sent = send_seq
        self._trim_received = recv_seq

    def __deepcopy__(self, memo) -> "SecureChannel":
        # Key objects of a C library do not copy: a copy makes its own.
        return type(self)(self._send_key, self._send_iv.to_bytes(NONCE_SIZE, "big"), self._recv_key,
                          self._recv_iv.to_bytes(NONCE_SIZE, "big"), self.send_seq, self.recv_seq,
                          self._backend)

    @property
    def backend(self) -> str:
        """The name of the crypto backend sealing and opening this channel's records."""
        return self._backend

    def seal(self, payload: bytes) -> bytes:
        """One complete frame carrying ``payload`` (1..65,519 bytes)."""
        seq = self.send_seq
        size = len(payload) + TAG_SIZE
        # An empty payload would make a record that open() refuses.
        if seq >= MAX_RECORDS or not TAG_SIZE < size <= MAX_FRAME:
            raise self._refusal(seq, len(payload))
        header = pack_header(size)
        self.send_seq = seq + 1
        sealer = self._seal or self._sealer(seq)
        return header + sealer((self._send_iv ^ seq).to_bytes(12, "big"), payload, header)

    def _sealer(self, seq: int):
        """The sending key object's ``seal``: one-shot, or kept once the channel is busy
        (LAZY_SEAL_RECORDS records within SEAL_WINDOW seconds)."""
        sealer = aead.key(self._send_key, self._backend).seal
        now = monotonic()
        if now - self._seal_since > SEAL_WINDOW:
            self._seal_since, self._seal_mark = now, seq
        elif seq - self._seal_mark >= LAZY_SEAL_RECORDS:
            self._seal = sealer
        return sealer

    def _opener(self, seq: int):
        """The receiving key object's ``open``: one-shot for the first records, then kept."""
        opener = aead.key(self._recv_key, self._backend).open
        if seq - self._open_mark >= LAZY_OPEN_RECORDS:
            self._open = opener
        return opener

    def trim(self) -> None:
        """Drop the kept key objects of a direction that carried no record since the last
        call (a server calls it for every connection now and then): an idle member
        costs no key object; a busy one makes it again after a few records."""
        if self.send_seq == self._trim_sent and self._seal is not None:
            self._seal = None
            self._seal_since = _NEVER
        if self.recv_seq == self._trim_received and self._open is not None:
            self._open = None
            self._open_mark = self.recv_seq
        self._trim_sent = self.send_seq
        self._trim_received = self.recv_seq

    @staticmethod
    def _refusal(seq: int, size: int) -> LocalProtocolError:
        if seq >= MAX_RECORDS:
            return LocalProtocolError("record limit for this connection reached; reconnect")
        return LocalProtocolError(f"record payload of {size} bytes is outside 1..{MAX_PAYLOAD}")

    def open(self, header: bytes, body: bytes) -> bytes:
        """The payload of the next incoming record; RemoteProtocolError on any failure."""
        seq = self.recv_seq
        if seq >= MAX_RECORDS:
            raise RemoteProtocolError("peer exceeded the record limit for one connection",
                                      code="bad_record")
        if len(body) <= TAG_SIZE:
            raise RemoteProtocolError("record too short", code="bad_record")
        opener = self._open or self._opener(seq)
        try:
            payload = opener((self._recv_iv ^ seq).to_bytes(NONCE_SIZE, "big"), body, header)
        except CryptoError:
            raise RemoteProtocolError(
                "record failed authentication (tampered, replayed, reordered or dropped)",
                code="bad_record") from None
        self.recv_seq = seq + 1
        return payload


class LoggingChannel(SecureChannel):
    """A :class:`SecureChannel` that logs each record's sequence number and size
    (never its content) at DEBUG."""

    __slots__ = ()

    def seal(self, payload: bytes) -> bytes:
        seq = self.send_seq
        record = SecureChannel.seal(self, payload)
        logger.debug("record out seq=%d size=%d", seq, len(record) - 4)
        return record

    def open(self, header: bytes, body: bytes) -> bytes:
        seq = self.recv_seq
        try:
            payload = SecureChannel.open(self, header, body)
        except RemoteProtocolError:
            logger.debug("record in seq=%d size=%d: tag check FAILED", seq, len(body))
            raise
        logger.debug("record in seq=%d size=%d", seq, len(body))
        return payload

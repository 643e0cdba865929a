"""``schat/1`` framing: a 4-byte big-endian length, then that many body bytes.

A length of 0 or above :data:`MAX_FRAME` is a protocol error, raised as soon
as the 4 header bytes are in, before anything is allocated for the body.
"""

from __future__ import annotations

import struct
from typing import Optional, Tuple

from schat.errors import LocalProtocolError, RemoteProtocolError

HEADER_SIZE = 4
MAX_FRAME = 65_535
# Unprocessed input a peer may pile up while the application is not draining
# events (e.g. during the server's RSA step); beyond this it is flooding us.
MAX_BUFFERED = 1 << 20

_HEADER = struct.Struct(">I")
pack_header = _HEADER.pack


def frame(body: bytes) -> bytes:
    """``body`` with its 4-byte length header."""
    if not 0 < len(body) <= MAX_FRAME:
        raise LocalProtocolError(f"frame body of {len(body)} bytes is outside 1..{MAX_FRAME}")
    return pack_header(len(body)) + body


class FrameDecoder:
    """Reassemble frames from a byte stream split anywhere."""

    __slots__ = ("_buf", "_eof")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._eof = False

    def feed(self, data: bytes) -> None:
        """Append received bytes; ``b""`` marks end of stream."""
        if not data:
            self._eof = True
            return
        if self._eof:
            raise LocalProtocolError("data received after end of stream")
        if len(self._buf) > MAX_BUFFERED:
            raise RemoteProtocolError("peer sent more data than it is allowed to have in flight",
                                      code="bad_frame")
        self._buf += data

    @property
    def eof(self) -> bool:
        """True once end of stream was fed."""
        return self._eof

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return len(self._buf)

    def next_frame(self) -> Optional[Tuple[bytes, bytes]]:
        """The next complete ``(header, body)``, or None when more data is needed.

        Raises RemoteProtocolError for an invalid length, or for a stream that
        ended inside a frame.
        """
        buf = self._buf
        if len(buf) < HEADER_SIZE:
            if self._eof and buf:
                raise RemoteProtocolError("connection closed in the middle of a frame header",
                                          code="bad_frame")
            return None
        (length,) = _HEADER.unpack_from(buf)
        if length == 0 or length > MAX_FRAME:
            raise RemoteProtocolError(f"invalid frame length {length} (allowed 1..{MAX_FRAME})",
                                      code="bad_frame")
        end = HEADER_SIZE + length
        if len(buf) < end:
            if self._eof:
                raise RemoteProtocolError("connection closed in the middle of a frame",
                                          code="bad_frame")
            return None
        header = bytes(buf[:HEADER_SIZE])
        body = bytes(buf[HEADER_SIZE:end])
        del buf[:end]
        return header, body

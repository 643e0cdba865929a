"""The ``schat/1`` handshake: ServerHello, ClientKeyExchange, key schedule, ServerFinished.

Byte layouts (all lengths big-endian; see docs/PROTOCOL.md):

ServerHello body       ``01 ‖ vlen(1) ‖ "schat/1" ‖ dlen(2) ‖ server RSA public key DER ‖
                       server X25519 public (32) ‖ server random (32)``
ClientKeyExchange body ``02 ‖ client X25519 public (32) ‖ client random (32) ‖
                       wlen(2) ‖ RSA-OAEP(server key, secret (32))``

``th = SHA-256(ServerHello frame ‖ ClientKeyExchange frame)`` (frames include
their 4-byte length headers); ``ikm = secret ‖ X25519``;
``HKDF-SHA256(ikm, salt=th, info="schat/1 keys", 120)`` → c2s key (32), c2s IV
(12), s2c key (32), s2c IV (12), finished key (32). ServerFinished is the first
server record; its payload is ``HMAC-SHA256(finished key, "schat/1 server finished" ‖ th)``.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field
from typing import Optional, Tuple

from schat.crypto import aead, dh, kdf, keys, pubkey
from schat.crypto import backend as crypto_backend
from schat.errors import CryptoError, KeyFileError, LocalProtocolError, RemoteProtocolError
from schat.protocol.framing import frame

VERSION = b"schat/1"
SERVER_HELLO = 0x01
CLIENT_KEY_EXCHANGE = 0x02
RANDOM_SIZE = 32
SECRET_SIZE = 32
KEY_INFO = b"schat/1 keys"
FINISHED_LABEL = b"schat/1 server finished"
_RECORD_KEY = aead.KEY_SIZE
_RECORD_IV = aead.NONCE_SIZE
_FINISHED_KEY = kdf.DIGEST_SIZE
KEY_MATERIAL = 2 * (_RECORD_KEY + _RECORD_IV) + _FINISHED_KEY
# ClientKeyExchange body offsets: type, X25519 public, client random, wlen, wrapped secret.
_CKE_EPH = 1
_CKE_RANDOM = _CKE_EPH + dh.KEY_SIZE
_CKE_WLEN = _CKE_RANDOM + RANDOM_SIZE
_CKE_WRAPPED = _CKE_WLEN + 2

logger = logging.getLogger("schat.protocol")


@dataclass(frozen=True)
class SessionKeys:
    """Everything HKDF derives for one session (never logged: repr hides it)."""

    c2s_key: bytes = field(repr=False)
    c2s_iv: bytes = field(repr=False)
    s2c_key: bytes = field(repr=False)
    s2c_iv: bytes = field(repr=False)
    finished_key: bytes = field(repr=False)


def derive_keys(secret: bytes, shared: bytes, transcript_hash: bytes, backend=None) -> SessionKeys:
    """The key schedule: HKDF-SHA256(secret ‖ X25519, salt=th, info=KEY_INFO)."""
    okm = kdf.hkdf_sha256(secret + shared, transcript_hash, KEY_INFO, KEY_MATERIAL, backend=backend)
    parts = []
    pos = 0
    for size in (_RECORD_KEY, _RECORD_IV, _RECORD_KEY, _RECORD_IV, _FINISHED_KEY):
        parts.append(okm[pos:pos + size])
        pos += size
    return SessionKeys(*parts)


def finished_mac(session: SessionKeys, transcript_hash: bytes, backend=None) -> bytes:
    """The ServerFinished payload: proof that the server derived the same keys."""
    return kdf.hmac_sha256(session.finished_key, FINISHED_LABEL + transcript_hash, backend=backend)


# The host key's DER encoding, memoised for the last key seen: encoding it costs
# about 0.1 ms, and a server would otherwise pay that on its event loop for every
# connection. Keyed by identity; a tuple swap is atomic across threads.
_host_der: Tuple[Optional[keys.RsaKey], bytes] = (None, b"")


def host_key_der(host_key: keys.RsaKey) -> bytes:
    """DER of the host key's public part (memoised for the key last asked about)."""
    global _host_der
    cached, der = _host_der
    if cached is not host_key:
        der = keys.public_der(host_key)
        _host_der = (host_key, der)
    return der


class ServerHandshake:
    """Server side: builds the ServerHello at once, then takes the ClientKeyExchange.

    ``backend`` (a name or module from :mod:`schat.crypto.backend`; default
    OpenSSL) computes X25519, the OAEP unwrap, the hashes and HKDF.
    """

    def __init__(self, host_key: keys.RsaKey, randfunc: keys.RandFunc = None, backend=None):
        if not host_key.has_private():
            raise LocalProtocolError("the server needs the private part of its host key")
        be = crypto_backend.get(backend)
        self._be = be.NAME  # a name, so that a handshake object can be copied
        # The host key in the backend's form: converted on the first handshake
        # (the server builds one at start-up), kept on the key object after that.
        be.prepare_private(host_key)
        self._rand = randfunc or crypto_backend.random_bytes
        self._host_key = host_key
        self._eph = dh.generate(self._rand, be)
        self.server_random = self._rand(RANDOM_SIZE)
        der = host_key_der(host_key)
        body = (bytes([SERVER_HELLO, len(VERSION)]) + VERSION + struct.pack(">H", len(der)) + der
                + dh.public_bytes(self._eph, be) + self.server_random)
        self.server_hello = frame(body)
        self._modulus_bytes = (host_key.size_in_bits() + 7) // 8
        self._peer_eph = None
        self._wrapped = b""
        self._transcript_hash = b""
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("handshake: ServerHello %d bytes, host key %s",
                         len(self.server_hello), keys.fingerprint(der))

    def receive_key_exchange(self, header: bytes, body: bytes) -> None:
        """Parse and check the ClientKeyExchange (cheap); the heavy part is :meth:`complete`."""
        if not body or body[0] != CLIENT_KEY_EXCHANGE:
            raise RemoteProtocolError("expected ClientKeyExchange")
        if len(body) < _CKE_WRAPPED:
            raise RemoteProtocolError("ClientKeyExchange too short")
        (wlen,) = struct.unpack_from(">H", body, _CKE_WLEN)
        if wlen != self._modulus_bytes or len(body) != _CKE_WRAPPED + wlen:
            raise RemoteProtocolError("ClientKeyExchange has a malformed wrapped secret")
        try:
            self._peer_eph = dh.import_public(body[_CKE_EPH:_CKE_RANDOM], self._be)
        except CryptoError as exc:
            raise RemoteProtocolError(f"ClientKeyExchange: {exc}") from None
        self._wrapped = body[_CKE_WRAPPED:]
        self._transcript_hash = kdf.sha256(self.server_hello, header, body, backend=self._be)
        logger.debug("handshake: ClientKeyExchange %d bytes accepted", len(body))

    def complete(self) -> SessionKeys:
        """RSA-OAEP unwrap, X25519, HKDF. A secret that fails to unwrap is replaced
        by a random one (implicit rejection): the client then fails key
        confirmation exactly as with a wrong server key, and learns nothing more.
        The random secret is drawn for every handshake, before the unwrap, and
        every ciphertext gets the private-key operation (pubkey.oaep_unwrap_or),
        so a valid and an invalid one take the same path but for one caught
        exception (docs/SECURITY.md has the measured difference)."""
        if self._peer_eph is None:
            raise LocalProtocolError("complete() before a ClientKeyExchange was received")
        be = crypto_backend.get(self._be)
        fallback = self._rand(SECRET_SIZE)
        secret = pubkey.oaep_unwrap_or(self._host_key, self._wrapped, SECRET_SIZE, fallback, be)
        try:
            shared = dh.shared_secret(self._eph, self._peer_eph, be)
        except CryptoError as exc:
            raise RemoteProtocolError(f"key exchange failed: {exc}") from None
        self._eph = None  # forward secrecy: drop the ephemeral key as soon as it is used
        return derive_keys(secret, shared, self._transcript_hash, be)

    @property
    def backend(self) -> str:
        """The name of the crypto backend this handshake computes with."""
        return self._be

    @property
    def transcript_hash(self) -> bytes:
        return self._transcript_hash


class ClientHandshake:
    """Client side: parses the ServerHello, then builds the ClientKeyExchange."""

    def __init__(self, randfunc: keys.RandFunc = None, backend=None):
        self._be = crypto_backend.get(backend).NAME
        # A caller's random source (test vectors) also fixes the OAEP seed.
        self._fixed_rand = randfunc
        self._rand = randfunc or crypto_backend.random_bytes
        self._server_hello = b""
        self._server_key: Optional[keys.RsaKey] = None
        self._server_eph = None
        self.server_key_der = b""
        self.fingerprint = ""
        self._transcript_hash = b""

    def receive_server_hello(self, header: bytes, body: bytes) -> None:
        """Parse and check the ServerHello; sets ``server_key_der`` and ``fingerprint``."""
        if not body or body[0] != SERVER_HELLO:
            raise RemoteProtocolError("expected ServerHello")
        if len(body) < 2:
            raise RemoteProtocolError("ServerHello too short")
        vlen = body[1]
        version = body[2:2 + vlen]
        if version != VERSION:
            shown = version.decode("ascii", "replace")[:32]
            raise RemoteProtocolError(f"server speaks protocol {shown!r}, we speak schat/1")
        pos = 2 + vlen
        if len(body) < pos + 2:
            raise RemoteProtocolError("ServerHello too short")
        (dlen,) = struct.unpack_from(">H", body, pos)
        pos += 2
        if len(body) != pos + dlen + dh.KEY_SIZE + RANDOM_SIZE:
            raise RemoteProtocolError("ServerHello has the wrong length")
        der = body[pos:pos + dlen]
        try:
            server_key = keys.import_public_key(der)
        except KeyFileError as exc:
            raise RemoteProtocolError(f"ServerHello: {exc}") from None
        if keys.public_der(server_key) != der:
            raise RemoteProtocolError("ServerHello: server key is not in canonical DER form")
        try:
            self._server_eph = dh.import_public(body[pos + dlen:pos + dlen + dh.KEY_SIZE], self._be)
        except CryptoError as exc:
            raise RemoteProtocolError(f"ServerHello: {exc}") from None
        self._server_key = server_key
        self._server_hello = header + body
        self.server_key_der = bytes(der)
        self.fingerprint = keys.fingerprint(der)
        logger.debug("handshake: ServerHello from host key %s", self.fingerprint)

    def key_exchange(self) -> "tuple[bytes, SessionKeys]":
        """The ClientKeyExchange frame and the session keys derived with it."""
        if self._server_key is None or self._server_eph is None:
            raise LocalProtocolError("key exchange before a ServerHello was received")
        be = crypto_backend.get(self._be)
        eph = dh.generate(self._rand, be)
        client_random = self._rand(RANDOM_SIZE)
        secret = self._rand(SECRET_SIZE)
        wrapped = pubkey.oaep_wrap(self._server_key, secret, randfunc=self._fixed_rand, backend=be)
        body = (bytes([CLIENT_KEY_EXCHANGE]) + dh.public_bytes(eph, be) + client_random
                + struct.pack(">H", len(wrapped)) + wrapped)
        cke = frame(body)
        try:
            shared = dh.shared_secret(eph, self._server_eph, be)
        except CryptoError as exc:
            raise RemoteProtocolError(f"key exchange failed: {exc}") from None
        self._transcript_hash = kdf.sha256(self._server_hello, cke, backend=be)
        logger.debug("handshake: ClientKeyExchange %d bytes sent", len(cke))
        return cke, derive_keys(secret, shared, self._transcript_hash, be)

    @property
    def backend(self) -> str:
        """The name of the crypto backend this handshake computes with."""
        return self._be

    @property
    def transcript_hash(self) -> bytes:
        return self._transcript_hash

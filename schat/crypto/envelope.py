"""End-to-end encrypted direct-message envelopes (pure: bytes in, bytes out).

A direct message is sealed by its sender's client and opened by its
recipient's client; the server only stores and forwards the envelope bytes.

* The text is encrypted with AES-256-OCB under a fresh random key; the
  associated data binds the header (sender, recipient, time, id, key
  fingerprint, key commitment), so a ciphertext cannot be moved into another
  header.
* That content key is wrapped with RSA-OAEP (SHA-256) for the recipient's key
  and for the sender's own key, so the sender can read their sent messages.
* The header carries a commitment to the content key (SHA-256 over a context
  string and the key) that every reader checks after unwrapping: OCB is not
  key-committing, so without it a sender could wrap different keys for the
  two readers of one signed envelope, each opening the ciphertext to another
  text. With it, every reader who accepts an envelope holds the same key, and
  so reads the same text.
* The whole envelope (everything but the signature) is signed with RSA-PSS
  (SHA-256) by the sender, over a context string followed by the canonical
  encoding, which is the wire encoding itself: every variable-length field is
  length-prefixed, so one byte string has exactly one reading. Names are signed
  in their canonical form (:func:`schat.protocol.schema.name_key`).

Format 1 (no key commitment, names as typed) is parsed only when asked for
(``accept_old``): a client still opens the envelopes of that format stored
before the change; a server stores no new one.

The byte layout is documented in docs/PROTOCOL.md ("End-to-end encrypted
direct messages"); :func:`encode` and :func:`parse` are its reference.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Optional, Tuple

from Crypto.Hash import SHA256
from Crypto.Random import get_random_bytes

from schat.crypto import aead, pubkey
from schat.crypto.kdf import constant_time_equal
from schat.crypto.keys import RandFunc, RsaKey, import_public_key, public_der
from schat.errors import CryptoError, KeyFileError
from schat.names import name_key

MAGIC = b"SCDM"
VERSION = 2
#: Format 1: no key commitment; read from mailboxes only (``parse(accept_old=True)``).
OLD_VERSION = 1
ID_SIZE = 16
FP_SIZE = 32
COMMIT_SIZE = 32
MAX_TEXT_BYTES = 4096
MAX_WRAPPED = 1024  # RSA-8192 at most; a 3072-bit key gives 384 bytes
MAX_SIGNATURE = 1024
# Domain separation: a DM signature can never be taken for a login signature
# (or any other PSS signature made with the same key), and vice versa.
SIGN_CONTEXT = b"schat/1 dm-envelope signature\x00"
AD_CONTEXT = b"schat/1 dm-envelope content\x00"
SAFETY_CONTEXT = b"schat/1 safety code\x00"
COMMIT_CONTEXT = b"schat/1 dm-envelope key commitment\x00"

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,32}\Z")


class EnvelopeError(CryptoError):
    """An envelope is malformed, was tampered with, or cannot be opened with this key."""


@dataclass(frozen=True)
class Wrap:
    """The content key wrapped for one reader: their name, key fingerprint and OAEP blob."""

    name: str
    key_fp: bytes
    wrapped: bytes


@dataclass(frozen=True)
class Envelope:
    """A parsed envelope. ``signed_part`` is exactly the bytes the signature covers;
    ``key_commitment`` is empty in format 1."""

    version: int
    sender: str
    recipient: str
    time_ms: int
    msg_id: bytes
    sender_fp: bytes
    wraps: Tuple[Wrap, ...]
    nonce: bytes
    ciphertext: bytes
    signature: bytes
    header: bytes
    signed_part: bytes
    key_commitment: bytes = b""

    @property
    def id_hex(self) -> str:
        """The message id as 32 lowercase hex digits (how it is shown and remembered)."""
        return self.msg_id.hex()


def key_fp(key_or_der) -> bytes:
    """Raw 32-byte SHA-256 of a public key's DER (what the envelope carries)."""
    der = key_or_der if isinstance(key_or_der, (bytes, bytearray)) else public_der(key_or_der)
    return SHA256.new(bytes(der)).digest()


def key_commitment(content_key: bytes) -> bytes:
    """SHA-256(context ‖ content key): what the signed header says the content key is."""
    return SHA256.new(COMMIT_CONTEXT + bytes(content_key)).digest()


def canonical_name(name: str) -> str:
    """``name`` as an envelope signs it (schema.name_key); EnvelopeError when invalid."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise EnvelopeError("a user name is 1-32 of A-Z a-z 0-9 _ . -")
    return name_key(name)


def _name(name: str) -> bytes:
    raw = canonical_name(name).encode("ascii")
    return bytes([len(raw)]) + raw


def _header(sender: str, recipient: str, time_ms: int, msg_id: bytes, sender_fp: bytes,
            commitment: bytes) -> bytes:
    if not 0 <= time_ms < 1 << 64:
        raise EnvelopeError("time out of range")
    if len(msg_id) != ID_SIZE or len(sender_fp) != FP_SIZE or len(commitment) != COMMIT_SIZE:
        raise EnvelopeError("bad message id, key fingerprint or commitment size")
    return (MAGIC + bytes([VERSION]) + _name(sender) + _name(recipient)
            + struct.pack(">Q", time_ms) + msg_id + sender_fp + commitment)


def seal(text: str, sender: str, sender_key: RsaKey, recipient: str, recipient_key: RsaKey,
         time_ms: int, msg_id: Optional[bytes] = None, randfunc: RandFunc = None) -> bytes:
    """Encrypt ``text`` from ``sender`` to ``recipient`` and sign it; returns envelope bytes.

    ``sender_key`` is the sender's private key, ``recipient_key`` the
    recipient's public key. ``randfunc`` (tests only: known-answer vectors)
    replaces the random source for the content key, nonce, id, OAEP and PSS.
    """
    rand = randfunc or get_random_bytes
    plaintext = text.encode("utf-8")
    if not 1 <= len(plaintext) <= MAX_TEXT_BYTES:
        raise EnvelopeError(f"a direct message is 1 to {MAX_TEXT_BYTES} bytes of text")
    if not sender_key.has_private():
        raise EnvelopeError("sealing needs the sender's private key")
    sender, recipient = canonical_name(sender), canonical_name(recipient)
    msg_id = msg_id if msg_id is not None else rand(ID_SIZE)
    sender_fp = key_fp(sender_key)
    content_key = rand(aead.KEY_SIZE)
    header = _header(sender, recipient, time_ms, msg_id, sender_fp, key_commitment(content_key))
    nonce = rand(aead.NONCE_SIZE)
    readers = [(recipient, recipient_key)]
    if recipient != sender:
        readers.append((sender, sender_key.public_key()))
    wraps = b"".join(
        _name(name) + key_fp(key) + _blob(pubkey.oaep_wrap(key, content_key, randfunc), 2)
        for name, key in readers
    )
    ciphertext = aead.seal(content_key, nonce, plaintext, AD_CONTEXT + header)
    signed = header + bytes([len(readers)]) + wraps + nonce + _blob(ciphertext, 4)
    signature = pubkey.pss_sign(sender_key, SIGN_CONTEXT + signed, randfunc)
    return signed + _blob(signature, 2)


def _blob(data: bytes, width: int) -> bytes:
    return (len(data).to_bytes(width, "big")) + data


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise EnvelopeError("envelope is truncated")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self, width: int) -> int:
        return int.from_bytes(self.take(width), "big")

    def name(self) -> str:
        raw = self.take(self.int(1))
        try:
            name = raw.decode("ascii")
        except UnicodeDecodeError:
            raise EnvelopeError("envelope holds an invalid user name") from None
        if not _NAME_RE.match(name):
            raise EnvelopeError("envelope holds an invalid user name")
        return name


def parse(data: bytes, accept_old: bool = False) -> Envelope:
    """Parse envelope bytes strictly (no signature check); raise EnvelopeError when malformed.

    Format 1 is refused unless ``accept_old`` (a client reading what was stored
    before format 2; a server never stores a new one).
    """
    if not isinstance(data, (bytes, bytearray)):
        raise EnvelopeError("envelope must be bytes")
    r = _Reader(bytes(data))
    if r.take(4) != MAGIC:
        raise EnvelopeError("not a direct-message envelope")
    version = r.int(1)
    if version == OLD_VERSION and not accept_old:
        raise EnvelopeError("envelope format 1 is no longer accepted (it does not commit to "
                            "one text for all its readers); update your schat client")
    if version not in (VERSION, OLD_VERSION):
        raise EnvelopeError(f"unsupported envelope version {version}")
    sender = r.name()
    recipient = r.name()
    if version >= 2 and (sender != name_key(sender) or recipient != name_key(recipient)):
        raise EnvelopeError("envelope names are not in canonical form (lower case)")
    time_ms = r.int(8)
    msg_id = r.take(ID_SIZE)
    sender_fp = r.take(FP_SIZE)
    commitment = r.take(COMMIT_SIZE) if version >= 2 else b""
    header = r.data[:r.pos]
    count = r.int(1)
    expected = 1 if name_key(sender) == name_key(recipient) else 2
    if count != expected:
        raise EnvelopeError("envelope must wrap its key for the recipient and the sender")
    wraps = []
    for _ in range(count):
        name = r.name()
        fp = r.take(FP_SIZE)
        size = r.int(2)
        if not 1 <= size <= MAX_WRAPPED:
            raise EnvelopeError("wrapped key has an invalid size")
        wraps.append(Wrap(name, fp, r.take(size)))
    if wraps[0].name != recipient or (count == 2 and wraps[1].name != sender):
        raise EnvelopeError("wrapped keys are not for the recipient and the sender")
    if count == 2 and wraps[1].key_fp != sender_fp:
        raise EnvelopeError("the sender's wrapped key is not for the signing key")
    nonce = r.take(aead.NONCE_SIZE)
    size = r.int(4)
    if not aead.TAG_SIZE + 1 <= size <= aead.TAG_SIZE + MAX_TEXT_BYTES:
        raise EnvelopeError("ciphertext has an invalid size")
    ciphertext = r.take(size)
    signed_part = r.data[:r.pos]
    size = r.int(2)
    if not 1 <= size <= MAX_SIGNATURE:
        raise EnvelopeError("signature has an invalid size")
    signature = r.take(size)
    if r.pos != len(r.data):
        raise EnvelopeError("trailing bytes after the envelope")
    return Envelope(version, sender, recipient, time_ms, msg_id, sender_fp, tuple(wraps),
                    nonce, ciphertext, signature, header, signed_part, commitment)


def verify(env: Envelope, sender_public: RsaKey) -> None:
    """Check that ``sender_public`` is the key named in ``env`` and that it signed ``env``.

    Raises EnvelopeError otherwise. Call before :func:`open_`.
    """
    if not constant_time_equal(key_fp(sender_public), env.sender_fp):
        raise EnvelopeError(f"envelope was signed with a different key than {env.sender}'s")
    if not pubkey.pss_verify(sender_public, SIGN_CONTEXT + env.signed_part, env.signature):
        raise EnvelopeError(f"signature check failed: not genuinely from {env.sender}")


def open_(env: Envelope, reader: str, reader_key: RsaKey) -> str:
    """Decrypt ``env`` for ``reader`` (its recipient or its sender) with their private key.

    Returns the text. Raises EnvelopeError when there is no wrapped key for
    this reader's key, when the unwrapped key is not the committed one, or when
    anything fails to decrypt or authenticate.
    """
    fp = key_fp(reader_key)
    wrap = next((w for w in env.wraps if name_key(w.name) == name_key(reader)), None)
    if wrap is None:
        raise EnvelopeError(f"this message is not addressed to {reader}")
    if not constant_time_equal(wrap.key_fp, fp):
        raise EnvelopeError("this message was encrypted to another key of yours")
    try:
        content_key = pubkey.oaep_unwrap(reader_key, wrap.wrapped)
    except CryptoError:
        raise EnvelopeError("could not unwrap the message key") from None
    if len(content_key) != aead.KEY_SIZE:
        raise EnvelopeError("could not unwrap the message key")
    if env.version >= 2 and not constant_time_equal(key_commitment(content_key),
                                                    env.key_commitment):
        # Another reader may hold another key that opens the ciphertext to another text.
        raise EnvelopeError("the message key is not the one the sender committed to")
    try:
        plaintext = aead.open_(content_key, env.nonce, env.ciphertext, AD_CONTEXT + env.header)
    except CryptoError:
        raise EnvelopeError("message failed its integrity check") from None
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise EnvelopeError("message text is not valid UTF-8") from None


def safety_code(der_a: bytes, der_b: bytes) -> str:
    """Order-independent safety code for two public keys: 6 groups of 5 digits.

    SHA-256 over a context string and the two DER keys (sorted, each with a
    2-byte length); each group is 5 digest bytes read big-endian, mod 100000.
    Both sides compute the same code; compare it in person or by phone.
    """
    first, second = sorted([bytes(der_a), bytes(der_b)])
    digest = SHA256.new(SAFETY_CONTEXT + _blob(first, 2) + _blob(second, 2)).digest()
    groups = [int.from_bytes(digest[i:i + 5], "big") % 100000 for i in range(0, 30, 5)]
    return " ".join(f"{g:05d}" for g in groups)


def public_key_from_der(der: bytes) -> RsaKey:
    """Import a contact's public key from DER, as an EnvelopeError when it is not one."""
    try:
        return import_public_key(der)
    except KeyFileError as err:
        raise EnvelopeError(f"invalid public key: {err}") from None

"""The direct-message envelope: round trip, tampering, wrong keys, safety codes."""

from __future__ import annotations

import hashlib
import struct

import pytest
from Crypto.Hash import SHA256

from schat.crypto import envelope as ev
from schat.crypto import pubkey
from schat.crypto.keys import public_der

T0 = 1_700_000_000_000


def _counter_rand():
    """A deterministic random source (known-answer vectors only)."""
    state = {"n": 0}

    def rand(n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += SHA256.new(b"schat test rng" + struct.pack(">Q", state["n"])).digest()
            state["n"] += 1
        return out[:n]

    return rand


@pytest.fixture(scope="module")
def sealed(user_keys):
    return ev.seal("meet at 6, bring the 🔑", "alice", user_keys["alice"], "bob",
                   user_keys["bob"].public_key(), T0)


def test_round_trip_recipient_and_sender(user_keys, sealed):
    env = ev.parse(sealed)
    assert (env.sender, env.recipient, env.time_ms) == ("alice", "bob", T0)
    assert len(env.msg_id) == 16 and len(env.id_hex) == 32
    ev.verify(env, user_keys["alice"].public_key())
    assert ev.open_(env, "bob", user_keys["bob"]) == "meet at 6, bring the 🔑"
    # The sender can read what they sent: the key is wrapped for them too.
    assert ev.open_(env, "alice", user_keys["alice"]) == "meet at 6, bring the 🔑"


def test_plaintext_not_in_envelope(user_keys):
    secret = "the vault code is 9431-ZEBRA"
    data = ev.seal(secret, "alice", user_keys["alice"], "bob", user_keys["bob"].public_key(), T0)
    assert secret.encode() not in data
    assert b"ZEBRA" not in data


def test_to_self_has_one_wrap(user_keys):
    env = ev.parse(ev.seal("note to self", "alice", user_keys["alice"], "alice",
                           user_keys["alice"].public_key(), T0))
    assert len(env.wraps) == 1
    ev.verify(env, user_keys["alice"].public_key())
    assert ev.open_(env, "alice", user_keys["alice"]) == "note to self"


def test_every_byte_tampered_is_rejected(user_keys, sealed):
    alice_pub = user_keys["alice"].public_key()
    for i in range(len(sealed)):
        bad = bytearray(sealed)
        bad[i] ^= 0x01
        with pytest.raises(ev.EnvelopeError):
            ev.verify(ev.parse(bytes(bad)), alice_pub)


def test_truncated_and_extended_rejected(sealed):
    for cut in (0, 3, 5, 40, len(sealed) // 2, len(sealed) - 1):
        with pytest.raises(ev.EnvelopeError):
            ev.parse(sealed[:cut])
    with pytest.raises(ev.EnvelopeError, match="trailing"):
        ev.parse(sealed + b"\x00")


def test_wrong_recipient_key_fails(user_keys, sealed):
    env = ev.parse(sealed)
    with pytest.raises(ev.EnvelopeError, match="another key"):
        ev.open_(env, "bob", user_keys["carol"])
    with pytest.raises(ev.EnvelopeError, match="not addressed"):
        ev.open_(env, "carol", user_keys["carol"])
    # Even with the fingerprint check out of the way, OAEP does not open for carol.
    forged_wrap = ev.Wrap("bob", ev.key_fp(user_keys["carol"]), env.wraps[0].wrapped)
    forged = ev.Envelope(**{**env.__dict__, "wraps": (forged_wrap, env.wraps[1])})
    with pytest.raises(ev.EnvelopeError, match="unwrap"):
        ev.open_(forged, "bob", user_keys["carol"])


def test_signature_by_another_key_rejected(user_keys, sealed):
    env = ev.parse(sealed)
    # carol re-signs alice's envelope: same bytes, her signature.
    resigned = env.signed_part + ev._blob(
        pubkey.pss_sign(user_keys["carol"], ev.SIGN_CONTEXT + env.signed_part), 2)
    with pytest.raises(ev.EnvelopeError, match="not genuinely"):
        ev.verify(ev.parse(resigned), user_keys["alice"].public_key())
    # ... and checking against carol's key fails on the key fingerprint.
    with pytest.raises(ev.EnvelopeError, match="different key"):
        ev.verify(ev.parse(resigned), user_keys["carol"].public_key())
    # A signature without the context string does not verify either.
    bare = env.signed_part + ev._blob(pubkey.pss_sign(user_keys["alice"], env.signed_part), 2)
    with pytest.raises(ev.EnvelopeError, match="not genuinely"):
        ev.verify(ev.parse(bare), user_keys["alice"].public_key())


def test_ciphertext_bound_to_header(user_keys, sealed):
    """carol lifts alice's ciphertext and bob's wrapped key into her own signed envelope."""
    env = ev.parse(sealed)
    carol = user_keys["carol"]
    header = ev._header("carol", "bob", env.time_ms, env.msg_id, ev.key_fp(carol),
                        env.key_commitment)
    wraps = (ev._name("bob") + env.wraps[0].key_fp + ev._blob(env.wraps[0].wrapped, 2)
             + ev._name("carol") + ev.key_fp(carol) + ev._blob(env.wraps[0].wrapped, 2))
    signed = header + b"\x02" + wraps + env.nonce + ev._blob(env.ciphertext, 4)
    data = signed + ev._blob(pubkey.pss_sign(carol, ev.SIGN_CONTEXT + signed), 2)
    stolen = ev.parse(data)
    ev.verify(stolen, carol.public_key())  # a valid signature by carol ...
    with pytest.raises(ev.EnvelopeError, match="integrity"):
        ev.open_(stolen, "bob", user_keys["bob"])  # ... but the header is bound by the AEAD


def test_bad_inputs(user_keys):
    alice, bob_pub = user_keys["alice"], user_keys["bob"].public_key()
    with pytest.raises(ev.EnvelopeError, match="1 to 4096"):
        ev.seal("", "alice", alice, "bob", bob_pub, T0)
    with pytest.raises(ev.EnvelopeError, match="1 to 4096"):
        ev.seal("x" * 4097, "alice", alice, "bob", bob_pub, T0)
    with pytest.raises(ev.EnvelopeError, match="user name"):
        ev.seal("hi", "al ice", alice, "bob", bob_pub, T0)
    with pytest.raises(ev.EnvelopeError, match="private key"):
        ev.seal("hi", "alice", alice.public_key(), "bob", bob_pub, T0)
    with pytest.raises(ev.EnvelopeError, match="not a direct-message"):
        ev.parse(b"HELLO WORLD, no envelope here")
    with pytest.raises(ev.EnvelopeError, match="version"):
        ev.parse(b"SCDM\x03" + b"\x00" * 100)
    with pytest.raises(ev.EnvelopeError, match="format 1 is no longer accepted"):
        ev.parse(b"SCDM\x01" + b"\x00" * 100)
    with pytest.raises(ev.EnvelopeError, match="invalid public key"):
        ev.public_key_from_der(b"\x30\x03\x02\x01\x01")


def test_known_answer_vector(user_keys):
    data = ev.seal("known answer", "alice", user_keys["alice"], "bob",
                   user_keys["bob"].public_key(), T0, randfunc=_counter_rand())
    env = ev.parse(data)
    assert env.id_hex == _counter_rand()(16).hex()
    assert len(data) == 1380  # 103 header + 1 + 846 wraps + 12 nonce + 32 + 386
    assert env.version == 2 and env.header[-32:] == env.key_commitment
    assert hashlib.sha256(data).hexdigest() == KAT_SHA256
    ev.verify(env, user_keys["alice"].public_key())
    assert ev.open_(env, "bob", user_keys["bob"]) == "known answer"


KAT_SHA256 = "0eea12dacd28c6e13731608d342974da3ff81a3f8645be6356a388bf1495e405"


def test_known_answer_vector_follows_the_documented_layout(user_keys):
    """The vector rebuilt with pycryptodome alone from docs/PROTOCOL.md (format 2),
    drawing the random values in the documented order: message id, content key,
    nonce, one OAEP seed per wrap (recipient first), the PSS salt."""
    from Crypto.Cipher import AES, PKCS1_OAEP
    from Crypto.Signature import pss

    alice, bob = user_keys["alice"], user_keys["bob"]
    rand = _counter_rand()
    msg_id, content_key, nonce = rand(16), rand(32), rand(12)

    def fp(key):
        return SHA256.new(public_der(key)).digest()

    def name(n):
        return bytes([len(n)]) + n

    header = (b"SCDM\x02" + name(b"alice") + name(b"bob") + T0.to_bytes(8, "big") + msg_id
              + fp(alice) + SHA256.new(b"schat/1 dm-envelope key commitment\x00"
                                       + content_key).digest())
    wraps = b""
    for who, key in ((b"bob", bob), (b"alice", alice)):
        wrapped = PKCS1_OAEP.new(key.public_key(), hashAlgo=SHA256,
                                 randfunc=rand).encrypt(content_key)
        wraps += name(who) + fp(key) + len(wrapped).to_bytes(2, "big") + wrapped
    cipher = AES.new(content_key, AES.MODE_OCB, nonce=nonce)
    cipher.update(b"schat/1 dm-envelope content\x00" + header)
    sealed = cipher.encrypt(b"known answer") + cipher.encrypt() + cipher.digest()
    signed = header + b"\x02" + wraps + nonce + len(sealed).to_bytes(4, "big") + sealed
    signature = pss.new(alice, rand_func=rand).sign(
        SHA256.new(b"schat/1 dm-envelope signature\x00" + signed))
    expected = signed + len(signature).to_bytes(2, "big") + signature
    assert hashlib.sha256(expected).hexdigest() == KAT_SHA256


def test_safety_code_is_symmetric_and_distinct(user_keys):
    a, b, c = (public_der(user_keys[n]) for n in ("alice", "bob", "carol"))
    code = ev.safety_code(a, b)
    assert code == ev.safety_code(b, a)
    assert code != ev.safety_code(a, c)
    groups = code.split(" ")
    assert len(groups) == 6 and all(len(g) == 5 and g.isdigit() for g in groups)
    # Known answer: recomputed from the documented rule.
    first, second = sorted([a, b])
    digest = hashlib.sha256(b"schat/1 safety code\x00" + len(first).to_bytes(2, "big") + first
                            + len(second).to_bytes(2, "big") + second).digest()
    expected = " ".join(f"{int.from_bytes(digest[i:i + 5], 'big') % 100000:05d}"
                        for i in range(0, 30, 5))
    assert code == expected

"""The stored known-answer vector is reproduced byte for byte from fixed randomness."""

from __future__ import annotations

import json

from schat.crypto import aead
from schat.protocol.handshake import FINISHED_LABEL
from schat.crypto import kdf

from kat import VECTOR, build


def test_vector_reproduced_byte_for_byte():
    stored = json.loads(VECTOR.read_text())
    assert build() == stored


def test_vector_records_follow_the_spec():
    """Decrypt the stored records with the stored keys, as a second implementation would."""
    v = {k: bytes.fromhex(x) for k, x in json.loads(VECTOR.read_text()).items()
         if k not in ("description", "server_rsa_key", "server_random_source", "client_random_source")}
    assert kdf.sha256(v["server_hello"], v["client_key_exchange"]) == v["transcript_hash"]

    def open_record(frame, key, iv, seq):
        nonce = (int.from_bytes(iv, "big") ^ seq).to_bytes(12, "big")
        assert int.from_bytes(frame[:4], "big") == len(frame) - 4
        return aead.open_(key, nonce, frame[4:], frame[:4])

    finished = open_record(v["server_finished"], v["s2c_key"], v["s2c_iv"], 0)
    assert finished == kdf.hmac_sha256(v["finished_key"], FINISHED_LABEL + v["transcript_hash"])
    assert open_record(v["server_record_1"], v["s2c_key"], v["s2c_iv"], 1) == v["server_record_1_plaintext"]
    assert open_record(v["client_record_0"], v["c2s_key"], v["c2s_iv"], 0) == v["client_record_0_plaintext"]

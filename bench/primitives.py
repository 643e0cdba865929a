"""What the primitives cost, per backend, beside what the record layer costs around them.

    python -m bench.primitives [--rounds N]     # prints one JSON object

Everything goes through schat.crypto (the benchmark, like every package but
schat/crypto, imports no crypto library itself). Timed in this process; run
it pinned to the server's CPU (bench.run does) so the figures compare with
the server's CPU time measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Callable, Dict

from schat.crypto import aead, dh, keys, pubkey
from schat.crypto import backend as crypto_backend
from schat.protocol import messages
from schat.protocol.channel import SecureChannel

RECORD_TEXT = "x" * 100  # the benchmark's 100-byte chat text


def timed(fn: Callable[[], object], rounds: int, repeat: int = 5) -> float:
    """CPU seconds per call: the best of ``repeat`` batches of ``rounds`` calls (after one
    warm-up). CPU time of this thread, not the clock: on a shared machine the time other
    processes take from this CPU is not the primitive's, and the server's side of a
    comparison is its CPU time too."""
    fn()
    best = float("inf")
    clock = time.thread_time
    for _ in range(repeat):
        t = clock()
        for _ in range(rounds):
            fn()
        best = min(best, (clock() - t) / rounds)
    return best


def _server_connection_pair(host, name):
    """A server connection with its handshake done, on backend ``name``."""
    from schat.protocol.connection import ClientConnection, ServerConnection

    server = ServerConnection(host, backend=name)
    client = ClientConnection(backend=name)
    client.receive_data(server.data_to_send())
    client.next_event()
    client.accept_server_key()
    server.receive_data(client.data_to_send())
    server.next_event()
    server.complete_key_exchange()
    server.next_event()
    server.data_to_send()
    return server


def measure(host_pem: bytes, user_pem: bytes, rsa_rounds: int = 40,
            record_rounds: int = 5000) -> Dict:
    """Per-call costs for every backend; ``default`` names the one the server uses."""
    host = keys.import_private_pem(host_pem, None)
    user = keys.import_private_pem(user_pem, None)
    user_public = user.public_key()
    out: Dict = {"default": crypto_backend.DEFAULT.NAME}
    key, nonce = os.urandom(32), os.urandom(12)
    header = (116).to_bytes(4, "big")
    payload = b"p" * 100
    chat = messages.encode(messages.Say(text=RECORD_TEXT, cid="c1", action=False))
    for name in crypto_backend.BACKENDS:
        be = crypto_backend.get(name)
        be.prepare_private(host)  # as the server does once at start-up
        be.prepare_private(user)
        wrapped = pubkey.oaep_wrap(host.public_key(), os.urandom(32), backend=name)
        digest_data = os.urandom(32)
        signature = pubkey.pss_sign(user, digest_data, backend=name)
        peer = dh.import_public(dh.public_bytes(dh.generate(backend=name), name), name)

        def x25519_server():
            eph = dh.generate(backend=name)
            dh.public_bytes(eph, name)
            return dh.shared_secret(eph, peer, name)

        ocb = aead.key(key, name)
        channel = SecureChannel(key, nonce, key, nonce, backend=name)
        server = _server_connection_pair(host, name)
        server.logged_in()
        one = [chat]
        row = {
            "oaep_decrypt_ms": timed(lambda: pubkey.oaep_unwrap(host, wrapped, name), rsa_rounds) * 1e3,
            "pss_verify_ms": timed(lambda: pubkey.pss_verify(user_public, digest_data, signature,
                                                             name), rsa_rounds) * 1e3,
            "pss_sign_ms": timed(lambda: pubkey.pss_sign(user, digest_data, backend=name),
                                 rsa_rounds) * 1e3,
            "x25519_ms": timed(x25519_server, rsa_rounds) * 1e3,
            # One 100-byte record: the primitive with its key object reused (OpenSSL's
            # key schedule set up once; pycryptodome rebuilds its cipher every call) ...
            "ocb_seal_us": timed(lambda: ocb.seal(nonce, payload, header), record_rounds) * 1e6,
            # ... a key object made for every record ...
            "ocb_seal_new_key_us": timed(lambda: aead.seal(key, nonce, payload, header, name),
                                         record_rounds) * 1e6,
            # ... the record layer (header, nonce, sequence number) ...
            "channel_seal_us": timed(lambda: channel.seal(payload), record_rounds) * 1e6,
            # ... and the server's whole per-record call from its flush.
            "seal_encoded_us": timed(lambda: server.seal_encoded(one), record_rounds) * 1e6,
        }
        server_ceiling = row["oaep_decrypt_ms"] + row["x25519_ms"] + row["pss_verify_ms"]
        row["handshake_crypto_ms"] = server_ceiling
        out[name] = row
    default = out[out["default"]]
    out.update(oaep_decrypt_ms=default["oaep_decrypt_ms"], x25519_ms=default["x25519_ms"],
               pss_verify_ms=default["pss_verify_ms"],
               ceiling_handshakes_per_s=1e3 / default["handshake_crypto_ms"])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host-key", help="PEM of an RSA private key (default: a new one)")
    parser.add_argument("--rounds", type=int, default=40, help="calls per batch of an RSA operation")
    parser.add_argument("--out", help="append one JSON line to this file (bench/peer.sh) "
                                      "instead of printing")
    parser.add_argument("--label", default="", help="the line's label (with --out)")
    args = parser.parse_args(argv)
    if args.host_key:
        host_pem = open(args.host_key, "rb").read()
    else:
        host_pem = keys.export_private_pem(keys.generate_rsa_key(), None)
    user_pem = keys.export_private_pem(keys.generate_rsa_key(), None)
    result = measure(host_pem, user_pem, args.rounds)
    if args.out:
        result = {"scenario": "primitives", "label": args.label,
                  "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **result}
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(result) + "\n")
    else:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

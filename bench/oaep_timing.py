"""Does the server's reply time tell a valid RSA-OAEP ciphertext from an invalid one?

    python -m bench.oaep_timing                       # both levels, 2,000 samples per class
    python -m bench.oaep_timing --samples 500 --level network
    SCHAT_CRYPTO_BACKEND=pycryptodome python -m bench.oaep_timing   # the other backend

The server answers every ClientKeyExchange with a ServerFinished: a secret
that does not unwrap is replaced by a random one (implicit rejection), so the
only thing an attacker can observe is *when* the answer comes. Two levels:

* ``network``: a real ``schat serve`` process (pinned to CPU 0; this process
  on CPU 1) over 127.0.0.1. Each sample is one connection: read the
  ServerHello, send a ClientKeyExchange, time from the send to the last byte
  of the ServerFinished. This is what a client (an attacker) sees.
* ``inprocess``: ``ServerHandshake.complete()`` alone, timed in this process
  (no network, no thread pool): the smallest difference there is to find.

Classes, interleaved in a fresh random order every round: ``valid`` (OAEP of
a 32-byte secret), ``corrupt`` (a valid ciphertext with one bit flipped: the
probe of a padding-oracle attack), ``wrong_size`` (a valid OAEP of 31 bytes),
``random`` (a random value below the modulus), ``too_large`` (not below the
modulus). For each invalid class against ``valid``: medians, the difference
of medians with a 95 % bootstrap interval, and the two-sample
Kolmogorov-Smirnov statistic with its p-value. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from schat.crypto import backend as crypto_backend
from schat.crypto import dh, keys, pubkey
from schat.protocol.handshake import CLIENT_KEY_EXCHANGE, ServerHandshake

CLASSES = ("valid", "corrupt", "wrong_size", "random", "too_large")
FINISHED_SIZE = 4 + 32 + 16  # header, HMAC-SHA256, OCB tag


def wrapped_secret(host_public, kind: str, rng: random.Random) -> bytes:
    """A ClientKeyExchange's wrapped secret of class ``kind`` for ``host_public``."""
    k = (host_public.size_in_bits() + 7) // 8
    if kind == "valid":
        return pubkey.oaep_wrap(host_public, os.urandom(32))
    if kind == "corrupt":
        good = bytearray(pubkey.oaep_wrap(host_public, os.urandom(32)))
        bit = rng.randrange(8, 8 * k)  # not the top byte: the value stays below the modulus
        good[bit // 8] ^= 1 << (bit % 8)
        return bytes(good) if bytes(good) < host_public.n.to_bytes(k, "big") else wrapped_secret(
            host_public, kind, rng)
    if kind == "wrong_size":
        return pubkey.oaep_wrap(host_public, os.urandom(31))
    if kind == "random":
        return rng.randrange(host_public.n).to_bytes(k, "big")
    if kind == "too_large":
        return rng.randrange(host_public.n, 2 ** (8 * k)).to_bytes(k, "big")
    raise ValueError(kind)


def key_exchange_frame(client_public: bytes, wrapped: bytes) -> bytes:
    body = (bytes([CLIENT_KEY_EXCHANGE]) + client_public + os.urandom(32)
            + len(wrapped).to_bytes(2, "big") + wrapped)
    return len(body).to_bytes(4, "big") + body


def schedule(samples: int, seed: int) -> List[str]:
    """``samples`` rounds, each every class once in a fresh random order."""
    rng = random.Random(seed)
    order: List[str] = []
    for _ in range(samples):
        batch = list(CLASSES)
        rng.shuffle(batch)
        order += batch
    return order


# --- the two levels ---------------------------------------------------------------------

def in_process(host, samples: int, seed: int) -> Dict[str, List[float]]:
    """Microseconds of ServerHandshake.complete() per class."""
    rng = random.Random(seed)
    public = host.public_key()
    client_public = dh.public_bytes(dh.generate())
    times: Dict[str, List[float]] = {c: [] for c in CLASSES}
    clock = time.perf_counter_ns
    for kind in schedule(samples, seed):
        hs = ServerHandshake(host)
        frame = key_exchange_frame(client_public, wrapped_secret(public, kind, rng))
        hs.receive_key_exchange(frame[:4], frame[4:])
        t0 = clock()
        hs.complete()
        times[kind].append((clock() - t0) / 1e3)
    return times


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("server closed the connection")
        data += chunk
    return data


def over_network(port: int, host, samples: int, seed: int) -> Dict[str, List[float]]:
    """Microseconds from sending the ClientKeyExchange to the whole ServerFinished, per class."""
    rng = random.Random(seed)
    public = host.public_key()
    client_public = dh.public_bytes(dh.generate())
    times: Dict[str, List[float]] = {c: [] for c in CLASSES}
    clock = time.perf_counter_ns
    order = schedule(samples, seed)
    frames = [key_exchange_frame(client_public, wrapped_secret(public, k, rng)) for k in order]
    for kind, frame in zip(order, frames):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            length = int.from_bytes(_recv_exactly(sock, 4), "big")
            _recv_exactly(sock, length)  # the ServerHello: the server now waits for us
            t0 = clock()
            sock.sendall(frame)
            _recv_exactly(sock, FINISHED_SIZE)
            times[kind].append((clock() - t0) / 1e3)
    return times


# --- statistics (no numpy here) --------------------------------------------------------------

def median(xs: List[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def quantile(xs: List[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(q * len(s))))]


def ks_test(a: List[float], b: List[float]):
    """Two-sample Kolmogorov-Smirnov: (D, asymptotic p-value)."""
    a, b = sorted(a), sorted(b)
    na, nb = len(a), len(b)
    i = j = 0
    d = 0.0
    while i < na and j < nb:
        x = min(a[i], b[j])
        while i < na and a[i] <= x:
            i += 1
        while j < nb and b[j] <= x:
            j += 1
        d = max(d, abs(i / na - j / nb))
    en = math.sqrt(na * nb / (na + nb))
    lam = (en + 0.12 + 0.11 / en) * d
    p = 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return d, min(1.0, max(0.0, p))


def bootstrap_median_diff(a: List[float], b: List[float], rounds: int = 1000, seed: int = 7):
    """95 % interval of median(b) - median(a) by resampling both."""
    rng = random.Random(seed)
    diffs = sorted(median(rng.choices(b, k=len(b))) - median(rng.choices(a, k=len(a)))
                   for _ in range(rounds))
    return diffs[int(0.025 * rounds)], diffs[int(0.975 * rounds) - 1]


def summarize(times: Dict[str, List[float]]) -> Dict:
    base = times["valid"]
    out: Dict = {}
    for kind in CLASSES:
        xs = times[kind]
        row = {"n": len(xs), "median_us": median(xs), "p10_us": quantile(xs, 0.10),
               "p90_us": quantile(xs, 0.90)}
        if kind != "valid":
            d, p = ks_test(base, xs)
            lo, hi = bootstrap_median_diff(base, xs)
            row.update(median_diff_us=median(xs) - median(base), median_diff_ci95_us=[lo, hi],
                       ks_d=d, ks_p=p, distinguishable=bool(p < 0.01 and (lo > 0 or hi < 0)))
        out[kind] = row
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000, help="samples per class and level")
    parser.add_argument("--level", choices=("both", "network", "inprocess"), default="both")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    result: Dict = {"backend": crypto_backend.DEFAULT.NAME, "samples_per_class": args.samples,
                    "run": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with tempfile.TemporaryDirectory(prefix="schat-oaep-") as tmp:
        root = Path(tmp)
        host_pem = keys.export_private_pem(keys.generate_rsa_key(), None)
        (root / "server").mkdir()
        (root / "server" / "host_key.pem").write_bytes(host_pem)
        os.chmod(root / "server" / "host_key.pem", 0o600)
        host = keys.import_private_pem(host_pem, None)
        if args.level in ("both", "inprocess"):
            result["inprocess"] = summarize(in_process(host, args.samples, args.seed))
        if args.level in ("both", "network"):
            from bench.server_proc import ServerProcess

            try:
                os.sched_setaffinity(0, {1})
            except (AttributeError, OSError):
                print("note: could not pin this process to CPU 1", file=sys.stderr)
            server = ServerProcess(root, cpu=0, extra_args=[
                "--no-signup", "--max-unauthenticated", "1000",
                "--max-unauthenticated-per-ip", "1000"])
            port = server.start()
            try:
                result["network"] = summarize(over_network(port, host, args.samples, args.seed))
            finally:
                server.stop()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fuzz targets for every decoder a peer can reach: frames, handshake, records, messages, DM envelopes.

Each target feeds attacker-chosen bytes to one decoder. The only acceptable
failure is the decoder's own refusal (``RemoteProtocolError`` for the
protocol, ``EnvelopeError`` for an envelope); any other exception is a bug.

Run by hand (see docs/FUZZING.md)::

    pip install atheris
    python fuzz/fuzz_decoders.py -max_total_time=600 fuzz/corpus

Without atheris, ``python fuzz/fuzz_decoders.py --hypothesis SECONDS`` runs
the same targets under Hypothesis for that long. The test suite runs them
briefly on every run (tests/adversarial/test_fuzz_decoders.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Runnable from a checkout without installing: the repository root holds the package.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from schat.crypto import envelope, keys  # noqa: E402
from schat.errors import RemoteProtocolError
from schat.protocol import dm_messages, events, messages  # noqa: F401  (registers DM types)
from schat.protocol.connection import ClientConnection, ServerConnection
from schat.protocol.framing import FrameDecoder
from schat.protocol.handshake import ClientHandshake, ServerHandshake

HOST_KEY = keys.import_private_pem(
    (Path(__file__).resolve().parent.parent / "tests" / "data" / "keys" / "host.pem").read_bytes(),
    None)


def _counter(seed: int):
    """A deterministic randfunc: every run of a target sees the same keys."""
    state = [seed]

    def randfunc(n: int) -> bytes:
        out = bytes((state[0] + i) & 0xFF for i in range(n))
        state[0] = (state[0] + n) & 0xFF
        return out
    return randfunc


def target_frames(data: bytes) -> None:
    """Arbitrary bytes, split in two, through the frame decoder."""
    decoder = FrameDecoder()
    cut = data[0] % (len(data) + 1) if data else 0
    try:
        # b"" is end of stream, so only the last feed may be empty.
        for part in [p for p in (data[:cut], data[cut:]) if p] + [b""]:
            decoder.feed(part)
            while decoder.next_frame() is not None:
                pass
    except RemoteProtocolError:
        pass


def target_messages(data: bytes) -> None:
    """Arbitrary bytes as one message (JSON) inside a record."""
    try:
        msg = messages.decode(data)
    except RemoteProtocolError:
        return
    # Whatever decodes must encode again and decode to the same message.
    assert messages.decode(messages.encode(msg)) == msg


def target_handshake(data: bytes) -> None:
    """Arbitrary frame bodies as a ClientKeyExchange (server side) and a ServerHello (client side)."""
    header = len(data).to_bytes(4, "big")
    server = ServerHandshake(HOST_KEY, _counter(1))
    try:
        server.receive_key_exchange(header, data)
        server.complete()
    except RemoteProtocolError:
        pass
    client = ClientHandshake(_counter(2))
    try:
        client.receive_server_hello(header, data)
        client.key_exchange()
    except RemoteProtocolError:
        pass


def _open_pair():
    server = ServerConnection(HOST_KEY, _counter(3))
    client = ClientConnection(_counter(4))
    client.receive_data(server.data_to_send())
    while client.next_event() is not None:
        pass
    client.accept_server_key()
    server.receive_data(client.data_to_send())
    server.next_event()
    server.complete_key_exchange()
    server.next_event()
    client.receive_data(server.data_to_send())
    while client.next_event() is not None:
        pass
    return client, server


def target_records(data: bytes) -> None:
    """An open connection fed attacker payloads: sealed correctly (parsing is reached),
    then raw bytes after them (tag failures, bad lengths, truncation)."""
    client, server = _open_pair()
    sealed = client._channel.seal  # the record layer itself: payloads the client never validates
    split = data.find(b"\xff")
    payloads = data[:split] if split >= 0 else data
    raw = data[split + 1:] if split >= 0 else b""
    try:
        for chunk in payloads.split(b"\x00"):
            if chunk:
                server.receive_data(sealed(chunk[:65_519]))
        server.receive_data(raw)
        server.receive_data(b"")
        while True:
            ev = server.next_event()
            if ev is None or isinstance(ev, events.ConnectionClosed):
                break
            assert isinstance(ev, events.MessageReceived)
    except RemoteProtocolError:
        return


def target_envelope(data: bytes) -> None:
    """Arbitrary bytes as a direct-message envelope (format 2, and format 1 as a client
    reads it from a mailbox)."""
    for accept_old in (False, True):
        try:
            envelope.parse(data, accept_old=accept_old)
        except envelope.EnvelopeError:
            pass


TARGETS = (target_frames, target_messages, target_handshake, target_records, target_envelope)


def one_input(data: bytes) -> None:
    """Dispatch on the first byte: one fuzzer drives every target."""
    if not data:
        return
    TARGETS[data[0] % len(TARGETS)](data[1:])


def run_hypothesis(seconds: float) -> int:
    """The Hypothesis long-run mode: random inputs to every target for ``seconds``."""
    import time

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    deadline = time.monotonic() + seconds
    runs = 0

    @settings(max_examples=10 ** 9, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=4096))
    def check(data):
        nonlocal runs
        if time.monotonic() > deadline:
            raise _Done
        runs += 1
        one_input(data)

    class _Done(Exception):
        pass

    try:
        check()
    except _Done:
        pass
    print(f"{runs} inputs in {seconds:g} s, no failure")
    return 0


def main(argv) -> int:
    if len(argv) >= 3 and argv[1] == "--hypothesis":
        return run_hypothesis(float(argv[2]))
    import atheris

    # Coverage feedback from schat's own (already imported) Python code.
    atheris.instrument_all()
    atheris.Setup(argv, one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

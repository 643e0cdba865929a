"""The fuzz targets of fuzz/fuzz_decoders.py under Hypothesis on every test run.

Every decoder a peer can reach gets arbitrary bytes; the only acceptable
failure is its own refusal. Longer runs: docs/FUZZING.md.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_PATH = Path(__file__).resolve().parents[2] / "fuzz" / "fuzz_decoders.py"
_spec = importlib.util.spec_from_file_location("fuzz_decoders", _PATH)
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("target", [fuzz.target_frames, fuzz.target_messages,
                                    fuzz.target_handshake, fuzz.target_envelope],
                         ids=lambda t: t.__name__)
def test_decoder_refuses_arbitrary_bytes_cleanly(target):
    @FAST
    @given(st.binary(max_size=2048))
    def check(data):
        target(data)
    check()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(
    st.binary(min_size=1, max_size=300).filter(lambda b: b"\x00" not in b and b"\xff" not in b),
    st.sampled_from([b'{"type":"who"}', b'{"type":"ping","n":7}', b'{"type":"bye"}',
                     b'{"type":"say","text":"hi","cid":"c1"}'])), max_size=6),
    st.binary(max_size=200))
def test_open_connection_fed_arbitrary_records(payloads, raw):
    # Payloads sealed with the right keys reach the message parser; raw bytes after
    # them hit the record layer (tags, lengths, truncation).
    fuzz.target_records(b"\x00".join(payloads) + b"\xff" + raw)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["ClientKeyExchange", "ServerHello"]), st.integers(0, 500),
       st.integers(0, 7))
def test_one_bit_of_a_real_handshake_message_flipped(which, position, bit):
    server = fuzz.ServerConnection(fuzz.HOST_KEY, fuzz._counter(5))
    client = fuzz.ClientConnection(fuzz._counter(6))
    hello = server.data_to_send()
    if which == "ServerHello":
        data = bytearray(hello)
        data[position % len(data)] ^= 1 << bit
        fuzz.target_handshake(bytes(data[4:]))
        return
    client.receive_data(hello)
    client.next_event()
    client.accept_server_key()
    data = bytearray(client.data_to_send())
    data[4 + position % (len(data) - 4)] ^= 1 << bit
    fuzz.target_handshake(bytes(data[4:]))

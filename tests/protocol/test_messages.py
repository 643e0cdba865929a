"""Strict message parsing, and property tests: arbitrary input never raises a foreign error."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from schat.errors import RemoteProtocolError
from schat.protocol import dm_messages as dmm, framing, messages as m, registry
from schat.protocol import room_messages as rm

SAMPLES = [
    m.Login(user="ann", password="pw"),
    m.LoginKey(user="ann", signature=b"\x01" * 384),
    m.Signup(user="ann", password="pw", public_key=b"\x30" * 422),
    m.Signup(user="ann", password="pw"),
    m.Say(text="hi", cid="1", action=True),
    m.Command(line="/nick x", cid="2"),
    m.Who(),
    m.Msg(to="bob", text="psst", cid="3"),
    m.Welcome(user="ann", server="S", motd="", users=("ann", "bob"), time=1),
    m.Error(code="auth_failed", text="nope"),
    m.ChatMessage(id=1, time=2, sender="bob", text="yo"),
    m.Ack(cid="1", id=1, time=2),
    m.Notice(text="hello", time=3),
    m.Join(user="bob", time=4),
    m.Leave(user="bob", time=5, reason="quit"),
    m.Users(users=("a",) * 1024, more=True),
    m.Dm(id=1, time=2, sender="a", to="b", text="t"),
    m.Ping(n=0), m.Pong(n=2 ** 53 - 1), m.Bye(reason=""),
    m.Error(code="no_key", text="none", cid="c9"),
    dmm.GetKey(user="bob", cid="4"),
    dmm.Key(cid="4", user="bob", status="ok", public_key=b"\x30" * 422,
            fingerprint="SHA256:" + "A" * 43),
    dmm.Key(cid="4", user="bob", status="no_key"),
    dmm.SetKey(public_key=b"\x30" * 422, cid="5"),
    dmm.DmSend(to="bob", envelope=b"SCDM" * 100, cid="6"),
    dmm.DmEnvelope(id=7, time=8, sender="ann", envelope=b"SCDM" * 100, sender_key=b"\x30" * 422),
    dmm.DmAck(id=7),
    dmm.Mailbox(count=3),
    m.Login(user="ann", password="pw", features=("rooms",), check=True),
    m.Say(text="hi", cid="7", room="#dev"),
    m.ChatMessage(id=1, time=2, sender="bob", text="yo", room="#dev", history=True),
    rm.Checked(user="ann", time=1),
    rm.RoomState(room="#dev", topic="t", private=True, ops=("ann",), users=("ann",), time=1,
                 owner="ann"),
    rm.Focus(room="#dev"), rm.Focus(),
    rm.Topic(room="#dev", topic="", user="ann", time=1),
    rm.Moderation(room="#dev", action="ban", time=1, actor="ann", target="bob", reason="r",
                  until=5),
    rm.Rooms(rooms=({"room": "#dev", "users": 2, "topic": "", "private": False,
                     "member": True},)),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda x: x.TYPE)
def test_roundtrip(msg):
    data = m.encode(msg)
    assert b"\n" not in data
    assert m.decode(data) == msg


def test_every_registered_type_has_a_sample():
    assert set(m.REGISTRY) <= {s.TYPE for s in SAMPLES}


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda x: x.TYPE)
def test_each_type_decodes_only_where_its_receiver_accepts_it(msg):
    data = m.encode(msg)
    both = msg.TYPE in ("ping", "pong", "bye")
    for table in (registry.SERVER_RECEIVES, registry.CLIENT_RECEIVES, registry.BEFORE_LOGIN):
        if msg.TYPE in table:
            assert m.decode(data, table) == msg
        else:
            with pytest.raises(RemoteProtocolError, match="not allowed here"):
                m.decode(data, table)
    assert both == (msg.TYPE in registry.SERVER_RECEIVES and msg.TYPE in registry.CLIENT_RECEIVES)


BAD = [
    (b"\xff\xfe", "UTF-8"),
    (b"[]", "not a JSON object"),
    (b'"x"', "not a JSON object"),
    (b"{", "not valid JSON"),
    (b'{"n":1}', "type"),
    (b'{"type":"nope"}', "unknown message type"),
    (b'{"type":"ping"}', "lacks field"),
    (b'{"type":"ping","n":true}', "integer"),
    (b'{"type":"ping","n":1.0}', "integer"),
    (b'{"type":"ping","n":-1}', "out of range"),
    (b'{"type":"ping","n":9007199254740992}', "out of range"),
    (b'{"type":"ping","n":' + b"9" * 5000 + b"}", "not valid JSON"),
    (b'{"type":"ping","n":NaN}', "NaN"),
    (b'{"type":"ping","n":1,"n":2}', "duplicate"),
    (b'{"type":"ping","n":1,"extra":0}', "unknown field"),
    (b'{"type":"say","text":"","cid":"1"}', "length"),
    (b'{"type":"say","text":"a","cid":"1","action":1}', "true or false"),
    (b'{"type":"say","text":"\\ud800","cid":"1"}', "surrogate"),
    (b'{"type":"say","text":"a","cid":"\\u00e9"}', "not allowed"),
    (b'{"type":"login","user":"a b","password":"x"}', "not allowed"),
    (b'{"type":"login","user":["a"],"password":"x"}', "string"),
    (b'{"type":"command","line":"no slash","cid":"1"}', "start with"),
    (b'{"type":"login_key","user":"a","signature":"!!"}', "base64"),
    (b'{"type":"users","users":[["a"]]}', "string"),
    (b"[" * 50000 + b"]" * 50000, "nested|not a JSON object"),
]


@pytest.mark.parametrize("data,reason", BAD, ids=range(len(BAD)))
def test_bad_messages_rejected_with_reason(data, reason):
    with pytest.raises(RemoteProtocolError, match=reason):
        m.decode(data)


def test_text_limit_is_in_utf8_bytes():
    ok = "é" * 2048  # 4,096 bytes
    assert m.decode(m.encode(m.Say(text=ok, cid="1"))).text == ok
    too_long = json.dumps({"type": "say", "text": ok + "a", "cid": "1"}).encode()
    with pytest.raises(RemoteProtocolError, match="length 4097"):
        m.decode(too_long)


def test_users_list_limit():
    data = json.dumps({"type": "users", "users": ["a"] * 1025}).encode()
    with pytest.raises(RemoteProtocolError, match="more than 1024"):
        m.decode(data)


def test_repr_hides_passwords():
    assert "pw-secret" not in repr(m.Login(user="a", password="pw-secret"))
    assert "pw-secret" not in repr(m.Signup(user="a", password="pw-secret"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_decode_arbitrary_bytes(data):
    try:
        m.decode(data)
    except RemoteProtocolError:
        pass


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(m.REGISTRY)), st.dictionaries(
    st.sampled_from(["user", "password", "text", "cid", "n", "users", "time", "id", "signature",
                     "action", "more", "reason", "to", "sender", "line", "code", "x"]), _json))
def test_decode_arbitrary_json_objects(type_name, fields):
    data = json.dumps({"type": type_name, **fields}).encode()
    try:
        msg = m.decode(data)
    except RemoteProtocolError:
        return
    assert m.decode(m.encode(msg)) == msg  # what is accepted re-encodes identically


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=600), max_size=5), st.data())
def test_framing_split_anywhere(bodies, data):
    stream = b"".join(framing.frame(b) for b in bodies)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    dec = framing.FrameDecoder()
    got = []
    prev = 0
    for cut in cuts + [len(stream)]:
        if cut > prev:
            dec.feed(stream[prev:cut])
        prev = max(prev, cut)
        while (f := dec.next_frame()) is not None:
            got.append(f[1])
    assert got == bodies
    assert dec.buffered == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_framing_arbitrary_bytes(data):
    dec = framing.FrameDecoder()
    try:
        dec.feed(data)
        dec.feed(b"")
        while dec.next_frame() is not None:
            pass
    except RemoteProtocolError:
        pass


@pytest.mark.parametrize("header", [b"\x00\x00\x00\x00", b"\x00\x01\x00\x00", b"\xff\xff\xff\xff"])
def test_bad_length_rejected_on_header_alone(header):
    dec = framing.FrameDecoder()
    dec.feed(header)
    with pytest.raises(RemoteProtocolError, match="invalid frame length"):
        dec.next_frame()

"""The chat screen's rooms against a real server: the current room in the prompt and the
toolbar, switching with /switch, Alt-N and Ctrl-N/Ctrl-P, unread counts, other rooms'
lines tagged, history dimmed, room-name completion; a modified server's topics and
reasons shown cleaned; a server without rooms (or older than them) as before."""

from __future__ import annotations

import json
import re

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from chatkit import PASSWORDS, WAIT, answer, until
from hostile_server import HostileServer, now_ms
from schat.cli import cli
from schat.protocol import messages
from schat.protocol import room_messages as rm
from tuikit import logged_in, screens  # noqa: F401  (fixture)

ALT = "\x1b"
CTRL_N, CTRL_P = "\x0e", "\x10"


def settled(screen, room="#lobby"):
    """Wait until the server's rooms arrived and ``room`` is the current one."""
    screen.wait(lambda: screen.tui.rooms.known and screen.tui.rooms.current == room,
                f"{room} current")


def prompt(screen) -> str:
    return "".join(text for _, text in screen.tui.prompt())


def printed_with(screen, needle):
    """The printed lines (text) that contain ``needle``."""
    return [line for line in screen.tui.printed if needle in line]


def test_current_room_in_prompt_and_toolbar_and_switching(chat_server, screens):
    bob = chat_server.login("bob")
    screen = screens(logged_in(chat_server, "alice"), server="lab")
    settled(screen)
    assert prompt(screen) == "alice #lobby> "
    assert screen.toolbar() == " lab (testsrv) · alice · [1:#lobby] · 2 here · connected "
    screen.type("/join #dev\r")
    settled(screen, "#dev")                      # the room you asked for becomes current
    screen.type("/join #Ops\r")
    settled(screen, "#ops")
    assert prompt(screen) == "alice #ops> "
    assert screen.toolbar() == (" lab (testsrv) · alice · 1:#lobby 2:#dev [3:#ops] · 1 here"
                                " · connected ")
    switched = len(printed_with(screen, "-- switched to"))
    for keys, room in ((ALT + "1", "#lobby"), (CTRL_N, "#dev"), (CTRL_P, "#lobby"),
                       (CTRL_P, "#ops"), (CTRL_N, "#lobby"), (ALT + "2", "#dev"),
                       (ALT + "9", "#dev")):             # no ninth room: nothing moves
        screen.type(keys)
        settled(screen, room)
    screen.type("/switch 3\r")
    settled(screen, "#ops")
    screen.type("/switch DEV\r")
    settled(screen, "#dev")
    screen.type("/switch #nope\r")
    screen.wait_printed("you are not in #nope; /join #nope first (Up brings the line back)")
    # Nine switches, nothing printed meanwhile: the change is said once, before the
    # next line, so lines without a room tag are always under the room they belong to.
    assert printed_with(screen, "-- switched to")[switched:] == [
        screen.tui.printed[-2]] and screen.tui.printed[-2].endswith("-- switched to #dev")
    screen.type("/switch 7\r")
    screen.wait_printed("no room number 7: you are in 3 rooms")
    screen.type("/join #lobby\r")                # a room you are in: only switched to
    settled(screen, "#lobby")
    # Lines go to the current room, whatever the server's own idea of it (#ops, the
    # last joined): every line names its room.
    assert answer(bob, "/join #dev") is None
    screen.type(ALT + "2")
    settled(screen, "#dev")
    screen.type("hello dev\r")
    assert until(bob, messages.ChatMessage, lambda m: m.text == "hello dev").room == "#dev"
    screen.type(ALT + "1")
    settled(screen, "#lobby")
    screen.type("/me waves\r")
    got = until(bob, messages.ChatMessage, lambda m: m.text == "waves")
    assert got.room is None and got.action            # #lobby: the wire omits it
    screen.wait_printed("* alice waves")
    # /part leaves the current room; the room joined last becomes current.
    screen.type(ALT + "2")
    settled(screen, "#dev")
    screen.type("/part see you\r")
    settled(screen, "#ops")
    assert until(bob, messages.Leave, lambda m: m.room == "#dev").reason == "see you"
    assert screen.tui.rooms.order() == ["#lobby", "#ops"]


def test_unread_counts_mentions_and_other_rooms_tagged(chat_server, screens):
    bob = chat_server.login("bob")
    screen = screens(logged_in(chat_server, "alice"), server="lab")
    settled(screen)
    screen.type("/join #dev\r")
    settled(screen, "#dev")
    assert answer(bob, "/join #dev") is None
    screen.type(ALT + "1")
    settled(screen)
    bob.session.say("first", room="#dev")
    bob.session.say("the build is green", room="#dev")
    screen.wait_printed("#dev <bob> the build is green")
    assert "1:#lobby] 2:#dev(2) ·" in screen.toolbar()
    bob.session.say("alice: can you look?", room="#dev")
    screen.wait_printed("#dev <bob> alice: can you look?")
    assert "2:#dev(3!) ·" in screen.toolbar()           # one of them mentions you
    bob.session.say("in the lobby", room="#lobby")
    screen.wait_printed("<bob> in the lobby")
    assert printed_with(screen, "<bob> in the lobby")[0][6:] == "<bob> in the lobby"
    # A join in another room is tagged too, and counts nothing.
    carol = chat_server.login("carol")
    assert answer(carol, "/join #dev") is None
    screen.wait_printed("#dev -- carol joined")
    screen.type(ALT + "2")
    settled(screen, "#dev")
    assert screen.toolbar() == (" lab (testsrv) · alice · 1:#lobby [2:#dev] · 3 here"
                                " · connected ")
    bob.session.say("now you are here", room="#dev")
    screen.wait_printed("<bob> now you are here")
    line = printed_with(screen, "now you are here")[0]
    assert line[6:] == "<bob> now you are here"       # the current room: no tag
    bob.session.say("back in the lobby", room="#lobby")
    screen.wait_printed("#lobby <bob> back in the lobby")
    assert "1:#lobby(1) [2:#dev]" in screen.toolbar()
    # Your own line, sent to #dev: shown untagged while #dev is current.
    screen.type("on it\r")
    screen.wait_printed("<alice> on it")
    assert printed_with(screen, "<alice> on it")[0][6:] == "<alice> on it"
    for c in (bob, carol):
        c.close()


def test_history_lines_are_dimmed_and_live_ones_are_not(chat_server, screens):
    bob = chat_server.login("bob")
    assert answer(bob, "/join #dev") is None
    bob.session.say("said before you came", room="#dev")
    assert bob.session.wait_acked(WAIT)
    screen = screens(logged_in(chat_server, "alice"), colour=True)
    settled(screen)
    screen.type("/join #dev\r")
    settled(screen, "#dev")
    screen.wait_printed("<bob> said before you came")
    old = screen.line_with("said before you came")
    assert all("class:history" in style for style, text in old if text.strip()), old
    bob.session.say("said just now", room="#dev")
    screen.wait_printed("<bob> said just now")
    assert not any("class:history" in style for style, _ in screen.line_with("said just now"))
    # On the terminal: the SGR before the history line's text turns on dim (2).
    out = screen.out.getvalue()
    at = out.index("said before you came")
    params = out[out.rindex("\x1b[", 0, at) + 2:out.index("m", out.rindex("\x1b[", 0, at))]
    assert "2" in params.split(";"), params
    at = out.index("said just now")
    params = out[out.rindex("\x1b[", 0, at) + 2:out.index("m", out.rindex("\x1b[", 0, at))]
    assert "2" not in params.split(";"), params
    # The line for the room you entered names the room's members.
    assert printed_with(screen, "you are in #dev; owner bob; 2 here: alice, bob")
    bob.close()


def completions(screen, text):
    doc = Document(text, len(text))
    return [c.text for c in screen.tui.buffer.completer.get_completions(doc, CompleteEvent())]


def test_room_names_complete(chat_server, screens):
    bob = chat_server.login("bob")
    for room in ("#design", "#random"):
        assert answer(bob, f"/join {room}") is None
    screen = screens(logged_in(chat_server, "alice"))
    settled(screen)
    for room in ("#dev", "#docs"):
        screen.type(f"/join {room}\r")
        settled(screen, room)
    assert completions(screen, "/switch ") == ["#lobby ", "#dev ", "#docs "]
    assert completions(screen, "/switch d") == ["#dev ", "#docs "]
    assert completions(screen, "/part #do") == ["#docs "]
    assert completions(screen, "/names #l") == ["#lobby "]
    # /join also offers the rooms you heard of: after /rooms, #design and #random.
    assert completions(screen, "/join #de") == ["#dev "]
    screen.type("/rooms\r")
    screen.wait_printed("#random  1 online")
    assert completions(screen, "/join #de") == ["#dev ", "#design "]
    # In a line, a word starting with # is a room (no space after it).
    assert completions(screen, "see #ra") == ["#random"]
    assert completions(screen, "/topic release notes in #doc") == ["#docs"]
    # Through the keyboard: Tab completes the one room at once.
    screen.type_and_wait("/switch lo\t", "/switch #lobby ")
    screen.type("\r")
    settled(screen)
    bob.close()


# -- a modified server ------------------------------------------------------------------
EVIL = ("\x1b]0;PWNED\x07\x1b[2J\u009b31m\u202eRTL\u2066iso\u2069\x7f\x08\r\u0085\u2028"
        "tail\n12:00 <root> forged")
# What a terminal would act on: C0 but newline, DEL, C1, the bidi controls, U+2028/U+2029.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1a\x1c-\x1f\x7f\x80-\x9f\u202a-\u202e\u2066-\u2069"
                         "\u2028\u2029]")


def evil_rooms(link, msg):
    """A server that puts escapes, bidi controls and line breaks in every topic, reason
    and away message it sends (room names cannot carry any: the client checks them)."""
    t = now_ms()
    link.welcome(msg.user, users=(msg.user, "mallory"))
    link.send(rm.RoomState(room="#lobby", topic=EVIL, private=False, ops=("mallory",),
                           users=(msg.user, "mallory"), time=t, owner="mallory"),
              rm.Focus(room="#lobby"),
              rm.Topic(room="#lobby", topic=EVIL, user="mallory", time=t),
              rm.Moderation(room="#lobby", action="kick", time=t, actor="mallory",
                            target="bob", reason=EVIL),
              rm.Moderation(room="#lobby", action="ban", time=t, actor=None, target="bob",
                            reason=EVIL, until=t + 60_000),
              messages.Leave(user="carl", time=t, reason=EVIL),
              messages.Users(users=(msg.user, "mallory"),
                             away=({"user": "mallory", "text": EVIL},)),
              rm.Rooms(rooms=({"room": "#lobby", "users": 2, "topic": EVIL,
                               "private": False, "member": True},)))


@pytest.fixture
def hostile(host_key, tmp_path):
    made = []

    def start(**kwargs):
        srv = HostileServer(host_key, **kwargs)
        srv.known = tmp_path / f"known_servers{len(made)}"
        made.append(srv)
        return srv

    yield start
    for srv in made:
        srv.close()


def hostile_session(srv, features=None):
    from schat.client.session import ClientSession
    from schat.store.known_servers import KnownServers

    extra = {} if features is None else {"features": features}
    s = ClientSession(srv.host, srv.port, "evil", known_servers=KnownServers(srv.known),
                      accept_new=True, timeout=WAIT, **extra)
    s.connect()
    s.login_password("alice", PASSWORDS["alice"])
    return s


def test_topics_reasons_and_away_messages_from_a_modified_server_are_cleaned(hostile,
                                                                              screens):
    srv = hostile(on_login=evil_rooms)
    # Wide enough that no line wraps: then each event is exactly one row.
    screen = screens(hostile_session(srv), colour=True, columns=500)
    screen.wait_printed("rooms (1):")
    lines = [line for line in screen.tui.printed if "PWNED" in line]
    assert len(lines) >= 7, screen.tui.printed
    for line in lines:
        assert not RAW_CONTROL.search(line), line
        rows = line.split("\n")
        assert all(row.startswith("  ") for row in rows[1:]), line  # only the /rooms list
        for row in rows:
            if "PWNED" in row:
                # The text's break is a visible mark: "forged" never starts a row.
                assert "tail\u23ce12:00 <root> forged" in row, row
                assert "^[]0;PWNED^G^[[2J<U+009B>31m<U+202E>RTL<U+2066>iso<U+2069>" in row
    assert any("you are in #lobby; owner mallory; ops mallory; 2 here: alice, mallory; "
               "topic: ^[]0;PWNED" in line for line in lines)
    assert any("mallory set the topic of #lobby: ^[]0;PWNED" in line for line in lines)
    assert any("bob was kicked from #lobby by mallory: ^[]0;PWNED" in line for line in lines)
    assert any("carl left (^[]0;PWNED" in line for line in lines)
    assert any("mallory (away: ^[]0;PWNED" in line for line in lines)
    # And what reached the terminal holds none of it raw.
    out = screen.out.getvalue()
    for payload in ("\x1b]0;PWNED", "\u202e", "\u2066", "\u009b", "\u2028"):
        assert payload not in out, repr(payload)


# -- servers without rooms ----------------------------------------------------------------
def test_a_server_without_rooms_looks_as_before(hostile, screens):
    srv = hostile()                 # welcomes, acknowledges, and sends no room event
    screen = screens(hostile_session(srv), server="old")
    screen.type("hello\r")
    say = srv.wait_for(messages.Say)
    assert say.text == "hello" and say.room is None
    screen.wait_printed("<alice> hello")
    assert not screen.tui.rooms.known
    assert prompt(screen) == "alice> "
    assert screen.toolbar() == " old (evil) · alice · 1 online · connected "
    screen.type("/switch #dev\r")     # not the client's to answer: the server's
    command = srv.wait_for(messages.Command)
    assert command.line == "/switch #dev" and command.room is None
    # Ctrl-N/Ctrl-P are the history keys again.
    screen.type(CTRL_P)
    screen.wait(lambda: screen.tui.buffer.text == "/switch #dev", "history recalled")


def drop_features(link, msg):
    """A server older than rooms: a login with a field it does not know ends the
    connection at once, without a word."""
    if msg.features:
        link.closed = True
        link._shutdown()
        return
    link.welcome(msg.user)


def test_connect_to_a_server_older_than_rooms_logs_in_without_them(hostile, runner, home):
    srv = hostile(on_login=drop_features)
    (home / "servers.json").write_text(json.dumps({"old": {"ip": srv.host, "port": srv.port}}))
    res = runner.invoke(cli, ["connect", "old", "--user", "alice", "--accept-new"],
                        env={"SCHAT_PASSWORD": PASSWORDS["alice"]}, input="hello\n")
    assert res.exit_code == 0, res.output
    assert ("Note: old closed the connection at login, as a server older than rooms does; "
            "logging in again as an older client") in res.stderr
    logins = srv.sent_of(messages.Login)
    assert [m.features for m in logins] == [("rooms", "away"), ()]
    assert srv.wait_for(messages.Say).room is None
    # A server that drops the older login too is an error, not a loop.
    srv.on_login = lambda link, msg: (setattr(link, "closed", True), link._shutdown())
    res = runner.invoke(cli, ["connect", "old", "--user", "alice"],
                        env={"SCHAT_PASSWORD": PASSWORDS["alice"]}, input="hello\n")
    assert res.exit_code == 1 and "closed the connection" in res.stderr
    assert "Traceback" not in res.output
    assert len(srv.sent_of(messages.Login)) == 4


def test_reconnecting_keeps_the_current_room_and_a_takeover_does_not_reconnect(chat_server,
                                                                              screens):
    attempts = []

    def reconnect():
        attempts.append(1)
        return logged_in(chat_server, "alice")

    screen = screens(logged_in(chat_server, "alice"), reconnect, backoff_start=30,
                     backoff_cap=30)
    settled(screen)
    screen.type("/join #dev\r")
    settled(screen, "#dev")
    screen.type("/reconnect\r")
    screen.wait_printed("back online")
    # The new session is put back in #dev by the server (its rooms are remembered), and
    # #dev stays the current room although the server's default is #lobby.
    screen.wait(lambda: screen.tui.rooms.order() == ["#lobby", "#dev"], "both rooms back")
    screen.wait(lambda: screen.tui.rooms.known, "rooms known")
    assert screen.tui.rooms.current == "#dev" and prompt(screen) == "alice #dev> "
    assert attempts == [1]
    # Another login of alice takes the session over: the screen says so and stays off
    # (logging in again at once would take it back).
    other = chat_server.login("alice")
    screen.wait_printed("logged in again from 127.0.0.1:")
    screen.wait(lambda: screen.tui.state == "offline", "offline")
    screen.wait_printed("/quit to leave")
    assert attempts == [1]
    other.close()


def test_a_protocol_error_of_this_client_is_not_retried(hostile, screens):
    # The server says this client broke the protocol: logging in again would only
    # break it again, so the screen stays offline and says why.
    def refuse_the_first_line(link, msg):
        if isinstance(msg, messages.Say):
            link.send(messages.Error(code="bad_message", text="field 'text': too long"))
            link.bye("field 'text': too long")

    srv = hostile(script=refuse_the_first_line)
    attempts = []

    def reconnect():
        attempts.append(1)
        return hostile_session(srv)

    screen = screens(hostile_session(srv), reconnect, backoff_start=0.05, backoff_cap=0.05)
    screen.type("hello\r")
    screen.wait(lambda: screen.tui.state == "offline", "offline")
    screen.wait_printed("/quit to leave")
    assert attempts == []

"""The terminal interface driven through prompt_toolkit's pipe input against a real server."""

from __future__ import annotations

import os
import re
import stat

import pytest
from prompt_toolkit.data_structures import Size
from prompt_toolkit.layout.menus import CompletionsMenuControl

from chatkit import PASSWORDS, WAIT, Client
from schat.client.completion import COMMANDS
from schat.client.history import ChatHistory, history_path
from schat.protocol import messages
from tuikit import PASTE_END, PASTE_START, logged_in, screens  # noqa: F401  (fixture)


def test_half_typed_line_survives_incoming_messages(server_factory, screens):
    chat_server = server_factory(rate_limit=0)  # a busy room: 40 lines at once
    bob = chat_server.login("bob")
    screen = screens(logged_in(chat_server, "alice"))
    screen.type_and_wait("half-typed wo", "half-typed wo")
    cursor = screen.tui.buffer.cursor_position
    for i in range(40):
        bob.session.say(f"burst {i}")
    screen.wait_printed("<bob> burst 39")
    assert screen.tui.buffer.text == "half-typed wo"
    assert screen.tui.buffer.cursor_position == cursor
    # Redrawn after the burst, below the printed lines: the prompt and the text again.
    redrawn = lambda: re.search(  # noqa: E731
        r"alice\S* \S*#lobby\S*> \x1b\[0mhalf-typed wo",
        screen.out.getvalue().rsplit("burst 39", 1)[1])
    screen.wait(redrawn, "the input line redrawn below the burst")
    screen.type("rd\r")
    got = bob.next(messages.ChatMessage)
    assert got.sender == "alice" and got.text == "half-typed word"
    screen.wait_printed("<alice> half-typed word")
    assert screen.tui.buffer.text == ""


def test_completion_offers_commands_and_current_members(chat_server, screens):
    chat_server.login("bob")
    screen = screens(logged_in(chat_server, "alice"))
    screen.type_and_wait("/ms\t", "/msg ")
    screen.type_and_wait("b\t", "/msg bob ")
    screen.type_and_wait("\x03", "")  # Ctrl-C clears the line
    carol = chat_server.login("carol")
    screen.wait_printed("carol joined")
    screen.type_and_wait("ca\t", "carol: ")
    screen.type_and_wait("\x03", "")
    carol.close()
    screen.wait_printed("carol left")
    assert "carol" not in screen.tui.members
    screen.type_and_wait("ca\t.", "ca.")  # Tab offered nothing once carol left


def test_history_survives_a_restart(chat_server, screens, tmp_path):
    path = history_path(tmp_path, "testsrv")
    first = screens(logged_in(chat_server, "alice"), history=ChatHistory(path))
    first.type("first line\r")
    first.wait_printed("<alice> first line")
    first.type("/who\r")
    first.wait_printed("online: alice")
    first.type("\x04")  # Ctrl-D on an empty line leaves
    first.thread.join(WAIT)
    assert first.error is None and first.result == 0, first.error
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    second = screens(logged_in(chat_server, "alice"), history=ChatHistory(path))
    second.type_and_wait("\x1b[A", "/who")
    second.type_and_wait("\x1b[A", "first line")
    second.type_and_wait("\x1b[B", "/who")


def test_bell_on_mention_and_private_message_only(chat_server, screens):
    bob = chat_server.login("bob")
    screen = screens(logged_in(chat_server, "alice"))
    bob.session.say("lunch, anyone?")
    screen.wait_printed("lunch, anyone?")
    assert screen.bells() == 0
    bob.session.say("alice: you too")
    screen.wait_printed("alice: you too")
    assert screen.bells() == 1
    bob.session.say("joanne is late")
    screen.wait_printed("joanne is late")
    assert screen.bells() == 1


def test_no_bell_option(chat_server, screens):
    bob = chat_server.login("bob")
    screen = screens(logged_in(chat_server, "alice"), bell=False)
    bob.session.say("hey alice")
    screen.wait_printed("hey alice")
    assert screen.bells() == 0


def test_paste_is_one_message_and_oversized_paste_is_refused(chat_server, screens):
    bob = chat_server.login("bob")
    screen = screens(logged_in(chat_server, "alice"))
    screen.type_and_wait(PASTE_START + "line one\r\nline two\n" + PASTE_END,
                         "line one\nline two")
    screen.type("\r")
    got = bob.next(messages.ChatMessage)
    assert got.text == "line one\nline two"

    big = "x" * 5000
    screen.type_and_wait(PASTE_START + big + PASTE_END, big)
    screen.type("\r")
    screen.wait_printed("over the 4096-byte limit")
    # The refused text leaves the input line, so the warning stays in sight (a
    # 5,000-character input area would fill the terminal) and what is typed next
    # does not land behind it; Up brings it back.
    assert "(Up brings the line back)" in " ".join(screen.tui.printed[-1].split())
    screen.wait(lambda: screen.tui.buffer.text == ""
                and screen.tui.app.renderer.last_rendered_screen is not None
                and len(screen.rows()[0]) <= 3, "the input area back to one row")
    screen.type_and_wait("\x1b[A", big)
    screen.type_and_wait("\x03", "")
    bob.session.who()
    assert isinstance(bob.next(), messages.Users)  # nothing from alice came in between


def test_commands_help_unknown_me_and_private(chat_server, screens):
    bob = chat_server.login("bob")
    screen = screens(logged_in(chat_server, "alice"))
    screen.type("/help\r")
    screen.wait_printed("/msg NAME TEXT")
    screen.type("/hlep\r")
    screen.wait_printed("unknown command /hlep; did you mean /help?")
    assert screen.tui.buffer.text == ""  # what is typed next does not land behind it
    screen.type_and_wait("\x1b[A", "/hlep")  # Up brings it back to fix
    screen.type_and_wait("\x03/me waves\r", "")
    assert bob.next(messages.ChatMessage).action is True
    screen.wait_printed("* alice waves")
    screen.type("/quit\r")
    screen.thread.join(WAIT)
    assert not screen.thread.is_alive()
    bob.next(messages.Leave)


def test_no_color_means_no_colour_codes(chat_server, screens):
    bob = chat_server.login("bob")
    screen = screens(logged_in(chat_server, "alice"), colour=False)
    bob.session.say("plain please")
    screen.wait_printed("plain please")
    sgr = re.findall(r"\x1b\[([0-9;]*)m", screen.out.getvalue())
    codes = {int(c) for seq in sgr for c in seq.split(";") if c}
    assert not codes & (set(range(30, 50)) | set(range(90, 108)))
    assert "<bob> plain please" in screen.out.getvalue()


def test_reconnects_after_server_restart_keeping_the_typed_text(server_factory, screens):
    server = server_factory()
    port = server.port
    attempts = []

    def reconnect():
        attempts.append(1)
        current = restarted[0] if restarted else server
        return logged_in(current, "alice")

    restarted = []
    screen = screens(logged_in(server, "alice"), reconnect,
                     backoff_start=0.05, backoff_cap=0.2)
    screen.type_and_wait("still here", "still here")
    server.thread.stop()
    screen.wait_printed("disconnected")
    screen.wait(lambda: "reconnecting" in screen.toolbar() or "offline" in screen.toolbar(),
                "the toolbar showing the connection state")
    assert "online" not in screen.toolbar()  # no stale count
    restarted.append(server_factory(port=port))
    screen.wait_printed("back online")
    assert screen.tui.state == "connected"
    assert screen.tui.buffer.text == "still here"
    bob = restarted[0].login("bob")
    screen.wait_printed("bob joined")
    screen.type("!\r")
    got = bob.next(messages.ChatMessage)
    assert got.text == "still here!" and got.sender == "alice"


def test_schat_connect_in_a_terminal_uses_the_chat_screen(chat_server, tmp_path):
    """The real CLI under a pseudo-terminal: the first connect asks only about a key (once),
    the second is `schat connect lab` alone and asks only for the password."""
    pexpect = pytest.importorskip("pexpect")
    import json
    import sys

    home = tmp_path / "clienthome"
    home.mkdir()
    (home / "servers.json").write_text(json.dumps(
        {"lab": {"ip": chat_server.host, "port": chat_server.port}}))
    import schat
    repo = os.path.dirname(os.path.dirname(schat.__file__))
    # A terminal that answers no cursor-position request, and says so (test_tui_pty.py).
    env = dict(os.environ, SCHAT_HOME=str(home), SCHAT_PASSWORD=PASSWORDS["alice"],
               TERM="xterm", NO_COLOR="1", PROMPT_TOOLKIT_NO_CPR="1",
               PYTHONPATH=os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
    bob = chat_server.login("bob")

    def spawn(*args, environ=env):
        return pexpect.spawn(sys.executable, ["-m", "schat", "connect", "lab", *args],
                             env=environ, cwd=str(tmp_path), encoding="utf-8", timeout=WAIT,
                             dimensions=(24, 80))

    child = spawn("--user", "alice", "--accept-new", "--no-bell")
    try:
        # No "log in or sign up?" question: connect logs in.
        child.expect(r"Generate one and register it on lab\? This sends your password")
        child.sendline("n")  # no key pair yet: chat with the password alone
        child.expect("Not asked again for lab")
        # Your name for the server, and the name it announces.
        child.expect(r"lab \(testsrv\) · alice · \S*\[1:#lobby\]\S* · 2 here · connected")
        bob.session.say("hello alice")
        child.expect(r"bob\S{0,20}> \S{0,20}hello alice")
        child.send("hi bob\r")
        got = bob.next(messages.ChatMessage)
        assert got.sender == "alice" and got.text == "hi bob"
        child.send("\x04")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert "Log in or sign up" not in child.before
    history = home / "history" / "lab"
    assert history.read_text() == "hi bob\n"
    assert stat.S_IMODE(os.stat(history).st_mode) == 0o600

    # The second time: the name alone; the user is remembered, the key offer is not
    # repeated, and the one question is the password.
    quiet = {k: v for k, v in env.items() if k != "SCHAT_PASSWORD"}
    child = spawn(environ=quiet)
    try:
        child.expect_exact("Password for alice on lab: ")
        child.sendline(PASSWORDS["alice"])
        child.expect(r"lab \(testsrv\) · alice · \S*\[1:#lobby\]\S* · 2 here · connected")
        child.send("\x04")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert "Generate" not in child.before and "User name" not in child.before


def test_long_lines_follow_a_terminal_resize(chat_server, screens):
    bob = chat_server.login("bob")
    screen = screens(logged_in(chat_server, "alice"))
    text = "word " * 40
    bob.session.say("wide " + text)
    screen.wait_printed("<bob> wide")
    wide = screen.tui.printed[-1].split("\n")
    assert max(len(row) for row in wide) > 60 and all(len(row) <= 80 for row in wide)
    screen.size = Size(rows=24, columns=40)
    bob.session.say("narrow " + text)
    screen.wait_printed("<bob> narrow")
    narrow = screen.tui.printed[-1].split("\n")
    assert len(narrow) > len(wide) and all(len(row) <= 40 for row in narrow)
    indent = narrow[0].index("narrow")
    assert all(row.startswith(" " * indent) for row in narrow[1:])


def test_completion_menu_has_room_on_a_full_screen(server_factory, screens):
    chat_server = server_factory(rate_limit=0)
    bob = chat_server.login("bob")
    screen = screens(logged_in(chat_server, "alice"))
    for i in range(30):  # the screen fills up: the prompt sits on the last rows
        bob.session.say(f"filler {i}")
    screen.wait_printed("<bob> filler 29")
    screen.type("/\t")

    def menu_drawn():
        state = screen.tui.buffer.complete_state
        if state is None or not state.completions:
            return False
        return any(isinstance(w.content, CompletionsMenuControl) for w in screen.rows()[1])
    screen.wait(menu_drawn, "the completion menu drawn")
    rows, windows = screen.rows()
    menu = next(pos for w, pos in windows.items()
                if isinstance(w.content, CompletionsMenuControl))
    assert menu.height == len(COMMANDS)
    drawn = "\n".join(rows[menu.ypos:menu.ypos + menu.height])
    assert all(f"/{name}" in drawn for name in COMMANDS)
    assert "alice · [1:#lobby] · 2 here · connected" in rows[-1]  # the toolbar, not covered
    assert menu.ypos + menu.height <= len(rows) - 1


def test_paste_without_bracketed_paste_is_one_message(chat_server, screens):
    bob = chat_server.login("bob")
    screen = screens(logged_in(chat_server, "alice"))
    # The whole text in one write, as a terminal without bracketed paste sends it.
    screen.type_and_wait("line one\nline two\r\nline three\n", "line one\nline two\nline three")
    screen.type("\r")
    got = bob.next(messages.ChatMessage)
    assert got.text == "line one\nline two\nline three"
    screen.wait_printed("<alice> line one")
    bob.session.who()
    assert isinstance(bob.next(), messages.Users)  # nothing else from alice came in between
    screen.type("typed\r")  # an Enter typed on its own still sends
    assert bob.next(messages.ChatMessage).text == "typed"


def test_leaving_after_the_server_went_away_exits_1(server_factory, screens):
    server = server_factory()
    screen = screens(logged_in(server, "alice"))
    server.thread.stop()
    screen.wait_printed("disconnected")
    assert screen.tui.state == "offline" and "online" not in screen.toolbar()
    assert screen.leave() == 1
    assert screen.tui.lost


def test_type_ahead_sends_every_enter(server_factory, screens):
    """Lines typed faster than the screen reads them (several in one read): each its own
    message, in order, nothing merged."""
    chat_server = server_factory(rate_limit=0)
    bob = chat_server.login("bob")
    screen = screens(logged_in(chat_server, "alice"))
    screen.type("".join(f"m{i}\r" for i in range(1, 13)))  # one read: type-ahead
    for i in range(13, 25):                                 # and one write each, at once
        screen.type(f"m{i}\r")
    got = [bob.next(messages.ChatMessage).text for _ in range(24)]
    assert got == [f"m{i}" for i in range(1, 25)]
    screen.wait_printed("<alice> m24")
    assert screen.tui.buffer.text == ""


def test_paste_without_brackets_over_several_reads_keeps_every_line_break(chat_server,
                                                                          screens):
    bob = chat_server.login("bob")
    screen = screens(logged_in(chat_server, "alice"))
    lines = [f"line {i:03d} " + "x" * 47 for i in range(60)]
    lines[30] = ""  # an empty line inside the paste is kept too
    text = "\r".join(lines) + "\r"  # as a terminal sends a paste: CR for each line break
    assert len(text) > 3 * 1024  # more than three reads of the terminal
    screen.type_and_wait(text, "\n".join(lines))
    screen.type("\r")
    assert bob.next(messages.ChatMessage).text == "\n".join(lines)
    # And it was one message: the next thing bob gets is his own /who answer.
    bob.session.who()
    assert isinstance(bob.next(), messages.Users)
    # A paste sent in pieces with a pause shorter than a person types stays one paste.
    screen.wait(lambda: screen.tui.buffer.text == "", "the input line emptied")
    first, second = text[:1500], text[1500:]
    screen.type(first)
    screen.type(second)
    screen.wait(lambda: screen.tui.buffer.text == "\n".join(lines) and not screen.tui.paste.pasting,
                "the paste in the input line")
    screen.type("\r")
    assert bob.next(messages.ChatMessage).text == "\n".join(lines)


def test_welcome_and_toolbar_show_your_name_for_the_server_and_its_own(chat_server,
                                                                       screens):
    screen = screens(logged_in(chat_server, "alice"), server="lab")
    assert "connected to lab (testsrv) as alice" in screen.tui.printed[0]
    screen.wait(lambda: screen.tui.rooms.known, "the rooms")
    assert screen.toolbar() == " lab (testsrv) · alice · [1:#lobby] · 1 here · connected "
    same = screens(logged_in(chat_server, "bob"), server="TestSrv")
    assert "connected to TestSrv as bob" in same.tui.printed[0]  # one name, shown once


def test_narrow_toolbar_keeps_the_connection_state(server_factory, screens):
    server = server_factory()
    screen = screens(logged_in(server, "alice"), server="lab", columns=24)
    bar = screen.toolbar()
    assert bar.rstrip().endswith("connected") and len(bar) <= 24, bar
    server.thread.stop()
    screen.wait(lambda: "offline" in screen.toolbar(), "the toolbar offline")
    assert len(screen.toolbar()) <= 24
    screen.size = Size(rows=24, columns=80)
    # Still in your rooms: the current one is where your lines go once back.
    assert screen.toolbar() == " lab (testsrv) · alice · [1:#lobby] · offline "


def test_irc_habits_names_exit_and_did_you_mean_by_meaning(chat_server, screens):
    chat_server.login("bob")
    screen = screens(logged_in(chat_server, "alice"))
    screen.type("/names\r")
    screen.wait_printed("2 online: alice, bob")
    screen.type("/list\r")                    # IRC's /list: the rooms
    screen.wait_printed("rooms (1):")
    screen.type("/users\r")
    screen.wait_printed("unknown command /users; did you mean /who?")
    screen.type("\x03")  # Ctrl-C on an empty line says how to leave, and stays
    screen.wait_printed("Ctrl-D or /quit to leave")
    screen.type("/exit\r")
    screen.thread.join(WAIT)
    assert not screen.thread.is_alive() and screen.result == 0


def test_away_is_shown_in_who_and_in_your_toolbar(chat_server, screens):
    bob = chat_server.login("bob")
    screen = screens(logged_in(chat_server, "alice"))
    screen.type("/away at lunch\r")
    screen.wait_printed("you are away: at lunch")
    assert "· away ·" in screen.toolbar()
    bob.session.command("/who")
    assert bob.next(messages.Users).away == ({"user": "alice", "text": "at lunch"},)
    screen.type("/names\r")
    screen.wait_printed("2 online: alice (away: at lunch), bob")
    old = chat_server.session(features=())     # a client that knows no rooms nor away
    old.login_password("carol", PASSWORDS["carol"])
    carol = Client(old)
    carol.session.command("/who")
    assert carol.next(messages.Users).away == ()
    assert carol.next(messages.Notice).text == "away: alice (at lunch)"
    carol.close()
    screen.type("/away\r")
    screen.wait_printed("you are back")
    assert "away" not in screen.toolbar()


def test_ignore_hides_a_member_and_is_kept_for_the_next_session(chat_server, screens,
                                                                 tmp_path):
    from schat.client.chat_screen import Ignores
    from schat.store.server_memory import ServerMemory

    store = Ignores(ServerMemory(tmp_path / "server_memory.json"), "lab", "127.0.0.1:1")
    bob, carol = chat_server.login("bob"), chat_server.login("carol")
    screen = screens(logged_in(chat_server, "alice"), ignores=store)
    screen.type("/ignore bob\r")
    screen.wait_printed("ignoring bob")
    bob.session.say("buy my stuff, alice")
    carol.session.say("hello alice")
    screen.wait_printed("<carol> hello alice")
    assert not any("buy my stuff" in line for line in screen.tui.printed)
    assert screen.bells() == 1  # carol's mention only
    screen.type("/ignore\r")
    screen.wait_printed("ignoring: bob")
    screen.leave()

    again = screens(logged_in(chat_server, "alice"), ignores=store)
    bob.session.say("still here")
    carol.session.say("me too")
    again.wait_printed("<carol> me too")
    assert not any("still here" in line for line in again.tui.printed)
    again.type("/unignore bob\r")
    again.wait_printed("no longer ignoring bob")
    bob.session.say("finally")
    again.wait_printed("<bob> finally")
    assert store.names() == []


def test_reconnect_command_logs_in_again_at_once(chat_server, screens):
    def reconnect():
        return logged_in(chat_server, "alice")

    # A long backoff: only /reconnect can make it come back quickly.
    screen = screens(logged_in(chat_server, "alice"), reconnect, backoff_start=30,
                     backoff_cap=30)
    screen.type("/reconnect\r")
    screen.wait_printed("disconnected: you asked to reconnect; reconnecting")
    screen.wait_printed("back online")
    assert screen.tui.state == "connected"

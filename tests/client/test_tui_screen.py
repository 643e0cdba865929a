"""The chat screen as ``schat connect`` builds it: end-to-end DMs, logging in again after a
server restart, log records, the exit status. Real server, real key files, real CLI."""

from __future__ import annotations

import json
import logging
import os
import queue
import sys

import pytest

from chatkit import PASSWORDS, WAIT
from schat.client.chat_screen import build_chat_screen, logs_on_screen
from schat.client.dm import DmClient
from schat.client.local_events import PrivateMessage
from schat.commands.common import AppContext, setup_logging
from schat.commands.login_flow import LoginFlow
from schat.crypto.keys import public_der
from schat.protocol import messages
from tuikit import Screen, logged_in, screens  # noqa: F401  (fixture)


class Peer:
    """Another member with a key: a logged-in session and its DmClient; events to a queue."""

    def __init__(self, server, user, key, root):
        self.session = server.session()
        self.session.login_key(user, key)
        self.events: "queue.Queue" = queue.Queue()
        self.dm = DmClient(self.session, root, key, self.events.put, key_timeout=WAIT)
        self.session.start(self.dm.wrap(self.events.put))

    def next(self, kind):
        while True:
            event = self.events.get(timeout=WAIT)
            if isinstance(event, kind):
                return event


@pytest.fixture
def lab(server_factory, user_keys, tmp_path):
    """A server whose alice and bob have keys, and alice's client home naming it "lab"."""
    server = server_factory()
    for name in ("alice", "bob"):
        server.store.set_public_key(name, public_der(user_keys[name]))
    home = tmp_path / "alice_home"
    home.mkdir()
    config = home / "servers.json"
    config.write_text(json.dumps({"lab": {"ip": server.host, "port": server.port}}))
    return server, AppContext(home=str(home), config=str(config))


def login_flow(app, key=None, password=None):
    """Alice's login to "lab", as ``schat connect`` makes it (key or password set)."""
    flow = LoginFlow(app, "lab", accept_new=True)
    flow.user, flow.private, flow.password = "alice", key, password
    flow.method = "key" if key is not None else "password"
    return flow


def chat_screen(screens_opened, app, key=None, password=None, flow=None, **options):
    """Alice's chat screen, built the way ``schat connect`` builds it."""
    flow = flow or login_flow(app, key, password)
    session = flow.authenticate(flow.connect())

    def build(input, output):
        return build_chat_screen(app, flow, session, input=input, output=output, **options)
    screen = Screen(build=build)
    screens_opened.append(screen)
    return screen


@pytest.fixture
def opened():
    made = []
    yield made
    for screen in made:
        screen.close()


def styles(fragments):
    return {style for style, text in fragments if text.strip()}


def test_private_messages_both_ways_verified_with_the_bell(lab, opened, user_keys, tmp_path):
    server, app = lab
    screen = chat_screen(opened, app, key=user_keys["alice"])
    bob = Peer(server, "bob", user_keys["bob"], tmp_path / "bob_home")
    screen.wait_printed("bob joined")
    bob.dm.send("alice", "psst, alice")
    screen.wait_printed("<- bob: psst, alice")
    line = screen.line_with("psst, alice")
    assert "class:warning" not in styles(line) and "class:dm" in styles(line)
    assert "UNVERIFIED" not in "".join(text for _, text in line)
    screen.wait(lambda: screen.bells() == 1, "the bell")

    screen.type("/msg bob hello bob\r")
    got = bob.next(PrivateMessage)
    assert (got.sender, got.text, got.verified) == ("alice", "hello bob", True)
    screen.wait_printed("-> bob: hello bob")
    assert screen.tui.buffer.text == ""
    assert screen.bells() == 1  # your own messages are silent


def test_refused_private_message_is_recalled_with_up(lab, opened, user_keys):
    server, app = lab
    screen = chat_screen(opened, app, key=user_keys["alice"])
    screen.type("/msg nobody hello there\r")
    screen.wait_printed("no such user: nobody")
    assert "(Up brings the line back)" in " ".join(screen.tui.printed[-1].split())
    # Typed while the refusal was on its way, and after it: never glued to the old line.
    screen.type_and_wait("/quit", "/quit")
    screen.type_and_wait("\x03", "")
    screen.type_and_wait("\x1b[A", "/msg nobody hello there")
    screen.type_and_wait("\x03", "")


def test_changed_key_is_a_loud_warning_and_blocks_sending(lab, opened, user_keys, tmp_path):
    server, app = lab
    screen = chat_screen(opened, app, key=user_keys["alice"])
    bob = Peer(server, "bob", user_keys["bob"], tmp_path / "bob_home")
    bob.dm.send("alice", "first contact")
    screen.wait_printed("<- bob: first contact")  # bob's key pinned now
    bob.session.close()
    screen.wait_printed("bob left")
    bells = screen.bells()

    # bob's account now holds another key (a new device, or someone else).
    server.store.set_public_key("bob", public_der(user_keys["carol"]))
    other = Peer(server, "bob", user_keys["carol"], tmp_path / "bob_other_home")
    other.dm.send("alice", "it is really me")
    screen.wait_printed("<- bob [UNVERIFIED: key changed]: it is really me")
    warning = next(line for line in screen.batches
                   if "key has CHANGED" in "".join(text for _, text in line))
    assert "".join(text for _, text in warning).split(" ", 2)[1] == "!"
    assert "class:warning" in styles(warning)
    assert "class:warning" in styles(screen.line_with("it is really me"))
    screen.wait(lambda: screen.bells() > bells, "the bell")

    shown = len(screen.tui.printed)
    screen.type("/msg bob are you?\r")
    screen.wait(lambda: any("/verify bob" in line for line in screen.tui.printed[shown:]),
                "the refusal")  # refused until the new key is checked
    assert screen.tui.buffer.text == ""
    screen.type_and_wait("\x1b[A", "/msg bob are you?")


@pytest.mark.parametrize("login", ["password", "key"])
def test_logs_in_again_after_a_server_restart(lab, opened, user_keys, server_factory, login):
    server, app = lab
    key = user_keys["alice"] if login == "key" else None
    password = PASSWORDS["alice"] if login == "password" else None
    screen = chat_screen(opened, app, key=key, password=password,
                         backoff_start=0.05, backoff_cap=0.2)
    screen.type_and_wait("still here", "still here")
    port = server.port
    server.thread.stop()
    screen.wait_printed("disconnected")
    assert "online" not in screen.toolbar()
    restarted = server_factory(port=port)
    screen.wait_printed("back online")
    assert screen.tui.state == "connected" and screen.tui.buffer.text == "still here"
    bob = restarted.login("bob")
    screen.wait_printed("bob joined")
    screen.type("!\r")
    got = bob.next(messages.ChatMessage)
    assert (got.sender, got.text) == ("alice", "still here!")
    assert screen.leave() == 0


def test_no_key_refuses_a_private_message(lab, opened):
    server, app = lab
    screen = chat_screen(opened, app, password=PASSWORDS["alice"])
    screen.type("/msg bob hi\r")
    screen.wait_printed("need your own key")
    assert screen.tui.buffer.text == ""
    screen.type_and_wait("\x1b[A", "/msg bob hi")


def test_log_records_print_above_the_input_line(chat_server, screens):
    screen = screens(logged_in(chat_server, "alice"))
    master, slave = os.openpty()
    terminal = os.fdopen(slave, "w")
    logger = logging.getLogger("schat.tuitest")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = logging.StreamHandler(terminal)
    logger.addHandler(handler)
    try:
        with logs_on_screen(screen.tui, logger):
            assert logger.handlers != [handler]
            screen.type_and_wait("half", "half")
            logger.debug("record in seq=%d", 7)
            screen.wait_printed("log DEBUG schat.tuitest: record in seq=7")
            assert screen.tui.buffer.text == "half"
        assert logger.handlers == [handler]
        os.set_blocking(master, False)
        with pytest.raises(BlockingIOError):
            os.read(master, 100)  # nothing was written over the screen
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        terminal.close()
        os.close(master)


def test_debug_raises_only_the_schat_logger():
    root, ours = logging.getLogger(), logging.getLogger("schat")
    saved = (root.level, ours.level, list(root.handlers))
    try:
        setup_logging(logging.DEBUG)
        assert ours.getEffectiveLevel() == logging.DEBUG
        assert root.level == logging.WARNING
        assert not logging.getLogger("asyncio").isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(saved[0])
        ours.setLevel(saved[1])
        for h in root.handlers[:]:
            if h not in saved[2]:
                root.removeHandler(h)


def test_cli_debug_logs_above_the_line_and_server_gone_exits_1(server_factory, tmp_path):
    """``schat --debug connect`` under a pseudo-terminal: log lines on the screen, then the
    server goes away for good and leaving exits 1 with the reason."""
    pexpect = pytest.importorskip("pexpect")
    import schat

    server = server_factory()
    home = tmp_path / "clienthome"
    home.mkdir()
    (home / "servers.json").write_text(json.dumps(
        {"lab": {"ip": server.host, "port": server.port}}))
    repo = os.path.dirname(os.path.dirname(schat.__file__))
    # The pty answers no cursor-position request and, unlike the other terminal tests
    # (test_tui_pty.py), does not say so: prompt_toolkit waits for answers, then gives up.
    env = dict(os.environ, SCHAT_HOME=str(home), SCHAT_PASSWORD=PASSWORDS["alice"],
               TERM="xterm", NO_COLOR="1",
               PYTHONPATH=os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
    child = pexpect.spawn(sys.executable, ["-m", "schat", "--debug", "connect", "lab",
                                           "--user", "alice", "--accept-new", "--no-bell"],
                          env=env, cwd=str(tmp_path), encoding="utf-8", timeout=WAIT,
                          dimensions=(24, 100))
    bob = None
    try:
        child.expect("Generate one and register it")
        child.sendline("n")
        child.expect(r"lab \(testsrv\) · alice · \S*\[1:#lobby\]\S* · 1 here · connected")
        child.send("typing")
        bob = server.login("bob")
        child.expect(r"log DEBUG schat\S*: record in")
        child.expect(r"alice\S* \S*#lobby\S*> \S{0,20}typing")  # the input line drawn again below the log lines
        server.thread.stop()
        child.expect("disconnected")
        child.send("\x03\x04")
        child.expect("disconnected from lab")
        child.expect(pexpect.EOF)
        assert "asyncio" not in child.before
    finally:
        child.close(force=True)
        if bob is not None:
            bob.close()
    assert child.exitstatus == 1


def test_query_sends_plain_lines_privately_and_keeps_them_out_of_the_history_file(
        lab, opened, user_keys, tmp_path):
    server, app = lab
    screen = chat_screen(opened, app, key=user_keys["alice"])
    bob = Peer(server, "bob", user_keys["bob"], tmp_path / "bob_home")
    screen.wait_printed("bob joined")
    screen.type("/query bob\r")
    screen.wait_printed("your lines go to bob alone")
    screen.wait(lambda: "".join(t for _, t in screen.tui.prompt()) == "alice -> bob> ",
                "the prompt naming the peer")
    assert "-> bob" in screen.toolbar()
    screen.type("the code is 0451\r")
    got = bob.next(PrivateMessage)
    assert (got.sender, got.text, got.verified) == ("alice", "the code is 0451", True)
    screen.wait_printed("-> bob: the code is 0451")
    screen.type("/query\r")
    screen.wait_printed("your lines go to #lobby again (no more to bob alone)")
    assert "".join(t for _, t in screen.tui.prompt()) == "alice #lobby> "
    screen.type("for everyone\r")
    assert bob.next(messages.ChatMessage).text == "for everyone"
    screen.type("/msg bob and 0452\r")
    assert bob.next(PrivateMessage).text == "and 0452"
    screen.wait_printed("-> bob: and 0452")
    history = (app.home.root / "history" / "lab").read_text()
    assert "0451" not in history and "0452" not in history
    assert "for everyone" in history and "/query bob" in history
    screen.type_and_wait("\x1b[A", "/msg bob and 0452")  # in memory for this session


def test_yourself_one_line_for_a_note_and_no_safety_code(lab, opened, user_keys):
    server, app = lab
    screen = chat_screen(opened, app, key=user_keys["alice"])
    screen.type("/msg alice remember the milk\r")
    screen.wait_printed("-> alice: remember the milk")
    screen.type("/who\r")  # a later line: by then a second copy would have been printed
    screen.wait_printed("1 online: alice")
    assert sum("remember the milk" in line for line in screen.tui.printed) == 1
    screen.type("/verify alice\r")
    screen.wait_printed("/verify compares your key with another member's")
    assert not any("safety code" in line for line in screen.tui.printed)

"""The real `schat connect` with rooms, in a terminal: under a pseudo-terminal (the bytes
it writes: Alt-N and Ctrl-N/Ctrl-P, the dim attribute of history lines) and under tmux
(the screen as a person sees it, the prompt and the toolbar included)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time

import pexpect
import pytest

from chatkit import WAIT, answer, until
from schat.protocol import messages
from test_tui_pty import connect, member  # noqa: F401  (fixture)


def sgr_before(text: str, needle: str) -> list:
    """The parameters of the last SGR sequence written before ``needle``."""
    at = text.index(needle)
    start = text.rindex("\x1b[", 0, at) + 2
    return text[start:text.index("m", start)].split(";")


def test_keys_switch_rooms_and_history_is_dim_in_the_terminal(chat_server, member):
    home, env = member
    bob = chat_server.login("bob")
    assert answer(bob, "/join #dev") is None
    bob.session.say("said before alice came", room="#dev")
    assert bob.session.wait_acked(WAIT)
    child = connect(home, env)
    try:
        child.expect(r"\[1:#lobby\]\S* · 2 here · connected")
        child.send("/join #dev\r")
        child.expect("said before alice came")
        # NO_COLOR is set: no colour, but the dim attribute (SGR 2) marks history.
        assert "2" in sgr_before(child.before + child.after, "said before alice came")
        child.expect(r"\[2:#dev\]\S* · 2 here")
        child.send("\x1b1")                                   # Alt-1
        child.expect(r"\[1:#lobby\]\S* 2:#dev")
        bob.session.say("alice, a question", room="#dev")
        child.expect(r"#dev\S* <\S*bob\S*> \S*alice, a question")  # tagged with its room
        child.expect(r"2:#dev\(1!\)")                        # unread, and it mentions you
        child.send("\x0e")                                    # Ctrl-N
        child.expect(r"1:#lobby\S* \S*\[2:#dev\]")
        child.send("sure\r")
        assert until(bob, messages.ChatMessage, lambda m: m.text == "sure").room == "#dev"
        child.send("\x04")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    bob.close()


# -- tmux ------------------------------------------------------------------------------------
@pytest.fixture
def tmux(tmp_path):
    """A private tmux server (its own socket); ``run(*args)`` runs a tmux command there."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    socket = str(tmp_path / "tmux.sock")

    def run(*args):
        return subprocess.run(["tmux", "-S", socket, "-f", "/dev/null", *args], check=True,
                              capture_output=True, text=True, timeout=WAIT).stdout
    yield run
    subprocess.run(["tmux", "-S", socket, "kill-server"], capture_output=True, timeout=WAIT)


def screen_text(tmux, predicate, what):
    """The visible screen once ``predicate(rows)`` holds (polled: tmux has no events)."""
    deadline = time.monotonic() + WAIT
    while True:
        rows = tmux("capture-pane", "-p", "-t", "chat").rstrip("\n").split("\n")
        if predicate(rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n" + "\n".join(rows))
        time.sleep(0.05)


def test_room_switching_as_seen_under_tmux(chat_server, member, tmux):
    home, env = member
    bob = chat_server.login("bob")
    assert answer(bob, "/join #dev") is None
    command = " ".join(["env", *(shlex.quote(f"{k}={v}") for k, v in env.items()
                                 if k.startswith(("SCHAT_", "PYTHON", "NO_COLOR", "PATH"))),
                        shlex.quote(sys.executable), "-m", "schat", "connect", "lab",
                        "--no-bell"])
    tmux("new-session", "-d", "-s", "chat", "-x", "72", "-y", "12", "-c", str(home), command)

    def shows(toolbar, prompt):
        return lambda rows: rows[-1] == toolbar and rows[-2] == prompt

    screen_text(tmux, shows(" lab (testsrv) · alice · [1:#lobby] · 2 here · connected",
                            "alice #lobby>"), "the toolbar and the prompt")
    tmux("send-keys", "-t", "chat", "/join #dev", "Enter")
    screen_text(tmux, shows(" lab (testsrv) · alice · 1:#lobby [2:#dev] · 2 here · connected",
                            "alice #dev>"), "#dev current")
    tmux("send-keys", "-t", "chat", "M-1")
    screen_text(tmux, shows(" lab (testsrv) · alice · [1:#lobby] 2:#dev · 2 here · connected",
                            "alice #lobby>"), "Alt-1")
    bob.session.say("news in dev", room="#dev")
    rows = screen_text(tmux, shows(" lab (testsrv) · alice · [1:#lobby] 2:#dev(1) · 2 here · "
                                   "connected", "alice #lobby>"), "the unread count")
    # The change of room is said once, before the next line; #dev's line is tagged.
    at = next(i for i, row in enumerate(rows) if row.endswith("news in dev"))
    assert rows[at - 1][6:] == "-- switched to #lobby" and rows[at][6:] == \
        "#dev <bob> news in dev", rows
    tmux("send-keys", "-t", "chat", "C-n")
    screen_text(tmux, shows(" lab (testsrv) · alice · 1:#lobby [2:#dev] · 2 here · connected",
                            "alice #dev>"), "Ctrl-N")
    tmux("send-keys", "-t", "chat", "C-d")
    bob.close()

"""The real `schat connect` in a pseudo-terminal: type-ahead, a paste without brackets,
Ctrl-C on an empty line, and Ctrl-Z / fg under a shell with job control."""

from __future__ import annotations

import json
import os
import sys
import termios
import time
from pathlib import Path

import pexpect
import pytest

from chatkit import PASSWORDS, WAIT
from schat.paths import Home
from schat.protocol import messages
from schat.store.known_servers import KnownServers
from schat.store.server_memory import ServerMemory

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def member(chat_server, tmp_path):
    """Alice's client home naming the server "lab", her name remembered there, and the
    environment a terminal session of hers runs with."""
    home = tmp_path / "alice"
    home.mkdir()
    (home / "servers.json").write_text(json.dumps(
        {"lab": {"ip": chat_server.host, "port": chat_server.port}}))
    memory = ServerMemory(Home(home).server_memory)
    address = f"{chat_server.host}:{chat_server.port}"
    memory.logged_in("lab", address, "alice", "password")
    memory.decline_key_offer("lab", address)
    KnownServers(Home(home).known_servers).pin("lab", chat_server.host, chat_server.port,
                                               chat_server.fingerprint)
    # The test's pty answers no cursor-position request (CPR): PROMPT_TOOLKIT_NO_CPR
    # says so up front, as for such a terminal, instead of prompt_toolkit finding out by
    # waiting (up to 1 s at a print or at the exit, until it gives up 2 s after its first
    # request: seconds per test). test_tui_screen.py's --debug test keeps that case.
    env = dict(os.environ, SCHAT_HOME=str(home), SCHAT_PASSWORD=PASSWORDS["alice"],
               TERM="xterm", NO_COLOR="1", PROMPT_TOOLKIT_NO_CPR="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO),
                                                        os.environ.get("PYTHONPATH")])))
    return home, env


def connect(home, env):
    return pexpect.spawn(sys.executable, ["-m", "schat", "connect", "lab", "--no-bell"],
                         env=env, cwd=str(home), encoding="utf-8", timeout=WAIT,
                         dimensions=(24, 80))


def raw(fd) -> bool:
    lflag = termios.tcgetattr(fd)[3]
    return not lflag & (termios.ICANON | termios.ECHO)


def test_type_ahead_and_a_paste_without_brackets(chat_server, member):
    home, env = member
    bob = chat_server.login("bob")
    child = connect(home, env)
    try:
        child.expect(r"alice · \S*\[1:#lobby\]\S* · 2 here · connected")
        for i in range(1, 13):  # as fast as the terminal takes them: type-ahead
            child.send(f"m{i}\r")
        assert [bob.next(messages.ChatMessage).text for _ in range(12)] == \
            [f"m{i}" for i in range(1, 13)]
        # A paste from a terminal that does not bracket it: CR line breaks, one write.
        lines = [f"pasted line {i} " + "y" * 30 for i in range(20)]
        child.send("\r".join(lines) + "\r")
        child.expect("pasted line 19")  # in the input line, waiting for Enter
        child.send("\r")  # even at once: a lone Enter is never part of the paste
        assert bob.next(messages.ChatMessage).text == "\n".join(lines)
        # Ctrl-C on an empty line says how to leave (and does not leave).
        child.send("\x03")
        child.expect("Ctrl-D or /quit to leave")
        child.send("\x04")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_ctrl_z_then_fg_restores_raw_mode_and_the_screen(chat_server, member):
    home, env = member
    bob = chat_server.login("bob")
    shell_env = dict(env, PS1="SHELL$ ")
    shell = pexpect.spawn("bash", ["--norc", "--noprofile", "-i"], env=shell_env,
                          cwd=str(home), encoding="utf-8", timeout=WAIT, dimensions=(24, 80))
    try:
        shell.expect_exact("SHELL$ ")
        shell.sendline(f"{sys.executable} -m schat connect lab --no-bell")
        shell.expect(r"alice · \S*\[1:#lobby\]\S* · 2 here · connected")
        assert raw(shell.child_fd)
        shell.send("half")
        shell.send("\x1a")  # Ctrl-Z
        shell.expect("Stopped")
        shell.expect_exact("SHELL$ ")
        shell.sendline("fg")
        # Drawn again, with the half-typed line, in raw mode.
        shell.expect(r"alice\S* \S*#lobby\S*> \S{0,20}half")
        shell.expect("connected")
        deadline = time.monotonic() + WAIT
        while not raw(shell.child_fd) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert raw(shell.child_fd)
        shell.send(" after fg\r")
        assert bob.next(messages.ChatMessage).text == "half after fg"
        shell.expect(r"alice\S{0,20}> \S{0,20}half after fg")
        # Nothing the terminal would only echo in cooked mode (a cursor-position answer).
        assert "^[[" not in shell.before
        # SIGTSTP from outside (kill -TSTP) leaves the screen the same way.
        pid = int(pexpect.run(f"pgrep -f -n -P {shell.pid} 'schat connect lab'",
                              encoding="utf-8").split()[0])
        os.kill(pid, 20)  # SIGTSTP
        shell.expect("Stopped")
        shell.expect_exact("SHELL$ ")
        shell.sendline("fg")
        shell.expect("connected")
        shell.send("again\r")
        assert bob.next(messages.ChatMessage).text == "again"
        shell.send("\x04")
        shell.expect_exact("SHELL$ ")
        shell.sendline("echo status=$?")
        shell.expect("status=0")
    finally:
        shell.close(force=True)

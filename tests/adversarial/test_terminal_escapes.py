"""A modified server writes escape sequences into every string it controls; the real
`schat` command under a pseudo-terminal prints none of them raw (issue #11 item 4).

The bytes checked are everything the terminal received, stdout and stderr
together: line mode, ``--json``, a refused login, a goodbye during login, and
the chat screen (where prompt_toolkit writes its own sequences, so the check
is for the payload's).
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
from pathlib import Path

import pytest

from chatkit import WAIT
from hostile_server import HostileServer, now_ms
from schat.protocol import messages

pexpect = pytest.importorskip("pexpect")

REPO = Path(__file__).resolve().parents[2]

EVIL = ("\x1b]0;PWNED\x07\x1b[2J\u009b31m\u202eRTL\u2066iso\u2069\x7f\x08\r\u0085\u2028"
        "tail\n[12:00:00] <alice> forged")

# What a terminal would act on, as UTF-8 bytes: C0 but newline, DEL, C1 (U+0080-U+009F),
# bidi embeddings/overrides (U+202A-U+202E) and isolates (U+2066-U+2069), U+2028/U+2029.
RAW_CONTROL = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xaa-\xae\xa8\xa9]"
                         rb"|\xe2\x81[\xa6-\xa9]")


def hostile_login(link, msg):
    """Welcome with a hostile server name and MOTD, then hostile events and a bye."""
    link.welcome(msg.user, motd=EVIL, server_name=EVIL[:200])
    link.send(messages.Notice(text=EVIL, time=now_ms()),
              messages.ChatMessage(id=1, time=now_ms(), sender="mallory", text=EVIL),
              messages.Leave(user="mallory", time=now_ms(), reason=EVIL),
              messages.Error(code="invalid", text=EVIL))
    link.bye(EVIL[:300])


@pytest.fixture
def evil_home(tmp_path):
    made = []

    def start(on_login, host_key):
        srv = HostileServer(host_key, on_login=on_login)
        made.append(srv)
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        (home / "servers.json").write_text(json.dumps({"evil": {"ip": srv.host,
                                                                "port": srv.port}}))
        return home

    yield start
    for srv in made:
        srv.close()


def spawn(home: Path, args, stdin: str = None):
    """`schat ARGS` under a pty; with ``stdin``, standard input comes from that FIFO."""
    # A terminal that answers no cursor-position request, and says so (test_tui_pty.py).
    env = dict(os.environ, SCHAT_HOME=str(home), SCHAT_PASSWORD="alice-pass-1", TERM="xterm",
               NO_COLOR="1", PROMPT_TOOLKIT_NO_CPR="1", PYTHONPATH=os.pathsep.join(
                   filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    if stdin is None:
        child = pexpect.spawn(sys.executable, ["-m", "schat", *args], env=env, cwd=str(home),
                              timeout=WAIT, dimensions=(24, 100))
    else:
        child = pexpect.spawn("/bin/sh", ["-c", 'exec "$0" -m schat "$@" < "$FIFO"',
                                          sys.executable, *args],
                              env=dict(env, FIFO=stdin), cwd=str(home), timeout=WAIT,
                              dimensions=(24, 100))
    child.logfile_read = io.BytesIO()  # every byte the terminal received
    return child


def run_to_end(child) -> bytes:
    child.expect(pexpect.EOF)
    child.close()
    return child.logfile_read.getvalue().replace(b"\r\n", b"\n")


def held_fifo(tmp_path):
    """A FIFO whose write end this process holds open (standard input that stays silent)."""
    path = tmp_path / "stdin"
    os.mkfifo(path)
    return str(path), os.open(path, os.O_RDWR)


@pytest.mark.parametrize("mode", [[], ["--json"]], ids=["line", "json"])
def test_line_and_json_modes_print_no_raw_control(evil_home, tmp_path, host_key, mode):
    home = evil_home(hostile_login, host_key)
    fifo, fd = held_fifo(tmp_path)
    try:
        out = run_to_end(spawn(home, ["connect", "evil", "--user", "alice", "--accept-new",
                                      *mode], stdin=fifo))
    finally:
        os.close(fd)
    assert b"PWNED" in out and b"forged" in out, out  # everything arrived and was printed
    assert not RAW_CONTROL.search(out), RAW_CONTROL.search(out)
    # No line starts with the forged member line.
    assert not re.search(rb"^\[12:00:00\] <alice>", out, re.M)
    if mode:
        records = [json.loads(line) for line in out.decode().splitlines()
                   if line.startswith("{")]
        assert any(r.get("text") == EVIL for r in records)  # faithful, just escaped
    else:
        assert b"^[]0;PWNED^G^[[2J" in out


@pytest.mark.parametrize("refusal", ["error", "bye"])
def test_a_refused_login_prints_no_raw_control(evil_home, host_key, refusal):
    def refuse(link, msg):
        if refusal == "error":
            link.send(messages.Error(code="auth_failed", text=EVIL[:300]))
        else:
            link.bye(EVIL[:300])

    home = evil_home(refuse, host_key)
    child = spawn(home, ["login", "evil", "--user", "alice", "--accept-new"],
                  stdin="/dev/null")
    out = run_to_end(child)
    assert child.exitstatus == 1
    assert b"PWNED" in out, out
    assert not RAW_CONTROL.search(out), RAW_CONTROL.search(out)


def test_the_chat_screen_prints_no_payload_raw(evil_home, host_key):
    def login(link, msg):
        link.welcome(msg.user, motd="motd\u202eEVOM\x1b]0;PWNED-MOTD\x07")
        link.send(messages.ChatMessage(id=1, time=now_ms(), sender="mallory",
                                       text="A\u202eB\u2066C\x1b]0;PWNED-TITLE\x07\u009b2J end"))

    home = evil_home(login, host_key)
    child = spawn(home, ["connect", "evil", "--user", "alice", "--accept-new", "--no-bell"])
    try:
        child.expect(b"Generate one and register it")
        child.sendline("n")
        child.expect(b"PWNED-TITLE")
        child.expect(b" end")
        child.send("\x04")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    everything = child.logfile_read.getvalue()
    for payload in (b"\x1b]0;PWNED", "\u202e".encode(), "\u2066".encode(), b"\xc2\x9b"):
        assert payload not in everything, payload

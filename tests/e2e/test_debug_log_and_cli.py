"""A whole session under --debug logging holds no secret; the CLI via CliRunner."""

from __future__ import annotations

import base64
import json
import logging

from chatkit import PASSWORDS
from schat import logs
from schat.cli import cli
from schat.crypto.keys import fingerprint
from schat.protocol import messages
from schat.store.known_servers import KnownServers


def secret_forms(raw: bytes):
    """The ways a key could show up in a log line."""
    return {raw.hex(), raw.hex().upper(), base64.b64encode(raw).decode(), repr(raw)[2:-1]}


def test_debug_log_of_a_session_has_no_secrets(chat_server, caplog, tmp_path):
    caplog.set_level(logging.DEBUG, logger="schat")
    # The same records also go through the --log-file handlers, as text and as JSON.
    files = {fmt: tmp_path / f"schat-{fmt}.log" for fmt in ("text", "json")}
    handlers = [logs.file_handler(path, logs.parse_rotation("1MiB"), 2, fmt)
                for fmt, path in files.items()]
    for handler in handlers:
        logging.getLogger("schat").addHandler(handler)
    alice = chat_server.login("alice")
    bob = chat_server.login("bob")
    alice.session.say("the eagle lands at noon")
    assert bob.next(messages.ChatMessage).text == "the eagle lands at noon"
    bob.session.command("/me hides the plans")
    assert alice.next(messages.ChatMessage).action
    assert alice.session.wait_acked(5) and bob.session.wait_acked(5)

    channels = [c.session._conn._channel for c in (alice, bob)]
    links = chat_server.thread.call(lambda: [l.conn._channel for l in chat_server.server.links])
    secrets = set()
    for ch in channels + links:
        for raw in (ch._send_key, ch._recv_key):
            secrets |= secret_forms(raw)
        for iv in (ch._send_iv, ch._recv_iv):
            secrets |= secret_forms(iv.to_bytes(12, "big"))
    alice.close()
    bob.close()
    chat_server.thread.stop()
    for handler in handlers:
        logging.getLogger("schat").removeHandler(handler)
        handler.close()

    text_file = files["text"].read_text(encoding="utf-8")
    json_lines = files["json"].read_text(encoding="utf-8").splitlines()
    entries = [json.loads(line) for line in json_lines]
    ours = [r for r in caplog.records if r.name.startswith("schat")]
    # Every record once, with its level. Records of different threads may reach the
    # two handlers in different orders (each handler has its own lock), so the
    # lines are compared as a whole, not in order.
    assert sorted((e["message"], e["level"]) for e in entries) == \
        sorted((r.getMessage(), r.levelname.lower()) for r in ours)
    for log in ("\n".join(r.getMessage() for r in caplog.records), text_file,
                "\n".join(json_lines)):
        assert "record out seq=" in log and "handshake complete" in log  # debug is really on
        assert chat_server.fingerprint in log
        for text in ("the eagle lands at noon", "hides the plans", *PASSWORDS.values()):
            assert text not in log
        for secret in secrets:
            assert secret not in log


def write_servers(home, port, **extra):
    (home / "servers.json").write_text(json.dumps({"local": {"ip": "127.0.0.1", "port": port,
                                                             **extra}}))


def test_cli_login_pins_on_first_use(chat_server, runner, home):
    write_servers(home, chat_server.port)
    env = {"SCHAT_PASSWORD": PASSWORDS["alice"]}
    refused = runner.invoke(cli, ["login", "local", "--user", "alice"], env=env)
    assert refused.exit_code == 1
    assert chat_server.fingerprint in refused.output and "--accept-new" in refused.output
    ok = runner.invoke(cli, ["login", "local", "--user", "alice", "--accept-new"], env=env)
    assert ok.exit_code == 0, ok.output
    assert "Logged in to local as alice" in ok.output
    again = runner.invoke(cli, ["login", "local", "--user", "alice"], env=env)
    assert again.exit_code == 0, again.output
    bad = runner.invoke(cli, ["login", "local", "--user", "alice"],
                        env={"SCHAT_PASSWORD": "not-it-123"})
    assert bad.exit_code == 1 and "wrong user name or password" in bad.output
    assert "not-it-123" not in bad.output


def test_cli_refuses_changed_key_loudly(chat_server, runner, home, other_host_key):
    write_servers(home, chat_server.port)
    KnownServers(home / "known_servers").pin("local", "127.0.0.1", chat_server.port,
                                             fingerprint(other_host_key))
    result = runner.invoke(cli, ["login", "local", "--user", "alice", "--accept-new"],
                           env={"SCHAT_PASSWORD": PASSWORDS["alice"]}, input="yes\n")
    assert result.exit_code == 1
    assert "@@@" in result.output and "WARNING: SERVER KEY HAS CHANGED" in result.output
    assert fingerprint(other_host_key) in result.output
    assert chat_server.fingerprint in result.output
    assert "schat servers forget local" in result.output
    assert "Traceback" not in result.output


def test_cli_servers_json_fingerprint_checked(chat_server, runner, home, other_host_key):
    write_servers(home, chat_server.port, fingerprint=fingerprint(other_host_key))
    result = runner.invoke(cli, ["login", "local", "--user", "alice"],
                           env={"SCHAT_PASSWORD": PASSWORDS["alice"]})
    assert result.exit_code == 1 and "SERVER KEY HAS CHANGED" in result.output


def test_cli_connect_pipe_json(chat_server, runner, home):
    write_servers(home, chat_server.port)
    bob = chat_server.login("bob")
    result = runner.invoke(cli, ["connect", "local", "--user", "alice", "--accept-new", "--json"],
                           env={"SCHAT_PASSWORD": PASSWORDS["alice"]},
                           input="first line\n/who\nsecond line\n")
    assert result.exit_code == 0, result.output
    lines = [json.loads(l) for l in result.output.splitlines() if l.startswith("{")]
    assert lines[0]["type"] == "welcome" and lines[0]["users"] == ["alice", "bob"]
    assert any(l["type"] == "users" for l in lines)
    texts = [bob.next(messages.ChatMessage).text for _ in range(2)]
    assert texts == ["first line", "second line"]
    bob.close()


def test_cli_signup_disabled_and_missing_password(server_factory, runner, home):
    srv = server_factory(allow_signup=False)
    write_servers(home, srv.port)
    result = runner.invoke(cli, ["signup", "local", "--user", "zed", "--accept-new"],
                           env={"SCHAT_PASSWORD": "zed-pass-1234"})
    assert result.exit_code == 1 and "does not allow sign-up" in result.output
    # No password and nobody to ask: exit 1 with the way to give one, as --help says.
    result = runner.invoke(cli, ["login", "local", "--user", "zed"])
    assert result.exit_code == 1 and "SCHAT_PASSWORD" in result.output

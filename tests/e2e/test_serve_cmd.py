"""`schat serve` options as a process: servers.json address, motd file, no-signup, SIGINT."""

from __future__ import annotations

import json
import signal
import socket
import subprocess

from chatkit import PASSWORDS, install_host_key, make_store
from services import PortHold
from test_cli_processes import Proc


def test_serve_from_servers_json_with_motd_file_and_no_signup(tmp_path):
    server_home = tmp_path / "srv"
    server_home.mkdir()
    install_host_key(server_home)
    make_store(server_home).close()
    # The port is held until the server listens on it: picked free and left free, it
    # could be taken by another process before the server starts.
    held = PortHold()
    port = held.port
    (server_home / "servers.json").write_text(
        json.dumps({"Team": {"ip": "127.0.0.1", "port": port}}))
    (server_home / "motd.txt").write_text("rules:\nbe kind\n")
    srv = Proc(["serve", "--server", "Team", "--no-signup", "--motd", "@motd.txt"], server_home,
               stdin=subprocess.DEVNULL)
    assert srv.line("listening on").endswith(f"127.0.0.1:{port}")
    held.close()
    assert srv.line("sign-up").startswith("sign-up is closed")

    client_home = tmp_path / "cli"
    client_home.mkdir()
    (client_home / "servers.json").write_text(
        json.dumps({"Team": {"ip": "127.0.0.1", "port": port}}))
    up = Proc(["signup", "Team", "--user", "newbie", "--accept-new"], client_home,
              env={"SCHAT_PASSWORD": "newbie-pass-1"}, stdin=subprocess.DEVNULL)
    assert up.finish() == 1 and "does not allow sign-up" in up.stderr
    ann = Proc(["connect", "Team", "--user", "alice", "--json"], client_home,
               env={"SCHAT_PASSWORD": PASSWORDS["alice"]})
    welcome = json.loads(ann.line('"welcome"'))
    assert welcome["text"] == "rules:\nbe kind" and welcome["server"] == "Team"

    srv.p.send_signal(signal.SIGINT)
    assert srv.finish() == 0
    assert ann.finish() == 1 and "server shutting down" in ann.stderr
    assert "Traceback" not in srv.stderr
    assert "failed login for newbie" in srv.stderr and "newbie-pass-1" not in srv.stderr


def test_serve_bad_inputs_are_clean_errors(home, runner):
    from schat.cli import cli

    (home / "server").mkdir(parents=True)
    (home / "server" / "host_key.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n")
    result = runner.invoke(cli, ["--home", str(home), "serve", "--port", "0"])
    assert result.exit_code == 1 and "host_key.pem" in result.output
    assert "not a valid RSA private key" in result.output

    install_host_key(home)
    result = runner.invoke(cli, ["--home", str(home), "serve", "--motd", "@/nonexistent/motd"])
    assert result.exit_code == 2 and "cannot read" in result.output
    result = runner.invoke(cli, ["--home", str(home), "serve", "--motd", "x" * 5000])
    assert result.exit_code == 2 and "longer than 4096 bytes" in result.output
    result = runner.invoke(cli, ["--home", str(home), "serve", "--server", "Nope"])
    assert result.exit_code == 1 and "no server named 'Nope': you have no servers yet" in result.output

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(cli, ["--home", str(home), "serve", "--port", str(port)])
    assert result.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in result.output

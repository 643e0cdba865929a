"""`schat serve --settings FILE` through the real CLI: parsing, precedence,
--print-settings, and every error as one line naming the file, line and key."""

from __future__ import annotations

import copy
import sys

import click
import pytest

from schat.cli import cli, with_global_options
from schat.commands.serve import serve
from schat.commands.settings_file import mask_secrets, settings_options

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def print_settings(runner, *args, **kwargs):
    return runner.invoke(cli, ["serve", *args, "--print-settings"], **kwargs)


def settings_of(result) -> dict:
    assert result.exit_code == 0, result.output
    return tomllib.loads(result.stdout)


def test_every_serve_flag_is_a_key(runner, home):
    command = with_global_options(serve)
    keys = settings_options(command)
    flags = {opt[2:] for p in command.params if isinstance(p, click.Option)
             for opt in p.opts if opt.startswith("--")}
    assert set(keys) == flags - {"settings", "print-settings", "init"}
    printed = settings_of(print_settings(runner))
    # Every key is printed, with its effective value (or commented out when unset).
    unset = {key for key in keys if key not in printed}
    assert unset == {"server", "log-file", "metrics", "config", "store", "bus"}
    assert printed["rate-limit"] == 5.0 and printed["login-deadline"] == 30.0
    assert printed["host"] == "127.0.0.1" and printed["port"] == 5555
    assert printed["home"] == str(home)


def test_file_values_apply_and_flags_override_them(runner, home, tmp_path):
    path = tmp_path / "schat.toml"
    path.write_text('# a comment\nrate-limit = 2\nrate-burst = 4\nallow-signup = false\n'
                    'motd = """\nline one\nline two"""\nname = "Team"\nlog-level = "DEBUG"\n'
                    'log-rotate = "daily"\nmetrics = 9464\nping-interval = 10\n')
    res = print_settings(runner, "--settings", str(path), "--rate-burst", "9", "--allow-signup")
    got = settings_of(res)
    assert (got["rate-limit"], got["rate-burst"], got["allow-signup"]) == (2.0, 9, True)
    assert got["motd"] == "line one\nline two" and got["name"] == "Team"
    assert got["log-level"] == "debug" and got["log-rotate"] == "daily"
    assert got["metrics"] == "127.0.0.1:9464"
    # The ping timeout follows a shorter ping interval, as with the flags.
    assert (got["ping-interval"], got["ping-timeout"]) == (10.0, 10.0)
    assert f"rate-limit = 2.0  # from {path}, line 2\n" in res.stdout
    assert "rate-burst = 9  # from the command line\n" in res.stdout
    assert "allow-signup = true  # from the command line\n" in res.stdout
    # -v/--debug before the command are flags too: they win over the file.
    res = runner.invoke(cli, ["-v", "serve", "--settings", str(path), "--print-settings"])
    assert settings_of(res)["log-level"] == "info"


def test_printed_settings_are_a_settings_file(runner, home, tmp_path):
    first = print_settings(runner, "--rate-limit", "1.5", "--motd", 'say "hi"\\ \u00e9\t!',
                           "--log-file", str(tmp_path / "x.log"))
    saved = tmp_path / "saved.toml"
    saved.write_text(first.stdout)
    second = print_settings(runner, "--settings", str(saved))
    assert settings_of(second) == settings_of(first)


def test_home_from_the_file_unless_a_flag_gives_one(runner, home, tmp_path, spare_keys):
    spare_keys("other_host")  # the host key that `serve --init` makes
    elsewhere = tmp_path / "service-home"
    path = tmp_path / "schat.toml"
    path.write_text(f'home = "{elsewhere}"\n')
    # The file wins over $SCHAT_HOME (the `home` fixture sets it) ...
    assert settings_of(print_settings(runner, "--settings", str(path)))["home"] == str(elsewhere)
    res = runner.invoke(cli, ["serve", "--settings", str(path), "--init"])
    assert res.exit_code == 0 and (elsewhere / "server" / "host_key.pem").exists()
    assert not (home / "server").exists()
    # ... and --home, before or after the command, wins over the file.
    other = tmp_path / "other"
    for args in (["--home", str(other), "serve", "--settings", str(path)],
                 ["serve", "--settings", str(path), "--home", str(other)]):
        res = runner.invoke(cli, [*args, "--print-settings"])
        assert settings_of(res)["home"] == str(other), args


def test_a_flag_added_later_is_a_key_without_any_change(runner, home, tmp_path):
    # As a later change would add --relay: a copy of serve with one more option.
    command = copy.copy(with_global_options(serve))
    command.params = command.params + [click.Option(
        ["--relay"], metavar="URL", help="Where live traffic goes.")]
    path = tmp_path / "schat.toml"
    path.write_text('relay = "redis://:s3cret-pw@cache.example:6379/0"\n'
                    'relay-password = "x"\n')
    res = runner.invoke(command, ["--settings", str(path), "--print-settings"])
    assert res.exit_code == 1 and "unknown setting 'relay-password'" in res.stderr
    path.write_text('relay = "redis://:s3cret-pw@cache.example:6379/0"\n')
    res = runner.invoke(command, ["--settings", str(path), "--print-settings"])
    assert res.exit_code == 0, res.output
    # Printed with its password masked.
    assert f'relay = "redis://:***@cache.example:6379/0"  # from {path}, line 1\n' in res.stdout
    assert "s3cret-pw" not in res.output
    res = runner.invoke(command, ["--settings", str(path), "--relay", "redis://localhost/1",
                                  "--print-settings"])
    assert 'relay = "redis://localhost/1"  # from the command line' in res.stdout


def test_the_store_url_from_the_file_is_used_and_masked(runner, home, tmp_path, monkeypatch):
    path = tmp_path / "schat.toml"
    path.write_text('store = "postgresql://schat:s3cret-pw@db.example:5432/schat"\n')
    monkeypatch.setenv("SCHAT_STORE", "postgresql://env:other-pw@elsewhere/db")
    res = print_settings(runner, "--settings", str(path))
    # The file wins over $SCHAT_STORE; the password never shows.
    assert f'store = "postgresql://schat:***@db.example:5432/schat"  # from {path}, line 1\n' \
        in res.stdout
    assert "s3cret-pw" not in res.output and "other-pw" not in res.output
    res = print_settings(runner, "--settings", str(path), "--store", "postgresql://cli@h/d")
    assert 'store = "postgresql://cli@h/d"  # from the command line\n' in res.stdout


def test_mask_secrets():
    assert mask_secrets("store", "postgresql://u:p%40ss@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert mask_secrets("bus", "redis://:pw@localhost:6379/0") == "redis://:***@localhost:6379/0"
    assert mask_secrets("bus", "redis://localhost:6379/0") == "redis://localhost:6379/0"
    assert mask_secrets("admin-password", "hunter2") == "***"
    assert mask_secrets("motd", "mail me at ann@example.org") == "mail me at ann@example.org"
    assert mask_secrets("port", 5) == 5


ERRORS = [
    # (file content, message after "FILE, line N: ")
    ("rate_limit = 2\n", 1, "unknown setting 'rate_limit'; did you mean 'rate-limit'?"),
    ("\n\nrate-limt = 2\n", 3, "unknown setting 'rate-limt'; did you mean 'rate-limit'?"),
    ("colour = true\n", 1, "unknown setting 'colour' (see `schat serve --print-settings`)"),
    ("[limits]\nrate-limit = 2\n", 1, "limits: sections and dotted keys are not used; every "
                                      "setting is a top-level key (see `schat serve "
                                      "--print-settings`)"),
    ('port = "5555"\n', 1, 'port: expected an integer, got a string ("5555")'),
    ("port = 5555.0\n", 1, "port: expected an integer, got a number (5555.0)"),
    ("port = true\n", 1, "port: expected an integer, got a boolean (true)"),
    ("port = 70000\n", 1, "port: 70000 is not in the range 0<=x<=65535."),
    ("allow-signup = 1\n", 1, "allow-signup: expected true or false, got an integer (1)"),
    ('allow-signup = "no"\n', 1, 'allow-signup: expected true or false, got a string ("no")'),
    ("rate-limit = -1\n", 1, "rate-limit: -1.0 is not in the range x>=0."),
    ('rate-limit = "fast"\n', 1, 'rate-limit: expected a number, got a string ("fast")'),
    ("ping-interval = inf\n", 1, "ping-interval: expected a finite number, got inf"),
    ("motd = [\"a\"]\n", 1, "motd: expected a string, got an array"),
    ("host = 127\n", 1, "host: expected a string, got an integer (127)"),
    ('log-level = "loud"\n', 1, "log-level: 'loud' is not one of 'debug', 'info', "
                                "'warning', 'error'."),
    ('log-format = "xml"\n', 1, "log-format: 'xml' is not one of 'text', 'json'."),
    ('log-rotate = "hourly"\n', 1, "log-rotate: 'hourly' is not a size (such as 10MiB), "
                                   "'daily' or 'never'"),
    ('log-rotate = "100"\n', 1, "log-rotate: '100' is below the smallest rotation size, 1KiB"),
    ("log-keep = -1\n", 1, "log-keep: -1 is not in the range 0<=x<=1000."),
    ('metrics = "localhost:http"\n', 1, "metrics: 'localhost:http' is not HOST:PORT (a port "
                                        "from 0 to 65535)"),
    ('name = "bell\\u0007"\n', 1, "name: 'bell\\x07' is not a server name (1 to 64 printable "
                                  "characters)"),
    ("home = 5\n", 1, "home: expected a string, got an integer (5)"),
    ("mailbox-limit = 0\n", 1, "mailbox-limit: 0 is not in the range x>=1."),
    # Checks across settings name the key of the value that fails.
    ("penalty-base = 10\npenalty-max = 5\n", 2, "penalty-max must be at least penalty-base"),
    ('motd = "@/nonexistent/motd.txt"\n', 1, "motd: cannot read /nonexistent/motd.txt: "
                                             "No such file or directory"),
    ('motd = "' + "x" * 5000 + '"\n', 1, "motd: the message of the day is longer than 4096 "
                                         "bytes"),
    ('server = "nowhere"\n', 1, "server: no server named 'nowhere': you have no servers yet"),
    # TOML syntax.
    ("rate-limit = \n", 1, "not valid TOML: Invalid value (column 14)"),
    ("port = 1\nport = 2\n", 2, "not valid TOML: Cannot overwrite a value (column 9)"),
    ('motd = "open\n', 1, "not valid TOML: Illegal character '\\n' (column 13)"),
]


@pytest.mark.parametrize("content,line,message", ERRORS, ids=[e[2][:40] for e in ERRORS])
def test_every_error_is_one_line_naming_file_line_and_key(runner, home, tmp_path, content,
                                                          line, message):
    path = tmp_path / "schat.toml"
    path.write_text(content)
    for action in ("--print-settings", "--init"):
        res = runner.invoke(cli, ["serve", "--settings", str(path), action])
        assert isinstance(res.exception, SystemExit) and res.exit_code == 1, res.output
        assert res.stdout == ""
        assert res.stderr.startswith(f"Error: {path}, line {line}: {message}"), res.stderr
        assert res.stderr.count("\n") == 1, res.stderr
    # Nothing was created: the check comes before anything starts.
    assert list(home.iterdir()) == []


def test_missing_or_unreadable_settings_file(runner, home, tmp_path):
    path = tmp_path / "schat.toml"
    res = runner.invoke(cli, ["serve", "--settings", str(path)])
    assert (res.exit_code, res.stderr) == (1, f"Error: {path}: no such settings file\n")
    path.mkdir()
    res = runner.invoke(cli, ["serve", "--settings", str(path)])
    assert res.exit_code == 2 and f"'{path}' is a directory" in res.stderr
    assert list(home.iterdir()) == []


def test_settings_file_not_utf8(runner, home, tmp_path):
    path = tmp_path / "schat.toml"
    path.write_bytes(b"port = 1\nmotd = \"\xff\"\n")
    res = runner.invoke(cli, ["serve", "--settings", str(path)])
    assert (res.exit_code, res.stderr) == (1, f"Error: {path}, line 2: not UTF-8 text\n")


def test_flag_errors_keep_their_usage_exit_code(runner, home):
    res = runner.invoke(cli, ["serve", "--penalty-base", "10", "--penalty-max", "5",
                              "--print-settings"])
    assert (res.exit_code, res.stderr) == (2, "Error: penalty-max must be at least "
                                              "penalty-base\n")

"""The pure parts of the terminal interface: rendering, bell rule, history, completion."""

from __future__ import annotations

import os
import stat

from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from schat.client.completion import COMMANDS, ChatCompleter, help_text, split_command, suggest
from schat.client.history import ChatHistory, history_path
from schat.client.render import Renderer, clean, mentions, nick_class, should_bell, wrap
from schat.client.local_events import LocalNotice, LocalWarning, PrivateMessage
from schat.client.reconnect import backoff_delays
from schat.client.tui import colour_wanted
from schat.protocol import messages


def plain(fragments) -> str:
    return "".join(text for _, text in fragments)


def msg(sender, text, action=False):
    return messages.ChatMessage(id=1, time=0, sender=sender, text=text, action=action)


# -- rendering ----------------------------------------------------------------
def test_each_kind_has_a_prefix_readable_without_colour():
    r = Renderer("ann")
    assert plain(r.event(msg("bob", "hi"))).endswith(" <bob> hi")
    assert plain(r.event(msg("bob", "waves", action=True))).endswith(" * bob waves")
    dm_in = PrivateMessage(id=2, time=0, sender="bob", to="ann", text="psst", verified=True)
    assert plain(r.event(dm_in)).endswith(" <- bob: psst")
    assert plain(r.private("bob", "psst", 0, outgoing=True)).endswith(" -> bob: psst")
    assert plain(r.event(messages.Join(user="bob", time=0))).endswith(" -- bob joined")
    assert plain(r.event(messages.Leave(user="bob", time=0, reason="timeout"))).endswith(
        " -- bob left (timeout)")
    assert plain(r.event(messages.Leave(user="bob", time=0, reason="left"))).endswith(
        " -- bob left")
    assert plain(r.event(messages.Notice(text="maintenance", time=0))).endswith(
        " -!- maintenance")
    assert plain(r.event(messages.Error(code="throttled", text="slow down"))).endswith(
        " ! slow down")
    assert r.event(messages.Ack(cid="c1", id=1, time=0)) is None


def test_timestamp_is_local_time():
    import time
    ms = 1_700_000_000_000
    expected = time.strftime("%H:%M", time.localtime(ms / 1000))
    assert plain(Renderer("ann").event(messages.Join(user="bob", time=ms))).startswith(expected)


def test_name_colour_is_stable_and_own_name_is_distinct():
    assert nick_class("bob") == nick_class("Bob") == "class:nick.%d" % (
        int(nick_class("bob").rsplit(".", 1)[1]))
    colours = {nick_class(n) for n in ("ann", "bob", "carol", "dave", "eve", "frank", "gus")}
    assert len(colours) > 3
    frags = Renderer("ann").chat("ann", "mine", 0)
    assert ("class:own", "ann") in frags


def test_control_characters_from_peers_are_made_visible():
    assert clean("a\x1b[2Jb\x07c\rd\x9be\tf") == "a^[[2Jb^Gc^Md<U+009B>e    f"
    line = plain(Renderer("ann").event(msg("bob", "\x1b]0;pwned\x07")))
    assert "\x1b" not in line and "\x07" not in line


def test_multiline_text_is_indented_under_its_first_line():
    text = plain(Renderer("ann").event(msg("bob", "one\ntwo")))
    first, second = text.split("\n")
    assert second.strip() == "two"
    assert len(second) - len(second.lstrip()) == first.index("one")


def test_long_lines_wrap_at_spaces_with_a_hanging_indent():
    r = Renderer("ann", width=40)
    text = plain(r.event(msg("bob", "word " * 30 + "x" * 70)))
    rows = text.split("\n")
    assert len(rows) > 3
    assert all(len(row) <= 40 for row in rows)
    indent = rows[0].index("word")
    assert all(row.startswith(" " * indent) and row[indent] != " " for row in rows[1:])
    original = plain(Renderer("ann").event(msg("bob", "word " * 30 + "x" * 70)))
    assert text.replace("\n", "").replace(" ", "") == original.replace(" ", "")
    assert wrap([("", "short")], 40, 12) == [("", "short")]


# -- mentions and the bell ------------------------------------------------------
def test_mentions_match_the_name_as_a_word():
    for text in ("hi ann", "@ann look", "Ann: yes", "ANN.", "(ann)"):
        assert mentions(text, "ann"), text
    for text in ("joanne", "annie", "ann_b", "ann.b", "hannah", ""):
        assert not mentions(text, "ann"), text


def test_bell_on_mention_and_private_message_only():
    assert should_bell(msg("bob", "ann: lunch?"), "ann")
    assert should_bell(PrivateMessage(id=1, time=0, sender="bob", to="ann", text="x",
                                      verified=True), "ann")
    assert should_bell(LocalWarning(text="bob's key has CHANGED", time=0), "ann")
    assert not should_bell(LocalNotice(text="registered your key", time=0), "ann")
    assert not should_bell(msg("bob", "lunch?"), "ann")
    assert not should_bell(msg("ann", "talking about ann"), "ann")
    assert not should_bell(messages.Join(user="ann", time=0), "ann")
    assert not should_bell(messages.Notice(text="ann", time=0), "ann")


# -- history --------------------------------------------------------------------
def test_history_file_is_private_and_survives_reload(tmp_path):
    path = history_path(tmp_path, "lab")
    h = ChatHistory(path)
    for line in ("first", "second\nwith a newline", "back\\slash", " secret", "back\\slash"):
        h.append_string(line)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    again = ChatHistory(path)
    assert list(again.load_history_strings()) == ["back\\slash", "second\nwith a newline", "first"]


def test_history_is_trimmed_to_its_cap(tmp_path):
    h = ChatHistory(tmp_path / "h", max_entries=5)
    for i in range(12):
        h.store_string(f"line {i}")
    assert h.read() == [f"line {i}" for i in range(7, 12)]
    assert stat.S_IMODE(os.stat(tmp_path / "h").st_mode) == 0o600


def test_private_lines_stay_out_of_the_history_file(tmp_path):
    path = history_path(tmp_path, "lab")
    # A file from an earlier version, with a private message in it.
    path.parent.mkdir()
    path.write_text("hello\n/msg bob the code is 0451\n/Query carol psst\n/query carol\n")
    h = ChatHistory(path)
    assert list(h.load_history_strings()) == ["/query carol", "hello"]
    assert "0451" not in path.read_text() and "psst" not in path.read_text()
    h.append_string("/msg bob again 0452")
    h.append_string("to the query peer", persist=False)
    h.append_string("/who")
    # Up still brings them back in this session...
    assert h.get_strings()[-3:] == ["/msg bob again 0452", "to the query peer", "/who"]
    # ...but the file never saw them.
    assert path.read_text() == "hello\n/query carol\n/who\n"


def test_history_path_is_a_safe_file_name(tmp_path):
    assert history_path(tmp_path, "../../etc/passwd").parent == tmp_path / "history"
    assert history_path(tmp_path, "Team Server").name == "Team_Server"


# -- commands and completion ----------------------------------------------------
def complete(completer, text):
    doc = Document(text, len(text))
    return [c.text for c in completer.get_completions(doc, CompleteEvent(completion_requested=True))]


def test_completer_offers_commands_and_members():
    members = {"ann": "ann", "bob": "Bob", "bella": "bella"}
    c = ChatCompleter(lambda: members.values(), lambda: "ann")
    assert complete(c, "/w") == ["/who ", "/whois "]
    assert complete(c, "/tr") == ["/trust "]
    assert set(complete(c, "/")) == {"/" + name + " " for name in COMMANDS}
    assert complete(c, "b") == ["bella: ", "Bob: "]
    assert complete(c, "hi bo") == ["Bob"]
    assert complete(c, "hi @b") == ["@bella", "@Bob"]
    assert complete(c, "/msg bo") == ["Bob "]
    assert complete(c, "/msg ") == ["bella ", "Bob "]
    assert complete(c, "an") == []  # yourself
    assert complete(c, "hi ") == []


def test_unknown_command_suggests_the_closest():
    assert suggest("qiut") == "quit"
    assert suggest("hlep") == "help"
    assert suggest("ms") == "msg"
    assert suggest("xyzzy") is None


def test_unknown_command_suggests_by_meaning():
    # IRC and other chat habits: what the word means here, not the nearest spelling.
    assert suggest("list") == "rooms"
    assert suggest("users") == "who"
    assert suggest("leave") == "part"
    assert suggest("logout") == "quit"
    assert suggest("channels") == "rooms"
    assert suggest("window") == "switch"
    assert suggest("tell") == "msg"
    assert suggest("afk") == "away"
    assert suggest("block") == "ignore"


def test_aliases_run_their_command():
    assert split_command("/names") == ("who", "")
    assert split_command("/EXIT") == ("quit", "")
    assert "(also /names)" in help_text() and "(also /exit)" in help_text()


def test_help_lists_every_command_with_its_usage():
    text = help_text()
    for cmd in COMMANDS.values():
        assert cmd.usage in text and cmd.help in text


def test_split_command():
    assert split_command("/MSG bob  hi ") == ("msg", "bob  hi")
    assert split_command("//not a command") is None
    assert split_command("hello") is None


def test_backoff_grows_and_is_capped():
    delays = backoff_delays(1, 30)
    assert [next(delays) for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_no_color_is_respected():
    assert colour_wanted({}) is True
    assert colour_wanted({"NO_COLOR": "1"}) is False
    assert colour_wanted({"NO_COLOR": ""}) is True

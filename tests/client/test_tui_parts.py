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


# -- rooms ----------------------------------------------------------------------
def rooms_with(*names, me="ann"):
    from schat.client.tui_rooms import Rooms
    from schat.protocol import room_messages as rm

    rooms = Rooms(me)
    for name in names:
        rooms.apply(rm.RoomState(room=name, topic="", private=False, ops=(), users=(me, "bob"),
                                 time=0))
    rooms.apply(rm.Focus(room=names[0]))
    return rooms


def test_the_server_focus_is_followed_only_when_it_should_be():
    from schat.protocol import room_messages as rm

    rooms = rooms_with("#lobby", "#dev", "#ops")
    assert rooms.current == "#lobby" and rooms.order() == ["#lobby", "#dev", "#ops"]
    rooms.switch("#dev")
    rooms.apply(rm.Focus(room="#ops"))            # the server's idea, not ours: ignored
    assert rooms.current == "#dev"
    # Kicked from a room that is not the current one: the current one stays.
    rooms.apply(rm.Moderation(room="#ops", action="kick", time=0, actor="bob", target="ANN"))
    assert rooms.current == "#dev" and rooms.order() == ["#lobby", "#dev"]
    rooms.apply(rm.Focus(room="#lobby"))
    assert rooms.current == "#dev"
    # Leaving the current one: the room joined last, as the server does.
    rooms.apply(messages.Leave(user="ann", time=0, room="#dev"))
    assert rooms.current == "#lobby" and "#dev" in rooms.heard
    # A /join you asked for becomes current when its state arrives.
    rooms.joining.add("#new")
    rooms.apply(rm.RoomState(room="#new", topic="", private=False, ops=(), users=("ann",),
                             time=0))
    assert rooms.current == "#new"
    rooms.apply(rm.Focus(room=None))             # the server says: in no room
    assert rooms.current == "#new"               # ...but ours is still there


def test_unread_counts_and_reconnect_keep_what_you_have_not_read():
    from schat.protocol import room_messages as rm

    rooms = rooms_with("#lobby", "#dev")
    say = lambda room, sender, text: rooms.apply(messages.ChatMessage(  # noqa: E731
        id=1, time=0, sender=sender, text=text, room=room))
    say("#dev", "bob", "one")
    say("#dev", "ANN", "my own line elsewhere")      # yours: never unread
    say(None, "bob", "in the current room")
    assert (rooms.views["#dev"].unread, rooms.views["#lobby"].unread) == (1, 0)
    say("#dev", "bob", "@ann look")
    assert rooms.views["#dev"].mentioned
    rooms.switch("#dev")
    rooms.switch("#lobby")
    say("#dev", "bob", "two")
    rooms.reset()                                    # a new session
    assert not rooms.known and rooms.current == "#lobby"
    for name in ("#lobby", "#dev"):
        rooms.apply(rm.RoomState(room=name, topic="", private=False, ops=(), users=("ann",),
                                 time=0))
    rooms.apply(rm.Focus(room="#dev"))               # the server's default: ignored
    assert rooms.current == "#lobby" and rooms.views["#dev"].unread == 1


def test_member_lists_in_several_messages_and_joins_leaves():
    from schat.protocol import room_messages as rm

    rooms = rooms_with("#lobby")
    rooms.apply(rm.RoomState(room="#big", topic="", private=False, ops=(), users=("a", "b"),
                             time=0, more=True))
    rooms.apply(messages.Users(users=("a", "b"), more=True, room="#big"))
    rooms.apply(messages.Users(users=("c",), room="#big"))
    assert sorted(rooms.views["#big"].users.values()) == ["a", "b", "c"]
    rooms.apply(messages.Join(user="Dan", time=0, room="#big"))
    rooms.apply(messages.Leave(user="a", time=0, room="#big"))
    rooms.apply(rm.Moderation(room="#big", action="ban", time=0, actor="x", target="b"))
    assert sorted(rooms.views["#big"].users.values()) == ["Dan", "c"]


def test_toolbar_with_many_rooms_on_a_narrow_terminal_keeps_what_matters():
    from types import SimpleNamespace

    from schat.client import tui_status as status

    rooms = rooms_with(*[f"#room{i}" for i in range(1, 9)])
    rooms.switch("#room5")
    rooms.views["#room2"].unread = 4
    rooms.views["#room7"].unread, rooms.views["#room7"].mentioned = 1, True
    tui = SimpleNamespace(server="team", announced="", me="ann", query=None, away=None,
                          state="connected", rooms=rooms, members={})
    wide = plain(status.render_toolbar(status.toolbar_parts(tui), 200))
    assert wide == (" team · ann · 1:#room1 2:#room2(4) 3:#room3 4:#room4 [5:#room5] 6:#room6 "
                    "7:#room7(1!) 8:#room8 · 2 here · connected ")
    # Quiet rooms go first, then rooms with unread lines; mentions and the current stay.
    narrow = plain(status.render_toolbar(status.toolbar_parts(tui), 72))
    assert narrow == " team · ann · 2:#room2(4) [5:#room5] 7:#room7(1!) · 2 here · connected "
    narrower = plain(status.render_toolbar(status.toolbar_parts(tui), 60))
    assert narrower == " team · ann · [5:#room5] 7:#room7(1!) · 2 here · connected "
    tight = plain(status.render_toolbar(status.toolbar_parts(tui), 40))
    assert tight.endswith(" · connected ") and len(tight) <= 40, tight
    # The prompt says where plain lines go.
    assert plain(status.prompt_parts(tui)) == "ann #room5"
    tui.query = "bob"
    assert plain(status.prompt_parts(tui)) == "ann -> bob"


def test_room_lines_carry_their_room_and_history_is_dimmed():
    r = Renderer("ann", width=40)
    line = r.event(messages.ChatMessage(id=1, time=0, sender="bob", room="#dev",
                                        text="a long line that wraps under its own text"),
                   tag="#dev")
    assert plain(line)[6:].startswith("#dev <bob> a long line")
    assert plain(line).split("\n")[1].startswith(" " * 17)   # under the text, past the tag
    old = r.event(messages.ChatMessage(id=1, time=0, sender="bob", text="earlier",
                                       history=True))
    assert all("class:history" in style for style, _ in old)
    assert plain(r.event(messages.Join(user="bob", time=0, room="#dev"), tag="#dev"))[6:] == \
        "#dev -- bob joined"

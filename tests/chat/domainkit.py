"""A sink that records what the domain delivers, and a clock the tests move."""

from __future__ import annotations

from typing import Dict, List

from schat.chat import Chat, ChatLimits, Member, MemoryChatStore
from schat.chat import events as ev
from schat.chat.fanout import Sink

T0 = 1_700_000_000.0


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Recorder(Sink):
    """Every event per member, in order; closed sessions with their code and reason."""

    def __init__(self):
        self.got: Dict[str, List] = {}
        self.closed: Dict[str, tuple] = {}
        self.answer_cids: Dict[str, List[tuple]] = {}
        self.deliveries = 0

    def deliver(self, event, members, exclude=None):
        for m in members:
            if m is not exclude:
                self.got.setdefault(m.name, []).append(event)
                self.deliveries += 1

    def reply(self, member, event, cid=None):
        self.got.setdefault(member.name, []).append(event)
        # The request each answer was given for (by event identity: events may be shared).
        self.answer_cids.setdefault(member.name, []).append((event, cid))

    def close(self, member, code, reason):
        self.closed[member.name] = (code, reason)

    def take(self, name, kind=None):
        items = self.got.get(name, [])
        hit = [e for e in items if kind is None or isinstance(e, kind)]
        self.got[name] = [e for e in items if not (kind is None or isinstance(e, kind))]
        return hit


class World:
    """A Chat over a memory store with accounts ann, bob, cat, dan (admin: root)."""

    def __init__(self, limits: ChatLimits = None, store: MemoryChatStore = None):
        self.clock = Clock()
        self.sink = Recorder()
        self.store = store or MemoryChatStore({"ann": False, "bob": False, "cat": False,
                                               "dan": False, "root": True})
        self.chat = Chat(self.store, self.sink, limits or ChatLimits(), clock=self.clock,
                         server_name="test", motd="hi")
        self._cids = 0

    def login(self, name: str, aware: bool = True, peer: str = "") -> Member:
        member = Member(name, aware=aware, peer=peer)
        self.chat.enter(member, self.store.profile(name))
        self.chat.rejoin(member)
        return member

    def cmd(self, member: Member, line: str, room: str = None):
        """Run a command; return its answer: the Refused, or None when it was done."""
        self._cids += 1
        cid = f"c{self._cids}"
        self.chat.command(member, line, cid, room)
        answers = [e for e in self.sink.got.get(member.name, [])
                   if isinstance(e, (ev.Refused, ev.Done)) and e.cid == cid]
        assert len(answers) == 1, answers
        return answers[0] if isinstance(answers[0], ev.Refused) else None

    def say(self, member: Member, text: str, room: str = None):
        self._cids += 1
        cid = f"s{self._cids}"
        self.chat.say(member, text, False, cid, room)
        (answer,) = [e for e in self.sink.got.get(member.name, [])
                     if isinstance(e, (ev.Refused, ev.Done)) and e.cid == cid]
        return answer

    def clear(self):
        self.sink.got.clear()

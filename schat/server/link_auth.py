"""Logging in on one client connection: the part of :class:`~schat.server.link.ClientLink`
between the handshake and the chat (a mixin of it, on the same object).

A login, key login or sign-up first meets the login gate (penalties, sign-up
limits), then runs as one job off the event loop (``with_profile``: the check
and the account's chat profile together), and its outcome either starts the
member's chat session, confirms a login check, or counts a failed attempt
(three, then the connection is refused).
"""

from __future__ import annotations

import functools
import logging

from schat.protocol import messages, registry, room_messages
from schat.server import login
from schat.server.hub import ROOMS, Session

log = logging.getLogger("schat.server")

BUSY_TEXT = "the server is busy; try again in a moment"
# Connection states. CHECKED: a login with "check" succeeded; only key requests are served.
HANDSHAKE, AUTH, CHAT, CHECKED, CLOSED = "handshake", "auth", "chat", "checked", "closed"
# What a checked connection may still ask (account-level, no chat session).
CHECKED_ALLOWED = frozenset(registry.CHECKED.values())


class LinkAuth:
    """The login messages of a :class:`~schat.server.link.ClientLink` (its attributes)."""

    __slots__ = ()

    def _auth_message(self, msg) -> None:
        store = self.server.store
        kind = type(msg)
        if kind in (messages.Login, messages.LoginKey, messages.Signup):
            if not self.server.crypto_available():
                # Refused before the gate books an attempt that will not be made.
                self._refuse("busy", BUSY_TEXT)
                return
            if self._penalised(msg):
                return
        if kind is messages.Login:
            log.debug("%s: password login for %s%s", self.peer, msg.user,
                      " (check only)" if msg.check else "")
            job = functools.partial(login.check_password, store, msg.user, msg.password)
        elif kind is messages.LoginKey:
            log.debug("%s: key login for %s (signature %d bytes)", self.peer, msg.user,
                      len(msg.signature))
            job = functools.partial(login.check_key, store, msg.user, msg.signature,
                                    self.conn.transcript_hash, self.server.fingerprint)
        elif kind is messages.Signup:
            log.debug("%s: signup for %s", self.peer, msg.user)
            job = functools.partial(login.signup, store, msg.user, msg.password, msg.public_key)
        elif kind is messages.Ping:
            self._send(messages.Pong(n=msg.n))
            return
        elif kind is messages.Pong:
            return
        else:  # Bye: the protocol lets nothing else through before a login
            self.reason = "left before logging in"
            self._close_transport()
            return
        job = functools.partial(with_profile, job, self.server.chat_store, msg.user)
        if kind is messages.LoginKey and self.server.inline_key_login:
            # A signature check and three indexed reads of a local file: here, in the
            # handshake lane, rather than a hand-over to a thread and back (app.Server).
            self._run_inline(job, functools.partial(self._auth_done, msg))
        else:
            self._run_job(job, functools.partial(self._auth_done, msg))

    def _penalised(self, msg) -> bool:
        """Refuse without any hashing while this address must wait (login.LoginGate)."""
        refusal = self.server.gate.admit(self.address, msg, self.server.loop.time())
        if refusal is None:
            return False
        self._failed(msg.user, refusal)
        return True

    def _auth_done(self, request, result) -> None:
        outcome, profile = result
        server = self.server
        server.gate.settle(self.address, request, outcome, server.loop.time())
        user = request.user
        if not outcome.ok:
            self._failed(user, outcome)
            return
        if getattr(request, "check", False):
            self._checked(outcome)
            return
        aware = ROOMS in getattr(request, "features", ())
        refusal = server.hub.chat.admissible(outcome.name, aware)
        if refusal is not None:
            log.info("login of %s from %s refused: %s", outcome.name, self.peer, refusal.code)
            self._refuse(refusal.code, str(refusal))
            return
        member = Session(outcome.name, aware=aware, peer=self.peer,
                         features=getattr(request, "features", ()))
        member.link = self
        self.member = member
        self.conn.logged_in()
        self._release_slot()
        self._start_chat()
        old = server.hub.login(member, profile)
        # Stored direct messages follow the welcome, then the member's rooms.
        server.dm.on_login(member)
        server.hub.rejoin(member)
        server.record_login(outcome.name)
        server.stats.login(outcome.how)
        log.info("login %s from %s (%s%s)%s", outcome.name, self.peer, outcome.how,
                 "" if aware else ", a client without rooms",
                 f"; took over the session from {old.peer}" if old is not None else "")

    def _start_chat(self) -> None:
        # The message budget (``bucket``) is made at the first message (_within_rate).
        self.state = CHAT
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _checked(self, outcome: login.LoginOutcome) -> None:
        """A login with "check": confirm, start no session, disturb nobody."""
        self.member = Session(outcome.name, peer=self.peer)
        self.member.link = self
        self.conn.logged_in()
        self._release_slot()
        self._start_chat()
        self.state = CHECKED
        self.server.hub.queue(self.member, room_messages.Checked(user=outcome.name,
                                                                 time=self.server.hub.now_ms()))
        log.info("login check %s from %s (%s): ok", outcome.name, self.peer, outcome.how)

    def _checked_message(self, msg) -> None:
        if type(msg) not in CHECKED_ALLOWED:
            self.server.hub.queue(self.member, messages.Error(
                code="invalid", text="this connection only checked the login; log in "
                                     "without check to chat", cid=getattr(msg, "cid", None)))
            return
        if not self.server.dm.handle(self.member, msg):
            self.server.hub.handle(self.member, msg)

    def _failed(self, user: str, outcome: login.LoginOutcome) -> None:
        self.attempts += 1
        self.server.stats.login_failed(outcome.code)
        log.info("failed login for %s from %s: %s", user, self.peer, outcome.code)
        if self.attempts >= self.server.settings.max_auth_attempts:
            self._send(messages.Error(code=outcome.code, text=outcome.text))
            self._refuse("too_many_attempts", "too many failed attempts")
            return
        self._send(messages.Error(code=outcome.code, text=outcome.text))

    def _release_slot(self) -> None:
        if self.admitted:
            self.admitted = False
            self.server.admission.release(self.address)


def with_profile(job, chat_store, user: str):
    """Run a login ``job``, then read the account's chat profile with it (both off the
    event loop, or on it for a local store: app.Server.inline_key_login). The writes
    still queued about the account (a membership, a lock) are committed first."""
    chat_store.settle(user)
    outcome = job()
    profile = chat_store.profile(outcome.name) if outcome.ok else None
    return outcome, profile

"""Client side of end-to-end encrypted direct messages.

``DmClient`` sits between a :class:`~schat.client.session.ClientSession` and a
user interface. It fetches a recipient's key from the server, checks it against
the contact pins (trust on first use), seals the envelope and sends it; for
each envelope received it checks the signature and the sender's pin, ignores
replays, opens it and hands the UI an ordinary ``messages.Dm`` (or a notice
saying why a message is not genuine), then acknowledges it so the server
deletes its copy. It also answers ``/msg``, ``/whois``, ``/verify`` and
``/trust`` locally.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from schat.client import contacts as ct
from schat.crypto import envelope as env_mod
from schat.crypto.keys import RsaKey, fingerprint, public_der
from schat.errors import ConnectionFailed, SchatError, TrustError, UsageError
from schat.protocol import dm_messages as dmm
from schat.protocol import messages

log = logging.getLogger("schat.client.dm")

KEY_TIMEOUT = 10.0
LOCAL_COMMANDS = ("/msg", "/whois", "/verify", "/trust")


def no_key_help(user: str, server: str) -> str:
    """How a member without a key gets one (shown instead of sending in plaintext)."""
    return (f"direct messages are end-to-end encrypted and need your own key, and none is "
            f"loaded: make one with `schat keys gen {user}`, then reconnect with "
            f"`schat connect {server} --key {user}`")


class DmClient:
    """End-to-end encrypted direct messages over one logged-in session."""

    def __init__(self, session, home_root, private_key: Optional[RsaKey],
                 emit: Callable[[object], None], key_timeout: float = KEY_TIMEOUT,
                 clock: Callable[[], float] = time.time):
        self.session = session
        self.private_key = private_key
        self.my_der = public_der(private_key) if private_key is not None else None
        self.emit = emit
        self.key_timeout = key_timeout
        self._clock = clock
        server_id = session.fingerprint or f"{session.host}:{session.port}"
        root = Path(home_root)
        self.contacts = ct.Contacts(root / "contacts", server_id)
        self.seen = ct.SeenIds(root / "dm_seen", server_id)
        self._files = threading.Lock()
        self._cids = itertools.count(1)
        self._waiters: Dict[str, Tuple[threading.Event, list]] = {}
        self._wlock = threading.Lock()
        self._expected: Optional[int] = None
        self._processed = 0
        self._drained = threading.Event()
        self._closed = False

    @property
    def me(self) -> str:
        return self.session.user or ""

    # -- receiving (receiver thread) -------------------------------------------
    def wrap(self, show: Callable[[object], None]) -> Callable[[object], None]:
        """A session callback: DM wire messages are handled here, the rest goes to ``show``."""
        def callback(msg) -> None:
            if not self.handle(msg):
                show(msg)
        return callback

    def handle(self, msg) -> bool:
        """Act on one incoming message; True when it was a DM message (consumed)."""
        if isinstance(msg, dmm.Key):
            with self._wlock:
                waiter = self._waiters.pop(msg.cid, None)
            if waiter is not None:
                waiter[1].append(msg)
                waiter[0].set()
            return True
        if isinstance(msg, dmm.Mailbox):
            with self._wlock:
                self._expected = msg.count
                self._check_drained()
            return True
        if isinstance(msg, dmm.DmEnvelope):
            try:
                self._receive(msg)
            finally:
                self.session._send(dmm.DmAck(id=msg.id))
                with self._wlock:
                    self._processed += 1
                    self._check_drained()
            return True
        if type(msg).__name__ == "Disconnected":
            self._closed = True
            self._drained.set()
            with self._wlock:
                waiters, self._waiters = list(self._waiters.values()), {}
            for event, _ in waiters:
                event.set()
        return False

    def _check_drained(self) -> None:
        if self._expected is not None and self._processed >= self._expected:
            self._drained.set()

    def wait_mailbox(self, timeout: float) -> bool:
        """Wait until the stored messages announced after login were all shown."""
        return self._drained.wait(timeout)

    def _receive(self, msg: dmm.DmEnvelope) -> None:
        try:
            env = env_mod.parse(msg.envelope)
        except env_mod.EnvelopeError as err:
            self._reject(msg.sender, msg.time, str(err))
            return
        if env.sender.lower() != msg.sender.lower() or env.recipient.lower() != self.me.lower():
            self._reject(msg.sender, msg.time, "the envelope names another sender or recipient")
            return
        try:
            env_mod.verify(env, env_mod.public_key_from_der(msg.sender_key))
        except env_mod.EnvelopeError as err:
            self._reject(msg.sender, msg.time, str(err))
            return
        with self._files:
            if self.seen.is_replay(env.sender, env.id_hex, env.time_ms):
                log.debug("ignored a replayed dm from %s", env.sender)
                return
            status = self._pin_status(env.sender, msg.sender_key)
            try:
                text = env_mod.open_(env, self.me, self.private_key) if self.private_key \
                    else None
            except env_mod.EnvelopeError as err:
                self._reject(msg.sender, msg.time, str(err))
                return
            self.seen.remember(env.sender, env.id_hex, env.time_ms)
        log.debug("dm %d from %s: signature ok, pin %s", msg.id, env.sender, status)
        if text is None:
            self._notice(f"an encrypted direct message from {env.sender} arrived, but no key "
                         f"is loaded to open it; reconnect with --key", env.time_ms)
            return
        if status == ct.CHANGED:
            self._notice(self._changed_warning(env.sender, msg.sender_key), env.time_ms)
            text = f"[UNVERIFIED: key changed] {text}"
        self.emit(messages.Dm(id=msg.id, time=env.time_ms, sender=env.sender, to=env.recipient,
                              text=text))

    def _pin_status(self, name: str, der: bytes) -> str:
        if name.lower() == self.me.lower() and self.my_der is not None:
            return ct.PINNED if bytes(der) == self.my_der else ct.CHANGED
        return self.contacts.observe(name, bytes(der))

    def _reject(self, sender: str, when: int, reason: str) -> None:
        log.debug("rejected a dm claiming to be from %s: %s", sender, reason)
        self._notice(f"WARNING: a direct message claiming to be from {sender} failed "
                     f"verification and was discarded ({reason})", when)

    def _notice(self, text: str, when: Optional[int] = None) -> None:
        self.emit(messages.Notice(text=text, time=when or self._now()))

    def _now(self) -> int:
        return int(self._clock() * 1000)

    @staticmethod
    def _changed_warning(name: str, der: bytes) -> str:
        return (f"WARNING: {name}'s key has CHANGED (now {fingerprint(bytes(der))}) and is "
                f"not the one you trusted. It may be a new device, or someone impersonating "
                f"{name}. Compare /verify {name} with them in person or by phone, then accept "
                f"it with /trust {name}.")

    # -- requests (UI thread) --------------------------------------------------
    def fetch_key(self, user: str) -> dmm.Key:
        """Ask the server for ``user``'s registered key; raise a SchatError when there is none."""
        cid = f"k{next(self._cids)}"
        event, slot = threading.Event(), []
        with self._wlock:
            self._waiters[cid] = (event, slot)
        self.session._send(dmm.GetKey(user=user, cid=cid))
        if not event.wait(self.key_timeout) or not slot:
            with self._wlock:
                self._waiters.pop(cid, None)
            if self._closed:
                raise ConnectionFailed("the connection to the server is closed")
            raise ConnectionFailed(f"the server did not send {user}'s key in time")
        reply = slot[0]
        if reply.status == "no_such_user":
            raise UsageError(f"no such user: {user}")
        if reply.status != "ok" or not reply.public_key:
            raise SchatError(f"{reply.user} has no key yet, so encrypted direct messages "
                             f"cannot reach them; they can make one with `schat keys gen "
                             f"{reply.user}` and reconnect with --key")
        return reply

    def _require_own_key(self) -> None:
        if self.private_key is None:
            raise SchatError(no_key_help(self.me or "NAME", self.session.server_name))

    def send(self, to: str, text: str) -> str:
        """Seal ``text`` for ``to`` and send it; return the request's cid (acked by the server)."""
        self._require_own_key()
        reply = self.fetch_key(to)
        der = bytes(reply.public_key)
        if reply.user.lower() != self.me.lower():
            with self._files:
                ct.require_pin_match(self.contacts, reply.user, der)
        elif der != self.my_der:
            raise TrustError("the server holds another key for your own account; "
                             "ask the server admin")
        data = env_mod.seal(text, self.me, self.private_key, reply.user,
                            env_mod.public_key_from_der(der), self._now())
        cid = self.session._new_cid("dm")
        self.session._send(dmm.DmSend(to=reply.user, envelope=data, cid=cid))
        return cid

    def register_key(self) -> None:
        """After a login: upload our key when the account has none; warn when it differs."""
        if self.private_key is None:
            return
        reply = self.fetch_key_status(self.me)
        if reply is None or reply.status == "no_key":
            cid = self.session._new_cid("set_key")
            self.session._send(dmm.SetKey(public_key=self.my_der, cid=cid))
        elif reply.public_key and bytes(reply.public_key) != self.my_der:
            self._notice(f"WARNING: the server has another key for your account "
                         f"({reply.fingerprint}); direct messages to you are sealed to it")

    def fetch_key_status(self, user: str) -> Optional[dmm.Key]:
        """Like :meth:`fetch_key` but returns the reply whatever its status (None: unknown)."""
        try:
            return self.fetch_key(user)
        except UsageError:
            return None
        except ConnectionFailed:
            raise
        except SchatError:
            return dmm.Key(cid="-", user=user, status="no_key")

    def whois(self, name: str) -> str:
        """A member's key fingerprint and how it compares with our pin."""
        reply = self.fetch_key(name)
        der = bytes(reply.public_key)
        with self._files:
            status = self.contacts.check(reply.user, der)
            pin = self.contacts.pinned(reply.user)
        if reply.user.lower() == self.me.lower():
            return f"{reply.user} (you): {reply.fingerprint}"
        if status == ct.PINNED:
            return f"{reply.user}: {reply.fingerprint} (matches your pin)"
        if status == ct.NEW:
            return f"{reply.user}: {reply.fingerprint} (not pinned yet; pinned on first message)"
        return (f"{reply.user}: {reply.fingerprint} -- CHANGED from your pin "
                f"{fingerprint(pin)}; check /verify {reply.user}, then /trust {reply.user}")

    def verify(self, name: str) -> str:
        """The safety code of our key and ``name``'s, identical on both sides."""
        self._require_own_key()
        reply = self.fetch_key(name)
        der = bytes(reply.public_key)
        code = env_mod.safety_code(self.my_der, der)
        with self._files:
            status = self.contacts.check(reply.user, der)
        note = "" if status != ct.CHANGED else \
            f" (this is for {reply.user}'s NEW key; /trust {reply.user} once it matches)"
        return (f"safety code with {reply.user}: {code}{note}\n"
                f"compare it with {reply.user} in person or by phone; it is the same on "
                f"both sides")

    def trust(self, name: str) -> str:
        """Accept ``name``'s current key (the user checked it)."""
        reply = self.fetch_key(name)
        with self._files:
            self.contacts.trust(reply.user, bytes(reply.public_key))
        return f"now trusting {reply.user}'s key {reply.fingerprint}"

    def handle_line(self, line: str) -> Optional[List[str]]:
        """Run a local DM command line; None when ``line`` is not one (send it to the server).

        Returns the lines to show; raises SchatError with a message for the user.
        """
        word, _, rest = line.strip().partition(" ")
        word = word.lower()
        if word not in LOCAL_COMMANDS:
            return None
        rest = rest.strip()
        if word == "/msg":
            to, _, text = rest.partition(" ")
            text = text.strip()
            if not to or not text:
                raise UsageError("usage: /msg NAME TEXT")
            self.send(to, text)
            return []
        if not rest or " " in rest:
            raise UsageError(f"usage: {word} NAME")
        if word == "/whois":
            return [self.whois(rest)]
        if word == "/verify":
            return self.verify(rest).splitlines()
        return [self.trust(rest)]

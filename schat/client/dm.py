"""Client side of end-to-end encrypted direct messages.

``DmClient`` sits between a :class:`~schat.client.session.ClientSession` and a
user interface. It fetches a recipient's key from the server, checks it against
the contact pins (trust on first use), seals the envelope and sends it; for
each envelope received it checks the signature and the sender's pin, ignores
replays, opens it and hands the UI a
:class:`~schat.client.local_events.PrivateMessage` (or a
:class:`~schat.client.local_events.LocalWarning` saying why a message is not
genuine), then acknowledges it so the server deletes its copy. A plaintext
``dm`` from the server is never shown as a message. It also answers ``/msg``,
``/whois``, ``/verify`` and ``/trust`` locally.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

from schat.client import contacts as ct
from schat.client.commands import COMMANDS, DM_COMMANDS
from schat.client.local_events import LocalNotice, LocalWarning, PrivateMessage
from schat.client.seen import SEEN, TOO_OLD, SeenIds
from schat.client.session import Disconnected
from schat.crypto import envelope as env_mod
from schat.crypto.keys import RsaKey, fingerprint, normalize_fingerprint, public_der
from schat.errors import ConnectionFailed, SchatError, TrustError, UsageError
from schat.protocol import dm_messages as dmm
from schat.protocol import messages
from schat.protocol.schema import name_key

log = logging.getLogger("schat.client.dm")

KEY_TIMEOUT = 10.0
LOCAL_COMMANDS = tuple("/" + name for name in DM_COMMANDS)
# What the line client lists as its own commands in /help.
LOCAL_HELP = tuple((c.usage, c.help) for c in COMMANDS.values() if c.runs in ("dm", "client"))


def _date(ms: int) -> str:
    """A wire time as ``YYYY-MM-DD HH:MM UTC`` (warnings about envelope dates)."""
    try:
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ms / 1000))
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms after 1970"


def no_key_help(user: str) -> str:
    """How a member without a key gets one (shown instead of sending in plaintext)."""
    return (f"direct messages are end-to-end encrypted and need your own key, and none is "
            f"loaded: make one with `schat keys gen {user}`, then register it with "
            f"`schat login SERVER --register-key`")


class SentDm(NamedTuple):
    """A direct message handed to the server: its cid, to whom and to which key it is sealed."""

    cid: str
    to: str
    fingerprint: str


class _Discard(Exception):
    """An envelope that can never be shown: acknowledge it so the server deletes it."""


class DmClient:
    """End-to-end encrypted direct messages over one logged-in session."""

    def __init__(self, session, home_root, private_key: Optional[RsaKey],
                 emit: Callable[[object], None], key_timeout: float = KEY_TIMEOUT,
                 clock: Callable[[], float] = time.time, retired_keys=()):
        self.session = session
        self.private_key = private_key
        # Keys this one replaced (`schat keys gen --force`): stored envelopes sealed to them open.
        self.retired_keys = list(retired_keys)
        self.my_der = public_der(private_key) if private_key is not None else None
        self.emit = emit
        self.key_timeout = key_timeout
        self._clock = clock
        # Pins and seen messages belong to the server as the user named it (a
        # rotation of its host key changes neither); files of the previous release,
        # keyed by the host key's fingerprint, are taken over on first use.
        server_id = ct.server_identity(session.server_name, session.host, session.port)
        root = Path(home_root)
        self.contacts = ct.Contacts(root / "contacts", server_id, session.fingerprint)
        self.seen = SeenIds(root / "dm_seen.db", server_id, session.fingerprint,
                            legacy=root / "dm_seen")
        self._files = threading.Lock()
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
        """Act on one incoming message; True when it was consumed here."""
        if isinstance(msg, (dmm.Key, messages.Ack, messages.Error)):
            return self._answer(msg)
        if isinstance(msg, dmm.Mailbox):
            with self._wlock:
                self._expected = msg.count
                self._check_drained()
            return True
        if isinstance(msg, dmm.DmEnvelope):
            self._deliver(msg)
            return True
        if isinstance(msg, messages.Dm):
            # Genuine direct messages only ever arrive sealed (dm_env); a plaintext
            # one was made up by the server or relayed unchecked for anyone.
            log.debug("discarded a plaintext dm naming %s as sender", msg.sender)
            self._warn(f"WARNING: the server sent a plaintext private message claiming to be "
                       f"from {msg.sender}; it was discarded, since genuine direct messages "
                       f"are always end-to-end encrypted")
            return True
        if isinstance(msg, Disconnected):
            self._closed = True
            self._drained.set()
            with self._files:
                self.seen.close()
            with self._wlock:
                waiters, self._waiters = list(self._waiters.values()), {}
            for event, _ in waiters:
                event.set()
        return False

    def _answer(self, msg) -> bool:
        cid = getattr(msg, "cid", None)
        with self._wlock:
            waiter = self._waiters.pop(cid, None) if cid is not None else None
        if waiter is None:
            return isinstance(msg, dmm.Key)
        waiter[1].append(msg)
        waiter[0].set()
        return True

    def _deliver(self, msg: dmm.DmEnvelope) -> None:
        try:
            shown = self._receive(msg)
        except _Discard as err:
            log.debug("rejected a dm claiming to be from %s: %s", msg.sender, err)
            self._warn(f"WARNING: a direct message claiming to be from {msg.sender} failed "
                       f"verification and was discarded ({err})", msg.time)
            shown = True
        except (SchatError, OSError) as err:
            # A local failure (unreadable contacts file, full disk): the message
            # stays stored on the server and comes again at the next login.
            log.debug("could not process dm %d: %s", msg.id, err)
            self._warn(f"a direct message from {msg.sender} could not be processed ({err}); "
                       f"it stays stored on the server until your next login", msg.time)
            shown = False
        try:
            if shown:
                self.session.send(dmm.DmAck(id=msg.id))
        except ConnectionFailed:
            pass
        finally:
            with self._wlock:
                self._processed += 1
                self._check_drained()

    def _check_drained(self) -> None:
        if self._expected is not None and self._processed >= self._expected:
            self._drained.set()

    def wait_mailbox(self, timeout: float) -> bool:
        """Wait until the stored messages announced after login were all handled."""
        return self._drained.wait(timeout)

    def _receive(self, msg: dmm.DmEnvelope) -> bool:
        """Check, open and show one envelope; True when it may be acknowledged."""
        try:
            env = env_mod.parse(msg.envelope, accept_old=True)
        except env_mod.EnvelopeError as err:
            raise _Discard(str(err)) from None
        if (name_key(env.sender) != name_key(msg.sender)
                or name_key(env.recipient) != name_key(self.me)):
            raise _Discard("the envelope names another sender or recipient")
        sender = msg.sender  # the registered spelling of the account that signed
        try:
            env_mod.verify(env, env_mod.public_key_from_der(msg.sender_key))
        except env_mod.EnvelopeError as err:
            raise _Discard(str(err)) from None
        if env.time_ms > self._now() + dmm.MAX_FUTURE_MS:
            # Perhaps this clock is wrong: the message stays stored for a later login.
            self._warn(f"WARNING: a direct message from {sender} is dated {_date(env.time_ms)}, "
                       f"in the future: more than {dmm.MAX_FUTURE_MS // 60000} minutes ahead "
                       f"of this computer's clock; it was not shown. Check your clock: the message "
                       f"stays stored on the server until your next login")
            return False
        if not dmm.envelope_time_ok(env.time_ms, msg.time):
            self._warn(f"WARNING: a direct message from {sender} dated {_date(env.time_ms)} "
                       f"was discarded: the server stored it at {_date(msg.time)}, and the two "
                       f"may differ by at most {dmm.MAX_CLOCK_SKEW_MS // 60000} minutes (the "
                       f"sender's clock is wrong, or it is a replay)")
            return True
        if self.private_key is None:
            self._warn(f"an encrypted direct message from {sender} is waiting, but no key "
                       f"is loaded to open it; it stays stored on the server until you "
                       f"connect with your key", env.time_ms)
            return False
        with self._files:
            seen = self.seen.status(sender, env.msg_id, env.time_ms)
            if seen == SEEN:
                # Delivered again (an acknowledgement lost, or a replay): shown already.
                log.debug("ignored a replayed dm from %s", sender)
                return True
            if seen == TOO_OLD:
                self._warn(f"WARNING: a direct message from {sender} dated "
                           f"{_date(env.time_ms)} was discarded: it is older than the messages "
                           f"this client still remembers, so it may be a replay")
                return True
            try:
                text = env_mod.open_(env, self.me, self._key_for(env))
            except env_mod.EnvelopeError as err:
                raise _Discard(str(err)) from None
            status = self._pin_status(sender, msg.sender_key)
            self.seen.remember(sender, env.msg_id, env.time_ms)
        log.debug("dm %d from %s: signature ok, pin %s", msg.id, sender, status)
        warning = ""
        if status == ct.CHANGED:
            warning = ct.key_changed_warning(sender, msg.sender_key)
            self._warn(warning, env.time_ms)
        self.emit(PrivateMessage(id=msg.id, time=env.time_ms, sender=sender, to=self.me,
                                 text=text, verified=status != ct.CHANGED, warning=warning,
                                 version=env.version))
        return True

    def _key_for(self, env) -> RsaKey:
        """Our key the envelope was sealed to: the current one, or one it replaced."""
        wrap = next((w for w in env.wraps if w.name.lower() == self.me.lower()), None)
        for key in self.retired_keys:
            if wrap is not None and env_mod.key_fp(key) == wrap.key_fp:
                return key
        return self.private_key

    def _pin_status(self, name: str, der: bytes) -> str:
        if name_key(name) == name_key(self.me) and self.my_der is not None:
            return ct.PINNED if bytes(der) == self.my_der else ct.CHANGED
        return self.contacts.observe(name, bytes(der))

    def _warn(self, text: str, when: Optional[int] = None) -> None:
        self.emit(LocalWarning(text=text, time=when or self._now()))

    def _info(self, text: str) -> None:
        self.emit(LocalNotice(text=text, time=self._now()))

    def _now(self) -> int:
        return int(self._clock() * 1000)

    # -- requests (UI thread) --------------------------------------------------
    def _call(self, msg, what: str):
        """Send a request and wait for its answer (``key``, ``ack`` or ``error``)."""
        event, slot = threading.Event(), []
        with self._wlock:
            self._waiters[msg.cid] = (event, slot)
        try:
            self.session.send_request(msg)
        except BaseException:
            with self._wlock:
                self._waiters.pop(msg.cid, None)
            raise
        if not event.wait(self.key_timeout) or not slot:
            with self._wlock:
                self._waiters.pop(msg.cid, None)
            if self._closed:
                raise ConnectionFailed("the connection to the server is closed")
            raise ConnectionFailed(f"the server did not answer in time ({what})")
        reply = slot[0]
        if isinstance(reply, messages.Error):
            raise SchatError(f"{what}: {reply.text}")
        return reply

    def fetch_key_status(self, user: str) -> dmm.Key:
        """The server's ``key`` reply for ``user``, whatever its status.

        A reply about anyone but ``user`` (names compared by
        :func:`schat.protocol.schema.name_key`) is a lie meant to get a message
        sealed to another account: refused, and nothing is pinned or sent.
        """
        reply = self._call(dmm.GetKey(user=user, cid=self.session.new_cid()),
                           f"fetching {user}'s key")
        if name_key(reply.user) != name_key(user):
            log.debug("key reply for %s named %s: refused", user, reply.user)
            raise TrustError(f"WARNING: asked for {user}'s key, the server answered with "
                             f"{reply.user}'s. A server that does this is trying to read "
                             f"messages meant for {user}; nothing was sent, and no key was "
                             f"pinned.")
        return reply

    def fetch_key(self, user: str) -> dmm.Key:
        """Ask the server for ``user``'s registered key; raise a SchatError when there is none."""
        reply = self.fetch_key_status(user)
        if reply.status == "no_such_user":
            raise UsageError(f"no such user: {user}")
        if reply.status != "ok" or not reply.public_key:
            raise SchatError(dmm.no_key_text(reply.user))
        return reply

    def _require_own_key(self) -> None:
        if self.private_key is None:
            raise SchatError(no_key_help(self.me or "NAME"))

    def send(self, to: str, text: str) -> "SentDm":
        """Seal ``text`` for ``to`` and send it.

        Returns the request's cid (acknowledged by the server), the account the
        envelope is sealed to (its registered spelling: what the UI shows) and
        that account's key fingerprint.
        """
        self._require_own_key()
        reply = self.fetch_key(to)
        der = bytes(reply.public_key)
        if name_key(reply.user) != name_key(self.me):
            with self._files:
                ct.require_pin_match(self.contacts, reply.user, der)
        elif der != self.my_der:
            raise TrustError("the server holds another key for your own account; "
                             "ask the server admin")
        data = env_mod.seal(text, self.me, self.private_key, reply.user,
                            env_mod.public_key_from_der(der), self._now())
        cid = self.session.new_cid()
        self.session.send_request(dmm.DmSend(to=reply.user, envelope=data, cid=cid))
        return SentDm(cid=cid, to=reply.user, fingerprint=fingerprint(der))

    def announce_rotation(self) -> None:
        """Say once that the server's host key is not the one seen at the last visit."""
        old = self.contacts.rotated_from
        if old:
            self._warn(f"WARNING: the key of server {self.session.server_name} has changed since "
                       f"your last visit ({old}, now {self.session.fingerprint}); you accepted "
                       f"the new one. Your contacts' pinned keys and the messages you have "
                       f"seen are kept: a changed contact key is still reported.")
        try:
            with self._files:
                self.contacts.accept_host_key()
        except OSError as err:
            log.debug("could not record the server key in the contacts file: %s", err)

    def register_key(self) -> bool:
        """After a login: announce a rotated server key (once); upload our key when the
        account has none; warn when it differs.

        Returns True when the key was registered now.
        """
        self.announce_rotation()
        if self.private_key is None:
            return False
        reply = self.fetch_key_status(self.me)
        if reply.status == "ok" and reply.public_key:
            if bytes(reply.public_key) != self.my_der:
                self._warn(f"WARNING: the server has another key for your account "
                           f"({fingerprint(bytes(reply.public_key))}), not the one you loaded "
                           f"({fingerprint(self.my_der)}); direct messages to you are sealed "
                           f"to it. Ask the server admin to check it.")
            return False
        if reply.status != "no_key":
            return False
        self._call(dmm.SetKey(public_key=self.my_der, cid=self.session.new_cid()),
                   "registering your key")
        self._info(f"registered your public key {fingerprint(self.my_der)} on the server: "
                   f"you can now log in with it and receive end-to-end encrypted direct "
                   f"messages")
        return True

    def whois(self, name: str) -> str:
        """A member's key fingerprint and how it compares with our pin."""
        reply = self.fetch_key(name)
        der = bytes(reply.public_key)
        fp = fingerprint(der)  # computed here: the server's own text is not shown
        with self._files:
            status = self.contacts.check(reply.user, der)
            pin = self.contacts.pinned(reply.user)
        if name_key(reply.user) == name_key(self.me):
            return f"{reply.user} (you): {fp}"
        if status == ct.PINNED:
            return f"{reply.user}: {fp} (matches your pin)"
        if status == ct.NEW:
            return f"{reply.user}: {fp} (not pinned yet; pinned on first message)"
        return (f"{reply.user}: {fp} -- CHANGED from your pin "
                f"{fingerprint(pin)}; check /verify {reply.user}, then /trust {reply.user}")

    def verify(self, name: str) -> str:
        """The safety code of our key and ``name``'s, identical on both sides.

        A key that differs from the pin is recorded as pending, so that
        ``/trust`` accepts exactly the key whose code was shown.
        """
        self._require_own_key()
        reply = self.fetch_key(name)
        der = bytes(reply.public_key)
        code = env_mod.safety_code(self.my_der, der)
        with self._files:
            status = self.contacts.observe(reply.user, der) \
                if name_key(reply.user) != name_key(self.me) else ct.PINNED
        note = "" if status != ct.CHANGED else \
            (f" (this is for {reply.user}'s NEW key {fingerprint(der)}; "
             f"/trust {reply.user} once it matches)")
        return (f"safety code with {reply.user}: {code}{note}\n"
                f"compare it with {reply.user} in person or by phone; it is the same on "
                f"both sides")

    def trust(self, name: str, expected: Optional[str] = None) -> str:
        """Pin the changed key recorded for ``name`` (the one /verify showed).

        With ``expected`` (a fingerprint), only when the pending key has it.
        Nothing is fetched from the server here.
        """
        with self._files:
            pending = self.contacts.pending(name)
            if pending is None:
                if self.contacts.pinned(name) is None:
                    raise UsageError(f"no key of {name} is known yet; it is pinned with the "
                                     f"first message (see /whois {name})")
                raise UsageError(f"{name}'s key has not changed; nothing to trust")
            fp = fingerprint(pending)
            if expected is not None:
                try:
                    want = normalize_fingerprint(expected)
                except ValueError as err:
                    raise UsageError(f"/trust {name} FINGERPRINT: {err}") from None
                if want != fp:
                    raise TrustError(f"{name}'s changed key is {fp}, not {want}; "
                                     f"nothing was trusted")
            self.contacts.trust(self.contacts.display_name(name), pending)
        return f"now trusting {name}'s key {fp}"

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
        args = rest.split()
        if word == "/trust" and 1 <= len(args) <= 2:
            return [self.trust(*args)]
        if len(args) != 1:
            raise UsageError(f"usage: {word} NAME" + (" [FINGERPRINT]" if word == "/trust" else ""))
        if word == "/whois":
            return [self.whois(args[0])]
        return self.verify(args[0]).splitlines()

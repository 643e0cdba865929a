"""The client side of one chat connection, independent of any user interface.

``ClientSession`` connects, checks the server key against the pins, logs in
(or signs up), then runs a receiver thread that hands every incoming server
message to a callback. The UI calls :meth:`say`, :meth:`command`, :meth:`who`
and :meth:`close` from its own thread; one lock serialises every use of the
sans-I/O connection and the socket's send side.

Requests carry a cid and stay pending until the answer with that cid (an
``ack``, a ``key`` or an ``error``). A request the server drops as
``throttled`` is sent again, and from then on sends are paced below the
server's default message rate; a UI that knows it will send in bulk (the
pipe) sets :attr:`ClientSession.pacer` up front, so it loses no line.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from typing import Callable, Dict, Optional

from schat.client.pacing import Pacer
from schat.client.sanitize import clean
from schat.client.trust import ServerKeyChanged, changed_key_warning
from schat.crypto.keys import fingerprints_equal, normalize_fingerprint
from schat.errors import (AuthenticationFailed, ConnectionFailed, ProtocolError,
                          RemoteProtocolError, TrustError)
from schat.protocol import auth, dm_messages, events, messages, registry, room_messages
from schat.protocol.connection import ClientConnection, violation_text
from schat.store.servers import format_address

log = logging.getLogger("schat.client")

CONNECT_TIMEOUT = 10.0
# Seconds to wait for one address of a server that has several (a cluster's nodes)
# before trying the next.
ADDRESS_TIMEOUT = 5.0
# Bound on how long a login reply may take (the server's scrypt runs first).
REPLY_TIMEOUT = 30.0
RECV_CHUNK = 1 << 16
# A request dropped as "throttled" is sent again at most this many times.
MAX_RESENDS = 5
# Messages the server does not count against the rate (schat.server.link.RATE_FREE).
_UNCOUNTED = (messages.Pong, messages.Bye, dm_messages.DmAck)
# What this client understands, announced at login: rooms, and who is away in `users`
# (docs/PROTOCOL.md §5a).
FEATURES = ("rooms", "away")


class Disconnected:
    """Delivered to the callback once, when the connection ends for any reason."""

    __slots__ = ("reason", "clean", "code")

    def __init__(self, reason: str, clean: bool, code: str = ""):
        self.reason = reason
        self.clean = clean
        # The error code the server gave with its goodbye ("taken_over", "locked"...), if any.
        self.code = code

    def __repr__(self) -> str:
        return f"Disconnected({self.reason!r}, clean={self.clean})"


class LoginRefused(AuthenticationFailed):
    """The server refused a login or sign-up; ``code`` is its error code (``auth_failed``...)."""

    def __init__(self, text: str, code: str):
        super().__init__(text)
        self.code = code


class LoginDropped(ConnectionFailed):
    """The server closed the connection, without a word, in answer to a login that listed
    ``features``: what a server older than rooms does with a field it does not know
    (docs/PROTOCOL.md §5a). Logging in again without them works there."""


class ClientSession:
    """One connection to a schat server (blocking socket + receiver thread)."""

    def __init__(self, host: str, port: int, server_name: str, known_servers=None,
                 expected_fingerprint: Optional[str] = None,
                 confirm_new: Optional[Callable[[str], bool]] = None,
                 accept_new: bool = False, timeout: float = CONNECT_TIMEOUT,
                 features=FEATURES, addresses=None):
        # The server's first address names it (pins, remembered logins, contacts);
        # ``addresses`` (the nodes of a cluster) are tried in order by connect().
        self.host = host
        self.port = port
        self.addresses = tuple(addresses) if addresses else ((host, port),)
        # The address connect() reached.
        self.address: Optional[tuple] = None
        self.server_name = server_name
        self.known_servers = known_servers
        self.expected_fingerprint = expected_fingerprint
        self.confirm_new = confirm_new
        self.accept_new = accept_new
        self.timeout = timeout
        self.features = tuple(features)
        self.fingerprint: Optional[str] = None
        self.pin_status: Optional[str] = None
        self.user: Optional[str] = None
        self.welcome = None
        self._conn = ClientConnection()
        self._sock: Optional[socket.socket] = None
        self._lock = threading.Lock()
        self._cids = itertools.count(1)
        # cid -> the request, kept so that a throttled one can be sent again.
        self._pending: Dict[str, object] = {}
        self._resends: Dict[str, int] = {}
        self._acked = threading.Condition()
        self._stop = threading.Event()
        # None: send at once until the server first throttles a request.
        self.pacer: Optional[Pacer] = None
        # Seconds the user spent answering the unknown-key question in connect().
        self.trust_wait = 0.0
        self._callback: Optional[Callable] = None
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self._closing = False

    # -- connecting -------------------------------------------------------
    def connect(self) -> str:
        """Open the TCP connection (to the first of the server's addresses that accepts
        it) and run the handshake; return the server fingerprint."""
        failed = []
        # With several addresses, one that does not answer must not hold up the others.
        timeout = self.timeout if len(self.addresses) == 1 else min(self.timeout, ADDRESS_TIMEOUT)
        for host, port in self.addresses:
            try:
                self._sock = socket.create_connection((host, port), timeout=timeout)
            except OSError as err:
                failed.append(f"{format_address(host, port)}: {err.strerror or err}")
                log.debug("cannot reach %s: %s", format_address(host, port), err)
                continue
            self.address = (host, port)
            break
        else:
            where = failed[0] if len(failed) == 1 else "; ".join(failed)
            raise ConnectionFailed(f"cannot reach server {self.server_name!r} at {where}")
        self._sock.settimeout(self.timeout)
        ev = self._next_handshake_event()
        if not isinstance(ev, events.ServerKeyReceived):
            raise RemoteProtocolError("the server did not start with its key")
        self.fingerprint = ev.fingerprint
        self._check_pin(ev.fingerprint)
        self._conn.accept_server_key()
        self._flush()
        ev = self._next_handshake_event()
        if not isinstance(ev, events.HandshakeComplete):
            raise RemoteProtocolError("the server did not finish the handshake")
        log.debug("handshake complete with %s (%s)", format_address(*self.address),
                  self.fingerprint)
        return self.fingerprint

    def _check_pin(self, fp: str) -> None:
        if self.expected_fingerprint:
            try:
                expected = normalize_fingerprint(self.expected_fingerprint)
            except ValueError as err:
                raise TrustError(f"servers.json fingerprint for {self.server_name!r}: {err}") from None
            if not fingerprints_equal(expected, fp):
                self.close()
                raise ServerKeyChanged(self.server_name, changed_key_warning(
                    self.server_name, expected, fp, configured=True))
        if self.known_servers is None:
            self.pin_status = "unchecked"
            return
        status = self.known_servers.check(self.server_name, self.host, self.port, fp)
        self.pin_status = status
        if status == "pinned":
            return
        if status == "changed":
            old = self._pinned_fingerprint() or "(unknown)"
            self.close()
            raise ServerKeyChanged(self.server_name, changed_key_warning(self.server_name, old, fp))
        if self.expected_fingerprint or self.accept_new or self._ask_trust(fp):
            self.known_servers.pin(self.server_name, self.host, self.port, fp)
            return
        self.close()
        raise TrustError("server key not accepted; nothing was sent")

    def _ask_trust(self, fp: str) -> bool:
        if self.confirm_new is None:
            return False
        started = time.monotonic()
        try:
            return self.confirm_new(fp)
        finally:
            self.trust_wait = time.monotonic() - started

    def _pinned_fingerprint(self) -> Optional[str]:
        pins = self.known_servers.lookup(self.server_name, self.host, self.port)
        return pins[0].fingerprint if pins else None

    # -- authentication -----------------------------------------------------
    def login_password(self, user: str, password: str, check: bool = False):
        """Log in with a password; return the server's welcome.

        ``check``: only check the credentials (returns the ``checked`` answer): the
        server starts no chat session, takes over none, and nobody sees a join.
        """
        return self._authenticate(user, messages.Login(user=user, password=password,
                                                       features=self.features, check=check))

    def login_key(self, user: str, private_key, check: bool = False):
        """Log in by signing the account name, the server's key fingerprint and the
        handshake transcript with ``private_key``."""
        sig = auth.sign_login(private_key, user, self.fingerprint, self._conn.transcript_hash)
        return self._authenticate(user, messages.LoginKey(user=user, signature=sig,
                                                          features=self.features, check=check))

    def signup(self, user: str, password: str, public_key_der: Optional[bytes] = None):
        """Create an account (and log in as it); return the welcome."""
        return self._authenticate(
            user, messages.Signup(user=user, password=password, public_key=public_key_der,
                                  features=self.features))

    def _authenticate(self, user: str, request):
        self.send(request)
        self._sock.settimeout(REPLY_TIMEOUT)
        while True:
            try:
                msg = self._next_message()
            except ConnectionFailed as err:
                if getattr(request, "features", ()):
                    raise LoginDropped(f"{err} at login (a server older than rooms closes "
                                       f"the connection so)") from None
                raise
            if isinstance(msg, messages.Welcome):
                self.user = msg.user
                self.welcome = msg
                return msg
            if isinstance(msg, room_messages.Checked):
                self.user = msg.user
                return msg
            # The server's texts are shown to the user: cleaned of anything a terminal obeys.
            if isinstance(msg, messages.Error):
                raise LoginRefused(f"{self.server_name}: {clean(msg.text)}", msg.code)
            if isinstance(msg, messages.Bye):
                raise AuthenticationFailed(f"{self.server_name} closed the connection: "
                                           f"{clean(msg.reason)}")
            if isinstance(msg, messages.Ping):
                self.send(messages.Pong(n=msg.n))

    # -- chatting -----------------------------------------------------------
    def start(self, callback: Callable) -> None:
        """Start the receiver thread; ``callback`` gets every server message, then a Disconnected."""
        self._callback = callback
        self._sock.settimeout(None)
        self._thread = threading.Thread(target=self._receive_loop, name="schat-receiver",
                                        daemon=True)
        self._thread.start()

    def say(self, text: str, action: bool = False, room: Optional[str] = None) -> str:
        """Send a chat line to ``room`` (default: the server's current room for this
        session); return its cid (confirmed by an ack)."""
        cid = self.new_cid()
        self.send_request(messages.Say(text=text, cid=cid, action=action, room=room))
        return cid

    def command(self, line: str, room: Optional[str] = None) -> str:
        """Send a chat command line (``/who``, ``/join #dev``, ...); ``room``: the room it
        applies to when the line names none. Return its cid."""
        cid = self.new_cid()
        self.send_request(messages.Command(line=line, cid=cid, room=room))
        return cid

    def who(self, room: Optional[str] = None) -> None:
        """Ask who is in ``room`` (default: the current one); answered by ``users``."""
        self.send(messages.Who(room=room))

    def new_cid(self) -> str:
        """A cid no other request of this session uses."""
        return f"c{next(self._cids)}"

    def send_request(self, msg) -> None:
        """Send ``msg`` (which has a ``cid``) and keep it pending until its answer."""
        with self._acked:
            self._pending[msg.cid] = msg
        try:
            self.send(msg)
        except BaseException:
            with self._acked:
                self._pending.pop(msg.cid, None)
            raise

    @property
    def pending(self) -> int:
        """Requests sent and not yet confirmed."""
        with self._acked:
            return len(self._pending)

    @property
    def connected(self) -> bool:
        return not self._closed

    def wait_acked(self, timeout: float) -> bool:
        """Wait until every request was confirmed (or answered by an error)."""
        with self._acked:
            return self._acked.wait_for(lambda: not self._pending or self._closed, timeout) \
                and not self._pending

    def close(self, reason: str = "bye") -> None:
        """Say goodbye (best effort) and close the socket."""
        if self._closed or self._closing:
            return
        self._closing = True
        self._stop.set()
        sock = self._sock
        if sock is not None:
            try:
                if self._conn.handshake_complete:
                    self.send(messages.Bye(reason=reason))
            except Exception:  # noqa: BLE001 - the peer may already be gone
                pass
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is None or self._thread is threading.current_thread():
            self._mark_closed()
            if sock is not None:
                sock.close()
        else:
            self._thread.join(timeout=self.timeout)
            if sock is not None:
                sock.close()

    # -- internals ------------------------------------------------------------
    def send(self, msg) -> None:
        """Send one message now (paced when the server counts it against the rate)."""
        if self._closed:
            raise ConnectionFailed("the connection to the server is closed")
        pacer = self.pacer
        if (pacer is not None and self.user is not None and not isinstance(msg, _UNCOUNTED)
                and not pacer.wait(self._stop)):
            raise ConnectionFailed("the connection to the server is closed")
        with self._lock:
            self._conn.send(msg)
            data = self._conn.data_to_send()
            try:
                self._sock.sendall(data)
            except OSError as err:
                raise ConnectionFailed(f"connection to {self.server_name} lost: "
                                       f"{err.strerror or err}") from None

    def _flush(self) -> None:
        data = self._conn.data_to_send()
        if data:
            try:
                self._sock.sendall(data)
            except OSError as err:
                raise ConnectionFailed(f"connection to {self.server_name} lost: "
                                       f"{err.strerror or err}") from None

    def _recv(self) -> bytes:
        try:
            return self._sock.recv(RECV_CHUNK)
        except socket.timeout:
            raise ConnectionFailed(f"server {self.server_name} did not answer in time") from None
        except OSError as err:
            raise ConnectionFailed(f"connection to {self.server_name} lost: "
                                   f"{err.strerror or err}") from None

    def _next_event(self):
        try:
            return self._next_event_or_fail()
        except RemoteProtocolError as err:
            self._last_words(err)
            raise

    def _last_words(self, err: RemoteProtocolError) -> None:
        """The server broke the protocol: tell it what (a ``bye`` with the reason, when
        the channel was up), so its operator can see it; the caller then closes."""
        with self._lock:
            self._conn.close(f"protocol error: {violation_text(err)}")
            data = self._conn.data_to_send()
            if data and self._sock is not None:
                try:
                    self._sock.sendall(data)
                except OSError:
                    pass

    def _next_event_or_fail(self):
        while True:
            with self._lock:
                ev = self._conn.next_event()
            if ev is not None:
                return ev
            data = self._recv()
            with self._lock:
                self._conn.receive_data(data)
            if not data:
                with self._lock:
                    ev = self._conn.next_event()
                if ev is not None:
                    return ev
                raise ConnectionFailed(f"server {self.server_name} closed the connection")

    def _next_handshake_event(self):
        try:
            return self._next_event()
        except ConnectionFailed:
            self.close()
            raise
        except ProtocolError as err:
            self.close()
            raise ConnectionFailed(f"handshake with {self.server_name} failed: {err}") from None

    def _next_message(self):
        while True:
            ev = self._next_event()
            if isinstance(ev, events.MessageReceived):
                return ev.message
            if isinstance(ev, events.ConnectionClosed):
                raise ConnectionFailed(f"server {self.server_name} closed the connection")

    def _receive_loop(self) -> None:
        reason, clean_end, code = "connection closed", False, ""
        try:
            while True:
                msg = self._next_message()
                if isinstance(msg, messages.Ping):
                    self.send(messages.Pong(n=msg.n))
                    continue
                if isinstance(msg, messages.Error) and msg.cid is None:
                    code = msg.code
                if self._settle(msg):
                    self._callback(msg)
                if isinstance(msg, messages.Bye):
                    reason, clean_end = clean(msg.reason), True
                    if code in registry.PROTOCOL_ERROR_CODES:
                        # This client sent something the server does not accept: a bug
                        # to report, with what the server said it was.
                        reason = (f"{self.server_name} closed the connection on a protocol "
                                  f"error of this client ({code}): {reason}")
                    break
        except ConnectionFailed as err:
            reason = "closed" if self._closing else str(err)
            clean_end = self._closing
        except ProtocolError as err:
            reason = f"protocol error from {self.server_name}: {err}"
        finally:
            self._mark_closed()
            try:
                self._callback(Disconnected(reason, clean_end, code if clean_end else ""))
            except Exception:  # noqa: BLE001 - a UI failure must not hide the disconnect
                log.exception("UI callback failed on disconnect")

    def _settle(self, msg) -> bool:
        """Settle the request ``msg`` answers; False when the UI need not see ``msg``."""
        cid = getattr(msg, "cid", None)
        if cid is None or not isinstance(msg, (messages.Ack, messages.Error, dm_messages.Key)):
            return True
        with self._acked:
            request = self._pending.get(cid)
            if request is None:
                return True
            if (isinstance(msg, messages.Error) and msg.code == "throttled"
                    and self._resends.get(cid, 0) < MAX_RESENDS):
                self._resends[cid] = self._resends.get(cid, 0) + 1
            else:
                del self._pending[cid]
                self._resends.pop(cid, None)
                self._acked.notify_all()
                return True
        log.debug("request %s throttled by the server; sending it again", cid)
        if self.pacer is None:
            self.pacer = Pacer()
        self.pacer.hold()
        self.send(request)
        return False

    def _mark_closed(self) -> None:
        with self._acked:
            self._closed = True
            self._acked.notify_all()

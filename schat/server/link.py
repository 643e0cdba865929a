"""One client connection on the server: an asyncio.Protocol driving a ServerConnection.

Callbacks, not streams: a message costs no task and no await. Bytes go into
the sans-I/O connection, events come out, chat messages go to the hub. The
RSA key exchange and the account checks run in the server's thread pool; while
one is running, reading pauses and the connection object is left alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from os import write as os_write
from typing import TYPE_CHECKING, List, Optional

from schat.errors import ProtocolError, RemoteProtocolError, StoreError
from schat.protocol import dm_messages, events, messages
from schat.protocol.connection import ServerConnection, violation_text
from schat.server.guard import TokenBucket
from schat.server.hub import Session
from schat.server.link_auth import AUTH, BUSY_TEXT, CHAT, CHECKED, CLOSED, HANDSHAKE, LinkAuth
from schat.server.limits import OUTBOUND_CAP

if TYPE_CHECKING:  # pragma: no cover
    from schat.server.app import Server

log = logging.getLogger("schat.server")

# Seconds a closing connection may take to deliver its last words (a bye) to a peer that
# does not read them; then it is cut off, so it cannot hold its socket open for ever.
CLOSE_GRACE = 10.0
STORE_DOWN_TEXT = "store unavailable: the server cannot reach its account store; try again later"


# Messages outside the rate limit: answers to the server (pong, delivery
# acknowledgements of a stored mailbox, which may be hundreds at login) and bye.
RATE_FREE = frozenset({messages.Pong, messages.Bye, dm_messages.DmAck})


def _leaves(msg) -> bool:
    """Whether ``msg`` is /quit: leaving is never refused for the rate (as Bye is not)."""
    return type(msg) is messages.Command and msg.line[1:].partition(" ")[0].lower() == "quit" \
        and msg.line.startswith("/")


class ClientLink(LinkAuth, asyncio.Protocol):
    """The server end of one TCP connection."""

    __slots__ = ("server", "transport", "conn", "peer", "state", "member", "attempts",
                 "last_rx", "pinged", "busy", "backlog", "deadline", "reason", "address",
                 "admitted", "bucket", "queued", "fd", "buffered")

    def __init__(self, server: "Server"):
        self.server = server
        self.transport: Optional[asyncio.Transport] = None
        self.conn: Optional[ServerConnection] = None
        self.peer = "?"
        self.state = HANDSHAKE
        self.member: Optional[Session] = None
        self.attempts = 0
        self.last_rx = 0.0
        self.pinged = False
        self.busy = False
        self.backlog: List[bytes] = []
        self.deadline: Optional[asyncio.TimerHandle] = None
        self.reason = "connection closed"
        self.address = "?"
        # True while this connection holds an unauthenticated slot (guard.Admission).
        self.admitted = False
        self.bucket: Optional[TokenBucket] = None
        # True while a drain of ``backlog`` waits in the server's handshake lane.
        self.queued = False
        # The socket's descriptor for flush()'s direct writes (-1: always the transport),
        # and whether the transport may still hold bytes of ours.
        self.fd = -1
        self.buffered = False

    # -- asyncio callbacks ---------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.fd = sock.fileno()
        self.server.stats.connections += 1
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.address = str(peer[0]) if peer else "?"
        server = self.server
        refusal = server.admission.admit(self.address)
        if refusal is not None:
            # Refused before any work (no key share, no hello): a flood costs an accept.
            self.state = CLOSED
            server.note_refusal(self.address, refusal)
            self.transport = None
            transport.abort()
            return
        self.admitted = True
        self.last_rx = server.loop.time()
        server.links.add(self)
        if not server.crypto_available():
            # The bounded queue is full: turn the newcomer away before it costs a
            # timer, a ServerHello or a worker (it has no channel to hear why).
            self._drop(BUSY_TEXT)
            return
        self.deadline = server.loop.call_later(server.settings.login_deadline,
                                               self._deadline_passed)
        self.busy = True  # until the ServerHello exists, input waits in the backlog
        server.defer(self._start)

    def _start(self) -> None:
        self.busy = False
        if self.state == CLOSED:
            return
        log.debug("connect from %s", self.peer)
        # The ServerHello's ephemeral X25519 key is made here, in the handshake lane's
        # budget (tens of microseconds: less than handing it to a thread and back).
        if self._run_inline(functools.partial(ServerConnection, self.server.host_key),
                            self._hello_ready) and self.backlog:
            self._resume()

    def _hello_ready(self, conn: ServerConnection) -> None:
        self.conn = conn
        hello = conn.data_to_send()
        self.server.stats.bytes_sent += len(hello)
        log.debug("%s: ServerHello sent (%d bytes, key %s)", self.peer, len(hello),
                  self.server.fingerprint)
        self.transport.write(hello)
        self.buffered = True  # flush() must not write past these bytes

    def data_received(self, data: bytes) -> None:
        self.last_rx = self.server.loop.time()
        self.pinged = False
        if self.state == CHAT and not self.busy and not self.queued:
            self._feed(data)
            return
        # Before the login (or while a worker thread owns the connection object,
        # or older input still waits) input queues, in order, behind the chat.
        self.backlog.append(data)
        if self.busy and self.conn is not None:
            # A pool job owns the connection: stop reading until it is done (one
            # read's worth of backlog at most). Paused here, not when the job starts:
            # a client waits for the job's answer, so reading rarely needs pausing,
            # and a pause and a resume cost two epoll_ctl calls per job.
            self.transport.pause_reading()
        elif not self.busy and not self.queued:
            self.queued = True
            self.server.defer(self._drain)

    def _drain(self) -> None:
        self.queued = False
        if self.state == CLOSED or self.busy or not self.backlog:
            return
        backlog, self.backlog = self.backlog, []
        self._feed(b"".join(backlog))

    def eof_received(self):
        if self.state != CLOSED and not self.busy and not self.queued:
            self._feed(b"")
        return False

    def connection_lost(self, exc) -> None:
        if self.state == CLOSED and self.transport is None:
            return
        if exc is not None and self.state != CLOSED:
            self.reason = "connection lost"
        self.state = CLOSED
        self.transport = None
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        server = self.server
        server.links.discard(self)
        server.stats.disconnected(self.reason)
        self._release_slot()
        who = self.member.name if self.member is not None else "(not logged in)"
        log.info("disconnect %s %s: %s", self.peer, who, self.reason)
        if self.member is not None:
            server.hub.leave(self.member, self.reason)
            self.member = None

    # -- input ---------------------------------------------------------------
    def _feed(self, data: bytes) -> None:
        conn = self.conn
        try:
            conn.receive_data(data)
            self._process()
        except ProtocolError as err:
            self._violation(err)
        except Exception:  # noqa: BLE001 - a bug hit by one client must not stop the server
            log.exception("%s: internal error; connection closed", self.peer)
            self._drop("internal error")

    def _process(self) -> None:
        conn = self.conn
        hub = self.server.hub
        while not self.busy and self.state != CLOSED:
            ev = conn.next_event()
            if ev is None:
                return
            if type(ev) is events.MessageReceived:
                if self.state == CHECKED:
                    self._checked_message(ev.message)
                elif self.state == CHAT:
                    msg = ev.message
                    if type(msg) not in RATE_FREE:
                        if self.member.closing is not None:
                            continue  # ending (/quit, a kick, a takeover): nothing more counts
                        if not self._within_rate() and not _leaves(msg):
                            self._throttled(self.bucket, getattr(msg, "cid", None))
                            continue
                    if not self.server.dm.handle(self.member, msg):
                        hub.handle(self.member, msg)
                else:
                    self._auth_message(ev.message)
            elif type(ev) is events.KeyExchangeReceived:
                log.debug("%s: ClientKeyExchange received", self.peer)
                self._run_job(conn.complete_key_exchange, self._key_exchange_done)
            elif type(ev) is events.HandshakeComplete:
                self.state = AUTH
                self.server.stats.handshakes += 1
                log.debug("%s: handshake complete", self.peer)
            elif type(ev) is events.ConnectionClosed:
                if ev.clean and self.member is not None:
                    self.reason = "left"
                else:
                    self.reason = ev.reason or "connection closed"
                self._close_transport()
                return

    # -- flow control (the signature lane of direct messages) ------------------
    def hold(self) -> None:
        """Stop reading and decoding (the address's signature checks are congested):
        records already read stay undecoded until :meth:`release`."""
        if self.state != CHAT or self.busy:
            return
        self.busy = True
        self.transport.pause_reading()

    def release(self) -> None:
        """Go on after :meth:`hold`: decode what was read, then read again."""
        if self.state != CHAT or not self.busy:
            return
        self.busy = False
        self.transport.resume_reading()
        backlog, self.backlog = self.backlog, []
        try:
            self._process()
        except ProtocolError as err:
            self._violation(err)
            return
        except Exception:  # noqa: BLE001 - a bug hit by one client must not stop the server
            log.exception("%s: internal error; connection closed", self.peer)
            self._drop("internal error")
            return
        if backlog and self.state != CLOSED:
            if self.busy:  # held again: the newer bytes wait behind the older ones
                self.backlog = backlog + self.backlog
            else:
                self._feed(b"".join(backlog))

    def _run_job(self, job, done) -> None:
        """Run blocking ``job`` in the pool; ``done(result)`` back on the loop, in the
        handshake lane. Reading pauses meanwhile: the job owns the connection object."""
        server = self.server
        if not server.reserve_crypto():
            self._refuse("busy", BUSY_TEXT)
            return
        self.busy = True  # input now waits in the backlog (data_received pauses reading)
        server.pool.run(job, functools.partial(self._job_done, done))

    def _job_done(self, done, result, error) -> None:
        self.server.release_crypto()
        self.server.defer(self._job_finished, done, result, error)

    def _job_finished(self, done, result, error) -> None:
        self.busy = False
        if self.state == CLOSED:
            return
        if not self._complete(done, result, error):
            return
        if self.state == CLOSED or self.busy:
            return
        self.transport.resume_reading()
        self._resume()

    def _run_inline(self, job, done) -> bool:
        """Run ``job`` now, in the handshake lane, then ``done(result)`` as for a pool
        job; False when the connection ended."""
        try:
            result, error = job(), None
        except Exception as err:  # noqa: BLE001 - handled as a pool job's would be
            result, error = None, err
        return self._complete(done, result, error) and self.state != CLOSED

    def _complete(self, done, result, error) -> bool:
        """``done(result)``, or the connection's end for ``error``; False when it ended."""
        try:
            if error is not None:
                raise error
            done(result)
        except ProtocolError as err:
            self._violation(err)
            return False
        except OSError as err:  # out of file descriptors or memory: this connection only
            self._drop(f"server resources exhausted ({err.strerror or err})")
            return False
        except StoreError as err:  # the store is down: say so, the operator's log says why
            log.warning("%s: %s", self.peer, err)
            self._refuse("busy", STORE_DOWN_TEXT)
            return False
        except Exception:  # noqa: BLE001 - one connection's failure must not stop the server
            log.exception("%s: internal error; connection closed", self.peer)
            self._drop("internal error")
            return False
        return True

    def _resume(self) -> None:
        """Go on with the events and the input that waited while a job ran."""
        backlog, self.backlog = self.backlog, []
        try:
            self._process()
            if backlog and self.state != CLOSED:
                self._feed(b"".join(backlog))
        except ProtocolError as err:
            self._violation(err)
        except Exception:  # noqa: BLE001 - a bug hit by one client must not stop the server
            log.exception("%s: internal error; connection closed", self.peer)
            self._drop("internal error")

    def _key_exchange_done(self, _result) -> None:
        data = self.conn.data_to_send()
        self.server.stats.bytes_sent += len(data)
        log.debug("%s: key exchange done, ServerFinished sent (%d bytes)", self.peer, len(data))
        self.transport.write(data)
        self.buffered = True  # flush() must not write past these bytes

    def _within_rate(self) -> bool:
        """The member's own rate, then its address's (all its members together)."""
        server = self.server
        now = server.loop.time()
        bucket = self.bucket
        if bucket is None and server.settings.rate_limit > 0:
            # Made when first needed, full (as it would be by now had it been made at
            # the login), and dropped again by trim() once full: idle members hold none.
            bucket = self.bucket = TokenBucket(server.settings.rate_limit,
                                               server.settings.rate_burst, now)
        if bucket is not None and not bucket.take(now):
            return False
        return server.address_rates.take(self.address, now)

    def trim(self, now: float) -> None:
        """Give back what an idle member need not hold (the server calls it now and then):
        the channel's cipher key objects, and a message budget that is full again."""
        self.conn.trim()
        bucket = self.bucket
        if bucket is not None and bucket.full(now):
            self.bucket = None

    def _throttled(self, bucket: Optional[TokenBucket], cid: Optional[str]) -> None:
        """Drop one message over the rate: say so, and disconnect a persistent flood."""
        server = self.server
        server.stats.refuse("rate")
        # Every dropped request is answered with its cid, so the client knows
        # which one to send again; a message without a cid gets the shared reply.
        if cid is None:
            server.hub.queue_encoded(self.member, server.throttled_reply)
        else:
            server.hub.queue(self.member, dataclasses.replace(server.throttled_error, cid=cid))
        if bucket is not None and bucket.flooding:
            log.warning("%s %s: message flood; disconnected", self.peer, self.member.name)
            self.reason = "flooding"
            self._close_transport(bye="too many messages; disconnected")

    # -- output and closing ----------------------------------------------------
    def _send(self, msg) -> None:
        """Send one message at once (login phase; chat output goes through the hub)."""
        conn = self.conn
        if self.state == CLOSED or conn is None or not conn.handshake_complete:
            return
        conn.send(msg)
        data = conn.data_to_send()
        self.server.stats.bytes_sent += len(data)
        self.transport.write(data)
        self.buffered = True  # flush() must not write past these bytes
        if self.transport.get_write_buffer_size() > self.server.settings.outbound_cap:
            # A client that never reads its login-phase replies (pongs) is dropped too.
            self._drop("too slow: output buffer full")

    def _refuse(self, code: str, text: str) -> None:
        """Tell the client why (when the channel is open), then close."""
        self._send(messages.Error(code=code, text=text))
        self.reason = text
        self._close_transport(bye=text)

    def _deadline_passed(self) -> None:
        self.deadline = None
        if self.state in (HANDSHAKE, AUTH):
            self._refuse("too_many_attempts" if self.attempts else "invalid",
                         "login deadline passed")

    def _violation(self, err: ProtocolError) -> None:
        """The client broke the protocol (or, for a LocalProtocolError, this server did).

        With the channel up, the client is told what it did wrong: ``error`` with the
        violation's code and the reason, then ``bye`` with the same reason, in one
        record; the connection is then closed. Before the channel is up there is no
        way to say anything, and the connection is just closed."""
        if self.state == CLOSED:
            return
        if not isinstance(err, RemoteProtocolError):
            log.error("%s: %s; connection closed", self.peer, err)
            self._drop("internal error")
            return
        text = violation_text(err)
        self.reason = f"protocol error: {text}"
        self._close_transport(bye=text, before=(messages.Error(code=err.code, text=text),))

    def _drop(self, reason: str) -> None:
        """Abort at once (protocol violation, slow consumer): nothing more is sent."""
        if self.state == CLOSED:
            return
        self.reason = reason
        self.state = CLOSED
        if self.transport is not None:
            self.transport.abort()

    def _close_transport(self, bye: Optional[str] = None, before=()) -> None:
        """Close after sending what is queued; with ``bye``, say it last (``before``:
        messages in the same record ahead of it)."""
        if self.state == CLOSED and self.transport is None:
            return
        conn = self.conn
        if bye is not None and conn is not None:
            conn.close(bye, before)  # says nothing when the channel is not (or no longer) up
            data = conn.data_to_send()
            if data and self.transport is not None:
                self.server.stats.bytes_sent += len(data)
                self.transport.write(data)
                self.buffered = True  # flush() must not write past these bytes
        self.state = CLOSED
        transport = self.transport
        if transport is not None:
            transport.close()
            if transport.get_write_buffer_size():
                self.server.loop.call_later(CLOSE_GRACE, transport.abort)

    def flush(self, member: Session, cap: int = OUTBOUND_CAP) -> int:
        """Send everything the hub queued for this member as one record (or a few);
        returns the bytes sent (or handed to the transport).

        The server's hot path: once per member per loop turn with something to send.
        While the transport holds nothing, the record goes straight to the socket
        (``os.write``: one C call, where ``transport.write`` is a dozen Python steps
        before the same ``send``); anything the kernel does not take, and everything
        after it until the transport has drained, goes through the transport, so the
        byte order is the transport's and its flow control and errors apply.
        """
        if self.state is CLOSED:
            return 0
        if member.overflowed:
            self._drop(member.closing or "too slow")
            return 0
        outbox = member.outbox
        sent = 0
        if outbox:
            data = self.conn.seal_encoded(outbox)
            outbox.clear()
            member.queued = 0
            sent = len(data)
            transport = self.transport
            if self.buffered and not transport.get_write_buffer_size():
                self.buffered = False
            if self.buffered or self.fd < 0:
                written = 0
            else:
                try:
                    written = os_write(self.fd, data)
                except (BlockingIOError, InterruptedError):
                    written = 0
                except OSError:
                    # The transport's own send meets the error and ends the connection.
                    written = 0
            if written < sent:
                transport.write(data[written:] if written else data)
                self.buffered = True
                if transport.get_write_buffer_size() > cap:
                    self._drop("too slow: output buffer full")
                    return sent
        if member.closing is not None:
            self.reason = member.closing
            self._close_transport()
        return sent

    def ping(self, n: int) -> None:
        """Ask an idle member for a sign of life."""
        self.pinged = True
        self.server.hub.queue(self.member, messages.Ping(n=n))

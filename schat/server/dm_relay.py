"""The server's part in end-to-end encrypted direct messages: keys, store, forward.

The relay answers ``get_key`` from the account store, lets a member register
a key on an account that has none (``set_key``), checks each ``dm_send``
envelope (well-formed, really from the sender, sealed to the recipient's
current key), stores it in the :class:`~schat.server.mailbox.Mailbox`, forwards
it when the recipient is online, delivers the stored ones right after a
login, and deletes each when the recipient acknowledges it (``dm_ack``).

Every check that needs no cryptography comes first, on the event loop: the
sending address's share of signature checks (so a flood over it costs no
lookups), the names, the time, the keys, the recipient's mailbox. Only then
is the signature checked, and never on the loop: the :class:`SignatureLane` runs it
in the crypto threads, within the sending address's share of their time, and
hands the verdict back through the server's handshake lane (after chat). A
member's messages are stored and answered in the order they were sent.

It never holds a key that opens an envelope: the checks use public keys only.
Like the hub it knows nothing of sockets; it queues replies through the hub.
"""

from __future__ import annotations

import functools
import hmac
import logging
import time
from collections import Counter, deque
from typing import Callable, Deque, Dict, Optional, Tuple

from schat.crypto import envelope as env_mod
from schat.crypto.keys import fingerprint, import_public_key, public_der
from schat.errors import KeyFileError, SchatError, StoreError
from schat.names import name_key
from schat.protocol import dm_messages as dmm
from schat.protocol import messages
from schat.server.guard import CryptoShare
from schat.server.limits import NEW_ACCOUNT_AGE
from schat.server.mailbox import Mailbox, MailboxFull

log = logging.getLogger("schat.server.dm")

NOT_SIGNED = "the envelope is not signed with the key registered on your account"
STORE_DOWN_TEXT = ("store unavailable: the server cannot reach its account store, so this "
                   "was not done; try again later")
BUSY_TEXT = "the server is busy checking messages; send it again in a moment"
THROTTLED_TEXT = ("too many direct messages from your address for now; "
                  "message not sent, send it again in a moment")

# (job to run in a crypto thread, done(result, error) called with its outcome on the loop)
Runner = Callable[[Callable[[], object], Callable[[object, Optional[BaseException]], None]], None]


def check_signature(env: env_mod.Envelope, sender_der: bytes) -> Tuple[bool, float]:
    """Run in a crypto thread: does the sender's key sign ``env``, and the thread CPU
    seconds the check took (what its address is charged)."""
    started = time.thread_time()
    try:
        env_mod.verify(env, env_mod.public_key_from_der(sender_der))
        ok = True
    except env_mod.EnvelopeError:
        ok = False
    return ok, time.thread_time() - started


class SignatureLane:
    """Envelope signature checks off the event loop: a fair queue per address.

    Each address has its own queue, served in turn, one check at a time per
    address and at most ``slots`` in the thread pool at once (a login never
    waits behind more than ``slots`` of them). An address is served only while
    its :class:`~schat.server.guard.CryptoShare` has time left; when it has
    none, its queue waits for the share to refill (a timer, not a refusal).

    A queue of ``backlog`` checks is *full*: the relay then holds the
    connection that added to it (the I/O layer stops reading and decoding it),
    so a flood waits in its own socket buffers instead of costing the server
    a decryption per message; ``room(address, n)`` tells the I/O layer when
    ``n`` more may go on. Past twice ``backlog`` a check is refused
    ``throttled``, and past ``capacity`` checks waiting in all, ``busy``.
    """

    def __init__(self, run: Runner, share: CryptoShare, slots: int, capacity: int,
                 backlog: int, clock: Callable[[], float],
                 call_later: Callable[[float, Callable[[], None]], object],
                 room: Callable[[str, int], None]):
        self._run = run
        self.share = share
        self.slots = slots
        self.capacity = capacity
        self.backlog = backlog
        self.waiting = 0
        self.running = 0
        self._clock = clock
        self._call_later = call_later
        self._room = room
        self._timer = None
        # address -> its checks not yet started; the dict's order is the turn order.
        self._queues: Dict[str, Deque[Tuple[Callable, Callable]]] = {}

    def close(self) -> None:
        """Start nothing more (the server is stopping: its thread pool is going away)."""
        self.slots = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def full(self, address: str) -> bool:
        """True when ``address``'s queue holds ``backlog`` checks or more."""
        queue = self._queues.get(address)
        return queue is not None and len(queue) >= self.backlog

    def refusal(self, address: str) -> Optional[str]:
        """The error code a check from ``address`` would get now (None: it would be
        queued). Asked before anything else about a message: a refused one then
        costs the loop no lookups either."""
        if self.waiting + self.running >= self.capacity:
            return "busy"
        queue = self._queues.get(address)
        if queue is not None and len(queue) >= 2 * self.backlog:
            return "throttled"
        return None

    def submit(self, address: str, env: env_mod.Envelope, sender_der: bytes,
               done: Callable[[bool], None]) -> Optional[str]:
        """Queue the check of ``env``; None when queued (``done(ok)`` follows on the
        loop), else the error code to answer with."""
        refusal = self.refusal(address)
        if refusal is not None:
            return refusal
        self._queues.setdefault(address, deque()).append(
            (functools.partial(check_signature, env, sender_der),
             functools.partial(self._checked, address, done)))
        self.waiting += 1
        self._start()
        return None

    def _start(self) -> None:
        self._timer = None
        now = self._clock()
        share = self.share
        later = None
        for address in list(self._queues):
            if self.running >= self.slots:
                return
            if not share.admit(address, now):
                wait = share.ready_in(address, now)
                if wait > 0:  # else a check of this address is running: its end restarts
                    later = wait if later is None else min(later, wait)
                continue
            queue = self._queues.pop(address)
            job, finished = queue.popleft()
            if queue:
                self._queues[address] = queue  # to the back of the turn order
            self.waiting -= 1
            self.running += 1
            self._run(job, finished)
            if len(queue) < self.backlog:
                self._room(address, self.backlog - len(queue))
        if later is not None and self._timer is None:
            self._timer = self._call_later(later, self._start)

    def _checked(self, address: str, done: Callable[[bool], None], result,
                 error: Optional[BaseException]) -> None:
        self.running -= 1
        if error is None:
            ok, seconds = result
        else:  # a failed check refuses the message, nothing more
            log.error("signature check failed", exc_info=error)
            ok, seconds = False, 0.0
        self.share.done(address, seconds, self._clock())
        done(ok)
        self._start()


class _Pending:
    """A ``dm_send`` that passed every cheap check and waits for its signature check."""

    __slots__ = ("member", "msg", "recipient", "sender_der", "new_sender", "vouch", "verdict")

    def __init__(self, member, msg: dmm.DmSend, recipient: str, sender_der: bytes,
                 new_sender: bool, vouch: bool):
        self.member = member
        self.msg = msg
        self.recipient = recipient
        self.sender_der = sender_der
        self.new_sender = new_sender
        # An established sender writes to a new account: once stored, it is established.
        self.vouch = vouch
        self.verdict: Optional[bool] = None


class DmRelay:
    """Handles the DM wire messages of logged-in members."""

    def __init__(self, hub, store, mailbox: Mailbox, lane: SignatureLane,
                 origin: Callable[[object], str], hold: Callable[[object], None],
                 new_account_age: float = NEW_ACCOUNT_AGE):
        self.hub = hub
        self.store = store
        self.mailbox = mailbox
        self.lane = lane
        # member -> the address it is connected from (the I/O layer knows it).
        self.origin = origin
        # Stop reading a member's connection until its address's queue of checks
        # has room again (the I/O layer does it; see SignatureLane).
        self.hold = hold
        self.new_account_age = new_account_age
        # How each dm_send was answered ("ack" or the error code): for operators and tests.
        self.outcomes: Counter = Counter()
        # Member (name_key) -> id of the last stored envelope sent in the batch
        # now in flight; the next batch follows its acknowledgement.
        self._batch_end: Dict[str, int] = {}
        # Member (name_key) -> its dm_sends waiting for their signature checks, in order.
        self._checking: Dict[str, Deque[_Pending]] = {}

    def _error(self, member, code: str, text: str, cid: Optional[str] = None) -> None:
        self.hub.queue(member, messages.Error(code=code, text=text, cid=cid))

    def _refuse(self, member, msg: dmm.DmSend, code: str, text: str) -> None:
        self.outcomes[code] += 1
        self._error(member, code, text, msg.cid)

    def handle(self, member, msg) -> bool:
        """Act on ``msg`` when it is a DM message; False lets the hub handle it."""
        try:
            return self._dispatch(member, msg)
        except StoreError as err:  # the store is down: this request fails, the member stays
            if isinstance(msg, dmm.DmSend):
                self.outcomes["busy"] += 1
            self._store_down(member, err, getattr(msg, "cid", None))
            return True

    def _store_down(self, member, err: StoreError, cid: Optional[str]) -> None:
        log.warning("%s: %s", member.name, err)
        self._error(member, "busy", STORE_DOWN_TEXT, cid)

    def _dispatch(self, member, msg) -> bool:
        if isinstance(msg, dmm.DmSend):
            self._send(member, msg)
        elif isinstance(msg, dmm.DmAck):
            if self.mailbox.ack(member.name, msg.id):
                log.debug("dm %d acknowledged by %s", msg.id, member.name)
            key = name_key(member.name)
            if self._batch_end.get(key) == msg.id:
                self._deliver(member, after_id=msg.id)
        elif isinstance(msg, dmm.GetKey):
            self._get_key(member, msg)
        elif isinstance(msg, dmm.SetKey):
            self._set_key(member, msg)
        else:
            return False
        return True

    def on_login(self, member) -> None:
        """Right after the welcome: announce the stored envelopes and deliver them,
        oldest first."""
        count = self.mailbox.count(member.name)
        self.hub.queue(member, dmm.Mailbox(count=count))
        if count:  # most logins find the mailbox empty: one query, not two
            self._deliver(member, after_id=0)

    def _deliver(self, member, after_id: int) -> None:
        # A full mailbox can hold more than a member's outbound cap: send it in
        # batches of at most half the cap, each after the previous one's last
        # envelope is acknowledged (the client has read it), so the owner of a
        # full mailbox is never dropped as a slow reader while logging in.
        key = name_key(member.name)
        self._batch_end.pop(key, None)
        budget = self.hub.outbound_cap // 2
        sent = 0
        last = after_id
        for item in self.mailbox.pending(member.name, after_id):
            if sent and member.queued + len(item.envelope) * 2 > budget:
                self._batch_end[key] = last
                break
            self.hub.queue(member, dmm.DmEnvelope(id=item.id, time=item.time, sender=item.sender,
                                                  envelope=item.envelope,
                                                  sender_key=item.sender_key))
            last = item.id
            sent += 1
        if sent:
            log.debug("delivered %d stored dm(s) to %s", sent, member.name)

    def _get_key(self, member, msg: dmm.GetKey) -> None:
        # An existing account is always named as registered, whatever case was asked.
        account = self.store.get(msg.user)
        if account is None:
            reply = dmm.Key(cid=msg.cid, user=msg.user, status="no_such_user")
        elif not account.public_key_der:
            reply = dmm.Key(cid=msg.cid, user=account.name, status="no_key")
        else:
            reply = dmm.Key(cid=msg.cid, user=account.name, status="ok",
                            public_key=bytes(account.public_key_der),
                            fingerprint=fingerprint(bytes(account.public_key_der)))
        self.hub.queue(member, reply)

    def _set_key(self, member, msg: dmm.SetKey) -> None:
        account = self.store.get(member.name)
        if account is not None and account.public_key_der:
            registered = bytes(account.public_key_der)
            if _same_key(registered, bytes(msg.public_key)):
                # Sending the registered key again (in any encoding) is not an error.
                self._ack(member, msg.cid, 0)
            else:
                self._error(member, "key_exists",
                            f"your account already has another key "
                            f"({fingerprint(registered)}); the server admin "
                            f"can replace it with `schat user set-key {account.name} FILE`",
                            msg.cid)
            return
        try:
            self.store.set_public_key(member.name, bytes(msg.public_key))
        except SchatError as err:
            self._error(member, "invalid", str(err), msg.cid)
            return
        log.info("registered the public key of %s (%s)", member.name,
                 fingerprint(bytes(msg.public_key)))
        self._ack(member, msg.cid, 0)

    def _ack(self, member, cid: str, mid: int) -> None:
        self.hub.queue(member, messages.Ack(cid=cid, id=mid, time=self.hub.now_ms()))

    def is_new(self, account, now_ms: int) -> bool:
        """A sign-up account that is young and no established member has written to."""
        if account.established:
            return False
        return (now_ms / 1000.0 - account.created.timestamp()) < self.new_account_age

    # -- dm_send -----------------------------------------------------------------
    def _send(self, member, msg: dmm.DmSend) -> None:
        address = self.origin(member)
        refusal = self.lane.refusal(address)
        if refusal is not None:
            self._lane_refused(member, msg, refusal)
            return
        try:
            env = env_mod.parse(msg.envelope)
        except env_mod.EnvelopeError as err:
            self._refuse(member, msg, "invalid", f"bad direct-message envelope: {err}")
            return
        recipient = self.store.get(msg.to)
        if recipient is None:
            self._refuse(member, msg, "no_such_user", f"no such user: {msg.to}")
            return
        sender = self.store.get(member.name)
        if sender is None or not sender.public_key_der:
            self._refuse(member, msg, "no_key", dmm.no_key_text(member.name))
            return
        # Names are signed in their canonical form (parse refuses any other), and
        # must be these two accounts: a reader never sees "CAROL" for carol.
        if env.sender != name_key(sender.name) or env.recipient != name_key(recipient.name):
            self._refuse(member, msg, "invalid",
                         f"the envelope must name its sender and recipient as "
                         f"{name_key(sender.name)} -> {name_key(recipient.name)}")
            return
        now = self.hub.now_ms()
        if not dmm.envelope_time_ok(env.time_ms, now):
            self._refuse(member, msg, "invalid",
                         f"the envelope's time is {abs(env.time_ms - now) // 1000} s away from "
                         f"the server's clock (at most {dmm.MAX_CLOCK_SKEW_MS // 1000} s); "
                         f"check your computer's clock")
            return
        sender_der = bytes(sender.public_key_der)
        if not hmac.compare_digest(env.sender_fp, env_mod.key_fp(sender_der)):
            self._refuse(member, msg, "invalid", NOT_SIGNED)
            return
        if not recipient.public_key_der:
            self._refuse(member, msg, "no_key", dmm.no_key_text(recipient.name))
            return
        recipient_fp = env_mod.key_fp(bytes(recipient.public_key_der))
        if not hmac.compare_digest(env.wraps[0].key_fp, recipient_fp):
            self._refuse(member, msg, "key_changed", f"{recipient.name}'s key has changed; "
                                                     f"fetch it again (/whois {recipient.name})")
            return
        new_sender = self.is_new(sender, now)
        try:
            self.mailbox.check(recipient.name, member.name, new_sender)
        except MailboxFull as err:
            self._refuse(member, msg, "mailbox_full", str(err))
            return
        pending = _Pending(member, msg, recipient.name, sender_der, new_sender,
                           vouch=not new_sender and not recipient.established)
        refusal = self.lane.submit(address, env, sender_der,
                                   functools.partial(self._checked, pending))
        if refusal is not None:
            self._lane_refused(member, msg, refusal)
            return
        self._checking.setdefault(name_key(member.name), deque()).append(pending)
        if self.lane.full(address):
            self.hold(member)

    def _lane_refused(self, member, msg: dmm.DmSend, code: str) -> None:
        if code == "busy":
            self._refuse(member, msg, code, BUSY_TEXT)
            return
        self._refuse(member, msg, code, THROTTLED_TEXT)
        # Its address's queue is over-full: read no more from this connection
        # until the queue has room (what it already sent waits, unread).
        self.hold(member)

    def _checked(self, pending: _Pending, ok: bool) -> None:
        pending.verdict = ok
        key = name_key(pending.member.name)
        queue = self._checking.get(key)
        while queue and queue[0].verdict is not None:
            self._finish(queue.popleft())
        if queue is not None and not queue:
            del self._checking[key]

    def _finish(self, pending: _Pending) -> None:
        try:
            self._store(pending)
        except StoreError as err:
            self.outcomes["busy"] += 1
            self._store_down(pending.member, err, pending.msg.cid)

    def _store(self, pending: _Pending) -> None:
        member, msg = pending.member, pending.msg
        if self.hub.member(member.name) is not member:
            self.outcomes["gone"] += 1  # the sender left meanwhile: nothing stored, no answer
            return
        if not pending.verdict:
            self._refuse(member, msg, "invalid", NOT_SIGNED)
            return
        now = self.hub.now_ms()
        try:
            dm_id = self.mailbox.put(pending.recipient, member.name, now, msg.envelope,
                                     pending.sender_der, pending.new_sender)
        except MailboxFull as err:
            self._refuse(member, msg, "mailbox_full", str(err))
            return
        log.debug("dm %d from %s to %s: %d bytes stored", dm_id, member.name, pending.recipient,
                  len(msg.envelope))
        if pending.vouch and self.store.mark_established(pending.recipient):
            log.info("%s is no longer a new account (%s wrote to it)", pending.recipient,
                     member.name)
        target = self.hub.member(pending.recipient)
        if target is not None:
            self.hub.queue(target, dmm.DmEnvelope(id=dm_id, time=now, sender=member.name,
                                                  envelope=msg.envelope,
                                                  sender_key=pending.sender_der))
        else:
            # The request's cid, for a client that knows rooms (one that does not reads
            # notices in the shape it always did: without one).
            self.hub.queue(member, messages.Notice(
                text=f"{pending.recipient} is offline; your message is stored and will be "
                     f"delivered at their next login", time=now,
                cid=msg.cid if getattr(member, "aware", True) else None))
        self.outcomes["ack"] += 1
        self._ack(member, msg.cid, dm_id)


def _same_key(registered_der: bytes, offered: bytes) -> bool:
    """True when ``offered`` (DER or PEM, any valid encoding) is the registered key."""
    if hmac.compare_digest(registered_der, offered):
        return True
    try:
        return hmac.compare_digest(registered_der, public_der(import_public_key(offered)))
    except KeyFileError:
        return False

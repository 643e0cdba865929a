"""The server's part in end-to-end encrypted direct messages: keys, store, forward.

The relay answers ``get_key`` from the account store, lets a member register
a key on an account that has none (``set_key``), checks each ``dm_send``
envelope (well-formed, really from the sender, sealed to the recipient's
current key), stores it in the :class:`~schat.server.mailbox.Mailbox`, forwards
it when the recipient is online, delivers the stored ones right after a
login, and deletes each when the recipient acknowledges it (``dm_ack``).

It never holds a key that opens an envelope: the checks use public keys only.
Like the hub it knows nothing of sockets; it queues replies through the hub.
"""

from __future__ import annotations

import hmac
import logging
from typing import Dict, Optional

from schat.crypto import envelope as env_mod
from schat.crypto.keys import fingerprint
from schat.errors import SchatError, StoreError
from schat.protocol import dm_messages as dmm
from schat.protocol import messages
from schat.server.mailbox import Mailbox, MailboxFull

log = logging.getLogger("schat.server.dm")

STORE_DOWN_TEXT = ("store unavailable: the server cannot reach its account store, so this "
                   "was not done; try again later")

class DmRelay:
    """Handles the DM wire messages of logged-in members."""

    def __init__(self, hub, store, mailbox: Optional[Mailbox] = None):
        self.hub = hub
        self.store = store
        self.mailbox = mailbox or Mailbox(store)
        # Member (lower-cased) -> id of the last stored envelope sent in the batch
        # now in flight; the next batch follows its acknowledgement.
        self._batch_end: Dict[str, int] = {}

    def _error(self, member, code: str, text: str, cid: Optional[str] = None) -> None:
        self.hub.queue(member, messages.Error(code=code, text=text, cid=cid))

    def handle(self, member, msg) -> bool:
        """Act on ``msg`` when it is a DM message; False lets the hub handle it."""
        try:
            return self._dispatch(member, msg)
        except StoreError as err:  # the store is down: this request fails, the member stays
            log.warning("%s: %s", member.name, err)
            self._error(member, "busy", STORE_DOWN_TEXT, getattr(msg, "cid", None))
            return True

    def _dispatch(self, member, msg) -> bool:
        if isinstance(msg, dmm.DmSend):
            self._send(member, msg)
        elif isinstance(msg, dmm.DmAck):
            if self.mailbox.ack(member.name, msg.id):
                log.debug("dm %d acknowledged by %s", msg.id, member.name)
            key = member.name.lower()
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
        key = member.name.lower()
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
            if bytes(account.public_key_der) == bytes(msg.public_key):
                self._ack(member, msg.cid, 0)
            else:
                self._error(member, "key_exists",
                            f"your account already has another key "
                            f"({fingerprint(bytes(account.public_key_der))}); the server admin "
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

    def _send(self, member, msg: dmm.DmSend) -> None:
        try:
            env = env_mod.parse(msg.envelope)
        except env_mod.EnvelopeError as err:
            self._error(member, "invalid", f"bad direct-message envelope: {err}", msg.cid)
            return
        sender = self.store.get(member.name)
        recipient = self.store.get(msg.to)
        if recipient is None:
            self._error(member, "no_such_user", f"no such user: {msg.to}", msg.cid)
            return
        if env.sender.lower() != member.name.lower() or env.recipient.lower() != msg.to.lower():
            self._error(member, "invalid", "the envelope's sender or recipient does not match",
                        msg.cid)
            return
        if sender is None or not sender.public_key_der:
            self._error(member, "no_key", dmm.no_key_text(member.name), msg.cid)
            return
        sender_der = bytes(sender.public_key_der)
        try:
            env_mod.verify(env, env_mod.public_key_from_der(sender_der))
        except env_mod.EnvelopeError:
            self._error(member, "invalid", "the envelope is not signed with the key registered "
                                           "on your account", msg.cid)
            return
        if not recipient.public_key_der:
            self._error(member, "no_key", dmm.no_key_text(recipient.name), msg.cid)
            return
        recipient_fp = env_mod.key_fp(bytes(recipient.public_key_der))
        if not hmac.compare_digest(env.wraps[0].key_fp, recipient_fp):
            self._error(member, "key_changed", f"{recipient.name}'s key has changed; "
                                               f"fetch it again (/whois {recipient.name})",
                        msg.cid)
            return
        now = self.hub.now_ms()
        try:
            dm_id = self.mailbox.put(recipient.name, member.name, now, msg.envelope, sender_der)
        except MailboxFull as err:
            self._error(member, "mailbox_full", str(err), msg.cid)
            return
        log.debug("dm %d from %s to %s: %d bytes stored", dm_id, member.name, recipient.name,
                  len(msg.envelope))
        target = self.hub.member(recipient.name)
        if target is not None:
            self.hub.queue(target, dmm.DmEnvelope(id=dm_id, time=now, sender=member.name,
                                                  envelope=msg.envelope, sender_key=sender_der))
        else:
            self.hub.queue(member, messages.Notice(
                text=f"{recipient.name} is offline; your message is stored and will be "
                     f"delivered at their next login", time=now))
        self._ack(member, msg.cid, dm_id)

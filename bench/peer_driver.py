"""The shared peer harness's schat driver, signing key logins as the protocol now says.

The harness's ``schat_driver.py`` signs a key login over the transcript hash
alone (login signature v1); since v2 (docs/PROTOCOL.md §5) the signature also
names the account and the server's key. ``bench/peer.sh`` runs a copy of the
harness in which the original driver is renamed ``schat_driver_base.py`` and
this file takes its place: everything else (records, the lean receive path,
options) is the harness's own code.
"""

from __future__ import annotations

import schat_driver_base as base  # the harness's driver, copied beside this file

from schat.protocol import auth, events, messages


class SchatClient(base.SchatClient):
    def _event(self, ev) -> None:
        if isinstance(ev, events.ServerKeyReceived):
            self.server_fp = ev.fingerprint
        elif isinstance(ev, events.HandshakeComplete) and self.login == "key":
            p = self.proto
            p.send(messages.LoginKey(user=self.name, signature=auth.sign_login(
                self.key, self.name, self.server_fp, p.transcript_hash)))
            return
        super()._event(ev)


base.SchatClient = SchatClient  # the driver builds its clients by this name
SchatDriver = base.SchatDriver

"""The refusal of a server whose key is not the pinned one, in words a user acts on."""

from __future__ import annotations

from schat.errors import TrustError


class ServerKeyChanged(TrustError):
    """The server's key differs from the pin; ``banner`` is the loud multi-line warning."""

    def __init__(self, name: str, banner: str):
        super().__init__(f"the key of server {name!r} has changed; the connection was "
                         f"refused (see the warning above)")
        self.banner = banner


def changed_key_warning(name: str, old: str, new: str, configured: bool = False) -> str:
    """The loud, SSH-style refusal shown when a pinned server key changed."""
    bar = "@" * 59
    if configured:
        advice = ("The fingerprint comes from servers.json: check it with the operator and "
                  "correct it there (`schat servers` manages the file).")
    else:
        advice = (f"Check the new fingerprint with the operator, then run\n"
                  f"`schat servers forget {name}` and connect again.")
    return (
        f"{bar}\n@    WARNING: SERVER KEY HAS CHANGED!                     @\n{bar}\n"
        f"The key of server {name!r} is not the one you accepted before.\n"
        "Someone could be intercepting your connection (a man-in-the-middle attack),\n"
        "or the operator replaced the server's key.\n"
        f"  {'expected' if configured else 'pinned':<8} fingerprint: {old}\n"
        f"  {'offered':<8} fingerprint: {new}\n"
        f"The connection was refused. {advice}"
    )

"""Every error a user can see is a :class:`SchatError`; its message is what they read.

Commands turn these into ``click.ClickException`` in one place
(:func:`schat.commands.common.handle_errors`). Messages never contain secrets:
no passwords, keys, session keys or message plaintext.
"""


class SchatError(Exception):
    """Base of every user-facing error. ``str(err)`` is the text shown to the user."""

    exit_code = 1


class UsageError(SchatError):
    """The user asked for something that cannot be done as asked (exit code 2)."""

    exit_code = 2


class ConfigError(SchatError):
    """A configuration file (servers.json, known_servers, ...) is missing or malformed."""


class StoreError(SchatError):
    """The account store cannot be opened or is inconsistent."""


class AccountError(SchatError):
    """An account operation failed: unknown user, duplicate name, bad password policy."""


class PolicyError(AccountError):
    """A username or password does not meet the policy."""


class KeyFileError(SchatError):
    """A key file is missing, corrupt, or its passphrase is wrong."""


class CryptoError(SchatError):
    """A cryptographic check failed (bad signature, bad tag, bad key)."""


class ProtocolError(SchatError):
    """The ``schat/1`` protocol was violated."""


class LocalProtocolError(ProtocolError):
    """We tried to do something the protocol does not allow (a bug on our side)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow.

    ``code`` names the kind of violation, as the server reports it in the
    ``error`` before its ``bye`` (docs/PROTOCOL.md, "Error codes"):
    ``bad_frame`` (a frame length out of range, a stream cut inside a frame),
    ``bad_record`` (a record that fails authentication, or is empty),
    ``bad_message`` (a message that is not valid JSON or breaks its type's
    fields) or ``unexpected_message`` (a type the receiver does not accept in
    its direction or state, or anything after a ``bye``).
    """

    def __init__(self, text: str = "", code: str = "bad_message"):
        super().__init__(text)
        self.code = code


class TrustError(SchatError):
    """A server or contact key does not match its pin, or was not accepted."""


class ConnectionFailed(SchatError):
    """The server could not be reached, or the connection was lost."""


class AuthenticationFailed(SchatError):
    """The server refused the credentials."""


class MissingCredentials(SchatError):
    """Nobody is at the keyboard and no password or passphrase was given (exit code 1)."""

"""The domain's one error: a clear refusal of a request, never a disconnect."""

from __future__ import annotations

from schat.errors import SchatError


class Refusal(SchatError):
    """A request the domain refuses; ``code`` is the wire error code, the text what the user reads."""

    def __init__(self, code: str, text: str):
        super().__init__(text)
        self.code = code

"""Client-side pacing: staying under the server's message rate instead of being throttled."""

from __future__ import annotations

import threading
import time
from typing import Callable

# The server's default message budget is 5 per second in bursts of 20; staying a
# little under it leaves room for messages that arrive bunched up.
PACE_RATE = 4.75
PACE_BURST = 16


class Pacer:
    """A client-side token bucket: ``wait()`` returns once one more message may go."""

    def __init__(self, rate: float = PACE_RATE, burst: int = PACE_BURST,
                 clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = threading.Lock()

    def wait(self, stop: threading.Event) -> bool:
        """Take one token, waiting as long as needed; False when ``stop`` was set first."""
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return True
                delay = (1.0 - self._tokens) / self.rate
            if stop.wait(delay):
                return False

    def hold(self) -> None:
        """The server refused a message for its rate: spend every token saved up."""
        with self._lock:
            self._tokens = 0.0
            self._stamp = self._clock()

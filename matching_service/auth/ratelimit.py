"""Rate limits: token buckets keyed by string (an API key id, or "fail:<key id>"), held by the
app instance (no globals). A bucket holds at most `limit` and refills `limit` per `window_s`."""
from __future__ import annotations

import threading
import time


class RateLimiter:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def _level(self, key: str, limit: int, window_s: float, now: float) -> float:
        tokens, last = self._buckets.get(key, (float(limit), now))
        return min(float(limit), tokens + (now - last) * limit / window_s)

    def take(self, key: str, limit: int, window_s: float = 60.0) -> float:
        """Spend one; returns 0 when allowed, else the seconds until it would be (nothing spent)."""
        now = self._clock()
        with self._lock:
            tokens = self._level(key, limit, window_s, now)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) * window_s / limit

    def peek(self, key: str, limit: int, window_s: float = 60.0) -> float:
        """Seconds until one is available, spending nothing."""
        now = self._clock()
        with self._lock:
            tokens = self._level(key, limit, window_s, now)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) * window_s / limit

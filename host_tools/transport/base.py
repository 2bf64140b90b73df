"""The transport interface every link to a token implements."""
from __future__ import annotations

import abc


class Transport(abc.ABC):
    """A byte pipe to one token. `name` says which token/port, for error messages."""

    name: str = "?"

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Send all of `data` (raises TransportError when the link is gone)."""

    @abc.abstractmethod
    def read(self, timeout_s: float) -> bytes:
        """Bytes received so far, waiting up to `timeout_s` for at least one; b"" on timeout."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the link; safe to call twice."""

    def discard_input(self) -> None:
        """Drop whatever was received and not read yet (stale answers, boot chatter)."""
        while self.read(0.02):
            pass

    def __enter__(self) -> "Transport":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

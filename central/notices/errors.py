"""How a channel says a notice did not go: try again later, or never."""

from __future__ import annotations


class SendError(Exception):
    """A notice was not sent; `detail` says why, in words an operator can act on."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail[:500]


class TransientSendError(SendError):
    """Worth trying again: the server or provider is down, busy or rate-limiting.

    `retry_after_s`, when the provider said how long to wait (HTTP Retry-After).
    """

    def __init__(self, detail: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class PermanentSendError(SendError):
    """Will never go as it is: a refused address, an invalid number, bad credentials."""

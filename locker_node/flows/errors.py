"""What a flow refuses, with a machine-readable code; the doors that called it pick the status."""

from __future__ import annotations

from typing import Any


class FlowError(Exception):
    """An expected refusal: the flow changed nothing it should not have, and says why."""

    code = "bad_request"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.extra = extra


class BadInput(FlowError, ValueError):
    code = "bad_input"


class InvalidCode(FlowError):
    code = "invalid_code"


class InvalidQr(FlowError):
    code = "invalid_qr"


class InvalidCredentials(FlowError):
    code = "invalid_credentials"


class NotLoggedIn(FlowError):
    code = "not_logged_in"


class SessionExpired(FlowError):
    code = "session_expired"


class NotFound(FlowError, LookupError):
    code = "not_found"


class Conflict(FlowError):
    """The request is fine but the state of things refuses it (a full bank, a closed deposit)."""

    code = "conflict"


class AlreadyCollected(Conflict):
    """A code that opened its door already: the recipient's, typed again, and no guess."""

    code = "already_collected"


class LockedOut(FlowError):
    code = "locked_out"


class DoorFault(FlowError):
    """A door did not open, or cannot be read; nothing was lost and the request may be retried."""

    code = "door_fault"


class Refused(FlowError, ValueError):
    """Data from outside the node (central's feed or commands) that it cannot accept."""

    code = "refused"


class CommandRefused(FlowError):
    """A command from central that is not to be run: forged, expired, or for another node."""

    code = "invalid_command"


class CentralUnreachable(FlowError):
    """Central did not answer something only it can decide (a move to another bank); nothing
    changed here, and nothing is queued: the person at the kiosk is told now."""

    code = "central_unreachable"

"""Wire shapes of the inbound carrier webhook."""

from __future__ import annotations

from pydantic import BaseModel


class PushAccepted(BaseModel):
    """The answer to a verified push; numbers without an active reservation are ignored."""

    received: int
    """Tracking updates in the push."""
    matched: int
    """Updates for an active reservation of this carrier."""
    new_events: int
    """Events not recorded before (a repeated push records nothing twice)."""

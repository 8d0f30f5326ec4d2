"""The nodes area's errors: an operator's request that cannot be carried out, a refused event."""

from __future__ import annotations


class EventRejected(Exception):
    """A node event central refuses; the node is answered with its `code` and `detail`."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class NodeError(ValueError):
    """An operator request about nodes that cannot be carried out (CLI)."""

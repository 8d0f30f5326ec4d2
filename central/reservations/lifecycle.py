"""The reservation lifecycle: which transitions exist and what each does to capacity. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from central.models.base import ReservationKind
from central.models.base import ReservationStatus as S


@dataclass(frozen=True, slots=True)
class Transition:
    source: S
    target: S
    frees_capacity: bool  # the unit the reservation held goes back to the bank's free count
    webhook: str


# reserved -> deposited -> picked_up; reserved -> cancelled | expired;
# deposited -> expired -> returned. An expired-while-reserved parcel was never in the locker, so it
# cannot be returned; that is told apart by `was_deposited` below.
TRANSITIONS: dict[tuple[S, S], Transition] = {
    (S.RESERVED, S.DEPOSITED): Transition(S.RESERVED, S.DEPOSITED, False, "parcel.deposited"),
    (S.RESERVED, S.CANCELLED): Transition(S.RESERVED, S.CANCELLED, True, "reservation.cancelled"),
    (S.RESERVED, S.EXPIRED): Transition(S.RESERVED, S.EXPIRED, True, "reservation.expired"),
    (S.DEPOSITED, S.PICKED_UP): Transition(S.DEPOSITED, S.PICKED_UP, True, "parcel.picked_up"),
    # The parcel still sits in the compartment until the courier takes it back.
    (S.DEPOSITED, S.EXPIRED): Transition(S.DEPOSITED, S.EXPIRED, False, "parcel.expired"),
    (S.EXPIRED, S.RETURNED): Transition(S.EXPIRED, S.RETURNED, True, "parcel.returned"),
}

TERMINAL = frozenset({S.PICKED_UP, S.CANCELLED, S.RETURNED, S.COLLECTED})

# A drop-off (kind `dropoff`): reserved -> deposited (the sender put it in) -> collected (the
# carrier's courier took it); reserved -> cancelled | expired. Never picked up, expired in the
# locker or returned. A deposit the node took before the drop-off closed at central (the node
# was offline when central expired or cancelled it) is deposited after all: the parcel is in.
DROPOFF_TRANSITIONS: dict[tuple[S, S], Transition] = {
    (S.RESERVED, S.DEPOSITED): Transition(S.RESERVED, S.DEPOSITED, False, "dropoff.deposited"),
    (S.RESERVED, S.CANCELLED): Transition(S.RESERVED, S.CANCELLED, True, "dropoff.cancelled"),
    (S.RESERVED, S.EXPIRED): Transition(S.RESERVED, S.EXPIRED, True, "dropoff.expired"),
    (S.DEPOSITED, S.COLLECTED): Transition(S.DEPOSITED, S.COLLECTED, True, "dropoff.collected"),
    (S.EXPIRED, S.DEPOSITED): Transition(S.EXPIRED, S.DEPOSITED, False, "dropoff.deposited"),
    (S.CANCELLED, S.DEPOSITED): Transition(S.CANCELLED, S.DEPOSITED, False, "dropoff.deposited"),
}


class InvalidTransition(Exception):
    def __init__(self, source: str, target: str) -> None:
        super().__init__(f"a {source} reservation cannot become {target}")
        self.source = source
        self.target = target


def transition_for(
    source: str, target: str, *, was_deposited: bool, kind: str = ReservationKind.DELIVERY
) -> Transition:
    if kind == ReservationKind.DROPOFF:
        dropoff_rule = DROPOFF_TRANSITIONS.get((S(source), S(target)))
        if dropoff_rule is None:
            raise InvalidTransition(source, target)
        return dropoff_rule
    rule = TRANSITIONS.get((S(source), S(target)))
    if rule is None or (rule.source is S.EXPIRED and not was_deposited):
        raise InvalidTransition(source, target)
    return rule


def is_closed(status: str, *, was_deposited: bool) -> bool:
    """No further transition can happen (expired before deposit counts as closed)."""
    return S(status) in TERMINAL or (S(status) is S.EXPIRED and not was_deposited)

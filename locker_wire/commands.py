"""What each command from central asks of a node, typed: the payload of a signed `Command`.

The signature covers the command as central sent it (`schemas.Command`, payload as a plain
object); a node checks the signature first, then reads the payload as the model of its type.
Fields a newer central adds are ignored, so that an older node still runs the command.
"""

from __future__ import annotations

from typing import ClassVar, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from locker_wire.schemas import Command, CommandType


class CommandPayload(BaseModel):
    model_config = ConfigDict(frozen=True)

    command_type: ClassVar[str]


class OpenCompartment(CommandPayload):
    command_type: ClassVar[str] = "open_compartment"
    compartment: str = Field(min_length=1, max_length=16)


class DisableCompartment(CommandPayload):
    command_type: ClassVar[str] = "disable_compartment"
    compartment: str = Field(min_length=1, max_length=16)


class EnableCompartment(CommandPayload):
    command_type: ClassVar[str] = "enable_compartment"
    compartment: str = Field(min_length=1, max_length=16)


class CancelReservation(CommandPayload):
    command_type: ClassVar[str] = "cancel_reservation"
    reservation_id: str = Field(min_length=1, max_length=64)


class ExtendDeadline(CommandPayload):
    """Give a parcel in its compartment more time.

    `until`, from a central that sends it, is the deadline central now holds: a node that reads
    it moves its own to the later of the two and ignores `hours`, so that the command and the
    feed (which carries the same deadline) never add up. `hours` is for nodes that predate it.
    """

    command_type: ClassVar[str] = "extend_deadline"
    reservation_id: str = Field(min_length=1, max_length=64)
    hours: int
    until: AwareDatetime | None = None


class InvalidateCode(CommandPayload):
    """Kill a parcel's pickup code; with `reissue`, replace it with a new one."""

    command_type: ClassVar[str] = "invalidate_code"
    reservation_id: str = Field(min_length=1, max_length=64)
    reissue: bool = False


class OpenCompartments(CommandPayload):
    """Open several doors at once ("open all"): issued only after a second admin approved it.

    `requested_by` and `approved_by` are the two admins (never the same), kept in the node's
    audit with the approval's id.
    """

    command_type: ClassVar[str] = "open_compartments"
    labels: list[str] = Field(min_length=1, max_length=2000)
    approval_id: str = Field(min_length=1, max_length=64)
    requested_by: str = Field(min_length=1, max_length=320)
    approved_by: str = Field(min_length=1, max_length=320)
    reason: str = Field(default="", max_length=500)


COMMAND_PAYLOADS: dict[str, type[CommandPayload]] = {
    model.command_type: model
    for model in (
        OpenCompartment,
        DisableCompartment,
        EnableCompartment,
        CancelReservation,
        ExtendDeadline,
        InvalidateCode,
        OpenCompartments,
    )
}
if set(COMMAND_PAYLOADS) != set(get_args(CommandType)):
    raise RuntimeError("every command type needs its payload model")


def parse_command(command: Command) -> CommandPayload:
    """The command's payload as its type's model; pydantic's `ValidationError` (a `ValueError`)
    when a field is missing or malformed."""
    return COMMAND_PAYLOADS[command.type].model_validate(command.payload)

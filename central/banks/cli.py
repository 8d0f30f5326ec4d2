"""`locker-central bank maintenance | maintenance-end | policy`: bank settings from the command
line, audited like the dashboard's (no operator; the detail names the CLI)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Protocol

import typer
from pydantic import ValidationError
from sqlalchemy.orm import Session

from central.banks import settings
from central.banks.settings import Changed, MaintenanceIn, PolicyIn
from central.clock import utcnow
from central.config import CentralSettings
from central.context import Ctx
from central.db import make_engine, make_sessionmaker
from central.errors import ApiError
from central.keys import ServiceKeys

VIA = "cli"


class Audit(Protocol):
    """`central.ops.accounts.audit`, handed in by `central.cli` (banks do not import ops)."""

    def __call__(
        self,
        session: Session,
        *,
        now: datetime,
        operator_id: int | None,
        action: str,
        outcome: str,
        target_type: str | None = None,
        target_id: str | None = None,
        reason: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None: ...


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)


class _Commands:
    """The commands, bound to what `central.cli` hands in."""

    def __init__(self, build_keys: Callable[[CentralSettings], ServiceKeys], audit: Audit) -> None:
        self._build_keys = build_keys
        self._audit = audit

    def _run(
        self,
        action: str,
        bank_id: str,
        label: str | None,
        reason: str | None,
        work: Callable[[Ctx], Changed],
    ) -> Changed:
        """One change and its audit entry in one transaction; a refusal audited on its own."""
        config = CentralSettings()
        keys = self._build_keys(config)
        engine = make_engine(config.database_url)
        sessions = make_sessionmaker(engine)
        target = {
            "target_type": "bank" if label is None else "compartment",
            "target_id": bank_id if label is None else f"{bank_id}/{label}",
        }
        try:
            try:
                with sessions.begin() as session:
                    ctx = Ctx(session=session, keys=keys, now=utcnow())
                    changed = work(ctx)
                    self._audit(
                        session,
                        now=ctx.now,
                        operator_id=None,
                        action=action,
                        outcome="ok",
                        reason=reason,
                        detail={"via": VIA, **changed.detail},
                        **target,
                    )
                    return changed
            except ApiError as exc:
                with sessions.begin() as session:
                    self._audit(
                        session,
                        now=utcnow(),
                        operator_id=None,
                        action=action,
                        outcome=exc.code,
                        reason=reason,
                        detail={"via": VIA, "status": exc.status, "detail": exc.detail},
                        **target,
                    )
                raise _fail(f"{exc.code}: {exc.detail}") from exc
        finally:
            engine.dispose()

    def maintenance(
        self,
        bank_id: str,
        reason: Annotated[str, typer.Option(help="why; shown on the kiosk and to carriers")],
        until: Annotated[
            str | None,
            typer.Option(help="expected end, ISO 8601 with offset, e.g. 2027-01-05T18:00+01:00"),
        ] = None,
        compartment: Annotated[
            str | None, typer.Option(help="one compartment's label instead of the whole bank")
        ] = None,
    ) -> None:
        """Put a bank (or one compartment) into maintenance: allocation skips it, carriers with
        parcels there get `bank.maintenance_started`, its kiosk says so."""
        try:
            body = MaintenanceIn.model_validate({"reason": reason, "until": until})
        except ValidationError as exc:
            raise _fail(_first_error(exc)) from exc
        label = compartment.strip().upper() if compartment else None
        changed = self._run(
            "bank_maintenance" if label is None else "compartment_maintenance",
            bank_id,
            label,
            body.reason,
            lambda ctx: settings.start_maintenance(ctx, bank_id, body.reason, body.until, label),
        )
        typer.echo(f"{_where(bank_id, label)} is in maintenance: {body.reason}")
        _echo_settings(changed)

    def maintenance_end(
        self,
        bank_id: str,
        compartment: Annotated[
            str | None, typer.Option(help="one compartment's label instead of the whole bank")
        ] = None,
        reason: Annotated[str | None, typer.Option(help="a note for the audit log")] = None,
    ) -> None:
        """End the maintenance: the bank (or compartment) is back as it was."""
        label = compartment.strip().upper() if compartment else None
        changed = self._run(
            "bank_maintenance_end" if label is None else "compartment_maintenance_end",
            bank_id,
            label,
            reason,
            lambda ctx: settings.end_maintenance(ctx, bank_id, label),
        )
        typer.echo(f"{_where(bank_id, label)} is out of maintenance")
        _echo_settings(changed)

    def policy(
        self,
        bank_id: str,
        hold_hours: Annotated[int | None, typer.Option(help="hours a reservation waits")] = None,
        pickup_hours: Annotated[
            int | None, typer.Option(help="hours a recipient has to collect")
        ] = None,
        reminder_hours: Annotated[
            int | None, typer.Option(help="reminder this many hours before the deadline")
        ] = None,
        max_extension_hours: Annotated[
            int | None, typer.Option(help="how far a deadline may move in all")
        ] = None,
        max_extensions: Annotated[
            str | None, typer.Option(help="how many times a deadline may move, or none")
        ] = None,
        walk_ups: Annotated[
            bool | None,
            typer.Option("--walk-ups/--no-walk-ups", help="parcels without a reservation"),
        ] = None,
        upsize: Annotated[
            bool | None, typer.Option("--upsize/--no-upsize", help="a larger class when full")
        ] = None,
        opening_hours: Annotated[
            str | None,
            typer.Option(help='JSON like {"mon": [["08:00", "20:00"]]}, or none for always open'),
        ] = None,
    ) -> None:
        """Change the bank's policy (only the options given) and print it; its node hears of it
        through its feed."""
        given: dict[str, Any] = {
            name: value
            for name, value in {
                "hold_hours": hold_hours,
                "pickup_hours": pickup_hours,
                "reminder_hours": reminder_hours,
                "max_extension_hours": max_extension_hours,
                "allow_walk_up": walk_ups,
                "allow_upsize": upsize,
            }.items()
            if value is not None
        }
        if max_extensions is not None:
            given["max_extensions"] = _count_or_none(max_extensions)
        if opening_hours is not None:
            given["opening_hours"] = _json_or_none(opening_hours)
        try:
            change = PolicyIn.model_validate(given)
        except ValidationError as exc:
            raise _fail(_first_error(exc)) from exc
        changed = self._run(
            "bank_policy",
            bank_id,
            None,
            None,
            lambda ctx: settings.update_policy(ctx, bank_id, change),
        )
        _echo_settings(changed)


def add_settings_commands(
    bank_app: typer.Typer, *, build_keys: Callable[[CentralSettings], ServiceKeys], audit: Audit
) -> None:
    """Register the commands on `locker-central bank`."""
    commands = _Commands(build_keys, audit)
    bank_app.command("maintenance")(commands.maintenance)
    bank_app.command("maintenance-end")(commands.maintenance_end)
    bank_app.command("policy")(commands.policy)


def _count_or_none(raw: str) -> int | None:
    if raw.strip().lower() == "none":
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise _fail("--max-extensions takes a count or none") from exc


def _json_or_none(raw: str) -> Any:
    if raw.strip().lower() in ("none", "null"):
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise _fail("--opening-hours is not valid JSON") from exc


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ()))
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _where(bank_id: str, label: str | None) -> str:
    return f"bank {bank_id}" if label is None else f"compartment {label} of bank {bank_id}"


def _echo_settings(changed: Changed) -> None:
    out = changed.settings
    typer.echo(
        json.dumps(
            {
                "bank_id": out.bank_id,
                "settings_version": out.settings_version,
                "policy": out.policy.model_dump(mode="json"),
                "maintenance": out.maintenance.model_dump(mode="json") if out.maintenance else None,
                "compartments_in_maintenance": [
                    c.model_dump(mode="json") for c in out.compartments_in_maintenance
                ],
            },
            indent=2,
        )
    )

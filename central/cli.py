"""Operator command line: `locker-central`."""

from __future__ import annotations

import json
import logging
import os
from datetime import timedelta
from typing import Annotated

import httpx
import typer
import uvicorn
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from central.app import build_carrier_adapters, build_keys, create_app
from central.banks.cli import add_settings_commands
from central.banks.service import (
    BankError,
    NewBank,
    add_bank,
    parse_accessible_labels,
    parse_compartment_spec,
)
from central.carriers.service import (
    CarrierError,
    add_carrier,
    create_api_key,
    revoke_api_key,
    update_carrier,
)
from central.clock import utcnow
from central.config import CentralSettings
from central.db import make_engine, make_sessionmaker, upgrade_database
from central.metrics import MULTIPROC_ENV, prepare_multiprocess_dir
from central.nodes.commands import issue_command
from central.nodes.enrollment import issue_enrollment_token
from central.nodes.errors import NodeError
from central.ops.accounts import audit
from central.ops.cli import operator_app
from central.scheduler import Jobs, start_scheduler
from central.serving import (
    WorkerSupervisor,
    balanced_workers_supported,
    forwarded_options,
    freeze_startup_heap,
)
from locker_wire.process import limit_malloc_arenas

app = typer.Typer(no_args_is_help=True, help="Central service of the locker network.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
carrier_app = typer.Typer(no_args_is_help=True, help="Carriers that use the API.")
apikey_app = typer.Typer(no_args_is_help=True, help="Carrier API keys.")
bank_app = typer.Typer(no_args_is_help=True, help="Locker banks.")
app.add_typer(db_app, name="db")
app.add_typer(carrier_app, name="carrier")
app.add_typer(apikey_app, name="apikey")
app.add_typer(bank_app, name="bank")
node_app = typer.Typer(no_args_is_help=True, help="Locker nodes.")
app.add_typer(node_app, name="node")
app.add_typer(operator_app, name="operator")
add_settings_commands(bank_app, build_keys=build_keys, audit=audit)  # bank maintenance, policy


def configure_logging() -> None:
    """Central's own INFO lines; httpx and httpcore only from WARNING up. httpx logs every
    request's full URL at INFO: carriers' webhook endpoints and paging targets may carry a token
    in theirs, and central's own code logs a failed delivery with the host only."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)


def _settings() -> CentralSettings:
    """The settings from the environment; a bad variable is an error naming it, not a traceback."""
    try:
        return CentralSettings()
    except ValidationError as exc:
        problems = [
            f"LOCKER_{'_'.join(str(part) for part in error['loc']).upper()}: "
            + error["msg"].removeprefix("Value error, ")
            for error in exc.errors()
        ]
        raise _fail("; ".join(problems)) from exc


def _sessions(settings: CentralSettings) -> sessionmaker[Session]:
    return make_sessionmaker(make_engine(settings.database_url))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema up to date (alembic upgrade head)."""
    settings = CentralSettings()
    upgrade_database(settings.database_url)
    typer.echo(f"database at {_safe_url(settings.database_url)} is up to date")


RecipientNotices = Annotated[
    str | None,
    typer.Option(
        help="who tells the carrier's recipients of their parcels: network (the network's "
        "email and SMS, when a reservation has contact details) or carrier (the carrier itself)",
    ),
]


@carrier_app.command("add")
def carrier_add(
    carrier_id: str,
    name: Annotated[str | None, typer.Option(help="display name")] = None,
    recipient_notices: RecipientNotices = "network",
) -> None:
    """Add a carrier (ids like usps, fedex, ups, dhl turn on their tracking-number checks)."""
    with _sessions(CentralSettings()).begin() as session:
        try:
            carrier = add_carrier(
                session, carrier_id, name, utcnow(), recipient_notices=recipient_notices or ""
            )
        except CarrierError as exc:
            raise _fail(str(exc)) from exc
    typer.echo(
        f"carrier {carrier.id} ({carrier.name}) added; "
        f"recipient notices by the {carrier.recipient_notices}"
    )


@carrier_app.command("set")
def carrier_set(
    carrier_id: str,
    name: Annotated[str | None, typer.Option(help="display name")] = None,
    recipient_notices: RecipientNotices = None,
) -> None:
    """Change an existing carrier: its display name, or who notifies its recipients."""
    if name is None and recipient_notices is None:
        raise _fail("nothing to change: give --name or --recipient-notices")
    with _sessions(CentralSettings()).begin() as session:
        try:
            carrier = update_carrier(
                session, carrier_id, name=name, recipient_notices=recipient_notices
            )
        except CarrierError as exc:
            raise _fail(str(exc)) from exc
    typer.echo(
        f"carrier {carrier.id} ({carrier.name}): "
        f"recipient notices by the {carrier.recipient_notices}"
    )


@apikey_app.command("create")
def apikey_create(carrier_id: str) -> None:
    """Create an API key for a carrier and print it; it is shown only this once."""
    with _sessions(CentralSettings()).begin() as session:
        try:
            issued = create_api_key(session, carrier_id, utcnow())
        except CarrierError as exc:
            raise _fail(str(exc)) from exc
    typer.echo(issued.key)


@apikey_app.command("revoke")
def apikey_revoke(prefix: str) -> None:
    """Revoke a key by its prefix (the 12 letters after `lk_`)."""
    with _sessions(CentralSettings()).begin() as session:
        try:
            revoke_api_key(session, prefix, utcnow())
        except CarrierError as exc:
            raise _fail(str(exc)) from exc
    typer.echo(f"key lk_{prefix}_... revoked")


@bank_app.command("add")
def bank_add(
    bank_id: str,
    name: Annotated[str, typer.Option(help="display name")],
    address: Annotated[str, typer.Option(help="street address")],
    lat: Annotated[float, typer.Option(help="latitude in degrees")],
    lon: Annotated[float, typer.Option(help="longitude in degrees")],
    compartments: Annotated[str, typer.Option(help='counts per class, e.g. "S:20,M:15,L:8,XL:2"')],
    timezone: Annotated[str, typer.Option(help="IANA time zone of the bank")] = "UTC",
    accessible: Annotated[
        str,
        typer.Option(
            help='labels of the compartments within reach from a wheelchair, e.g. "A01,A02"'
        ),
    ] = "",
) -> None:
    """Add a bank with its compartments (labelled A01.. in columns of twelve, smallest class
    first); `--accessible` names those at wheelchair height, kept for recipients who need one."""
    with _sessions(CentralSettings()).begin() as session:
        try:
            bank = add_bank(
                session,
                NewBank(
                    bank_id=bank_id,
                    name=name,
                    address=address,
                    lat=lat,
                    lon=lon,
                    compartments=parse_compartment_spec(compartments),
                    timezone=timezone,
                    accessible=parse_accessible_labels(accessible),
                ),
                utcnow(),
            )
        except BankError as exc:
            raise _fail(str(exc)) from exc
    typer.echo(f"bank {bank.id} added")


@bank_app.command("enroll")
def bank_enroll(bank_id: str) -> None:
    """Issue a one-time enrollment token for the bank's node and print it (valid 24 hours)."""
    with _sessions(CentralSettings()).begin() as session:
        try:
            token = issue_enrollment_token(session, bank_id, utcnow())
        except NodeError as exc:
            raise _fail(str(exc)) from exc
    typer.echo(token)


@node_app.command("command")
def node_command(
    bank_id: str,
    command_type: Annotated[str, typer.Argument(metavar="TYPE", help="e.g. open_compartment")],
    payload: Annotated[
        str, typer.Option(help='JSON object, e.g. \'{"compartment": "A01"}\'')
    ] = "{}",
    ttl_minutes: Annotated[int, typer.Option(help="minutes the command stays valid")] = 15,
) -> None:
    """Sign and queue a command for the bank's node; prints its id."""
    if command_type == "open_compartments":
        # Several doors at once only ever follow a second admin's approval, in the dashboard.
        raise _fail(
            "open_compartments needs a second admin's approval: ask for it on the bank's page "
            "at /ops (POST /ops/api/banks/{bank}/open-requests) and have another admin approve"
        )
    try:
        body = json.loads(payload)
    except ValueError as exc:
        raise _fail("--payload is not valid JSON") from exc
    if not isinstance(body, dict):
        raise _fail("--payload must be a JSON object")
    settings = CentralSettings()
    with _sessions(settings).begin() as session:
        try:
            command = issue_command(
                session,
                build_keys(settings),
                bank_id,
                command_type,
                body,
                utcnow(),
                timedelta(minutes=ttl_minutes),
            )
        except NodeError as exc:
            raise _fail(str(exc)) from exc
    typer.echo(command.id)


@node_app.command("update")
def node_update(
    version: Annotated[
        str | None, typer.Option(help="the node version the banks should run (PEP 440)")
    ] = None,
    bank: Annotated[
        list[str] | None, typer.Option("--bank", help="a bank to update (repeat for more)")
    ] = None,
    all_banks: Annotated[bool, typer.Option("--all", help="every bank")] = False,
    stop: Annotated[
        bool, typer.Option("--stop", help="stop every rollout: nodes keep what they run")
    ] = False,
) -> None:
    """Set the node version that banks should run (audited); nodes install it themselves."""
    from central.nodes.updates import UpdateError, set_rollout, stop_rollouts
    from central.ops.accounts import audit

    if stop == (version is not None) or (not stop and all_banks == bool(bank)):
        raise _fail("give --version X with --bank B (repeatable) or --all; or --stop alone")
    banks = None if all_banks or stop else sorted(set(bank or []))
    target = "all" if banks is None else ",".join(banks)[:64]
    engine = make_engine(CentralSettings().database_url)
    try:
        with make_sessionmaker(engine).begin() as session:
            now = utcnow()
            if stop:
                stopped = stop_rollouts(session, operator_id=None, now=now)
                detail: dict[str, object] = {"via": "cli", "stopped": stopped}
                message = f"{stopped} rollout(s) stopped; nodes keep the version they run"
            else:
                try:
                    rollout = set_rollout(
                        session, version=version or "", bank_ids=banks, operator_id=None, now=now
                    )
                except UpdateError as exc:
                    raise _fail(f"{exc.code}: {exc.detail}") from exc
                detail = {"via": "cli", "rollout_id": rollout.id, "version": rollout.version}
                where = "every bank" if banks is None else ", ".join(banks)
                message = f"rollout {rollout.id}: version {rollout.version} wanted for {where}"
            audit(
                session,
                now=now,
                operator_id=None,
                action="stop_node_update" if stop else "set_node_version",
                outcome="ok",
                target_type="node_version",
                target_id=target,
                detail=detail,
            )
    finally:
        engine.dispose()
    typer.echo(message)


jobs_app = typer.Typer(no_args_is_help=True, help="Background jobs (the scheduler runs them).")
app.add_typer(jobs_app, name="jobs")
# Rounds that send (webhooks, notices) claim their work without a lock that a second round would
# wait on; run beside a scheduler they could send one thing twice.
_SENDING_JOBS = frozenset({"deliver_webhooks", "deliver_notices"})


@jobs_app.command("run")
def jobs_run(
    name: Annotated[str, typer.Argument(help="the job, e.g. send_reminders; 'list' lists them")],
) -> None:
    """Run one background job once, now, and print what it did.

    The scheduler of `serve` runs every job on its interval; this runs one at once (say,
    reminders after changing a bank's reminder time). Jobs that send (deliver_webhooks,
    deliver_notices) are refused while a scheduler holds the lease.
    """
    settings = _settings()
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    with httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False) as http:
        jobs = Jobs(sessions, build_keys(settings), utcnow, http, settings)
        try:
            available = jobs.all()
            if name == "list":
                typer.echo("\n".join(sorted(available)))
                return
            if name not in available:
                raise _fail(f"no job {name!r}; one of: {', '.join(sorted(available))}")
            if name in _SENDING_JOBS and not jobs.is_leader():
                raise _fail(f"a scheduler holds the lease and runs {name}; it needs no help")
            result = available[name]()
        finally:
            if name in _SENDING_JOBS:
                jobs.step_down()
            jobs.close()
            engine.dispose()
    typer.echo(f"{name}: {result if result is not None else 'done'}")


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(help="web worker processes")] = 1,
    scheduler: Annotated[
        bool, typer.Option(help="run the background jobs in this process (leader-elected)")
    ] = True,
    access_log: Annotated[
        bool, typer.Option(help="log every request (usually the reverse proxy does)")
    ] = False,
) -> None:
    """Serve the carrier API (and /docs); runs the background jobs too unless --no-scheduler."""
    configure_logging()
    settings = _settings()
    jobs = scheduler and settings.scheduler_enabled
    _serve(settings, host, port, workers, jobs, access_log=access_log)


def _serve(
    settings: CentralSettings,
    host: str,
    port: int,
    workers: int,
    jobs: bool,
    *,
    access_log: bool = False,
) -> None:
    limit_malloc_arenas()  # before the first thread
    # APScheduler reports every run at INFO: every two seconds for webhook delivery.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    background = None
    http = httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False)
    if jobs:
        # The scheduler lives in this (supervising) process, not in each web worker; the lease
        # keeps it to one per deployment even when several hosts run `serve`.
        engine = make_engine(settings.database_url)
        background = start_scheduler(
            Jobs(
                make_sessionmaker(engine),
                build_keys(settings),
                utcnow,
                http,
                settings,
                carrier_adapters=build_carrier_adapters(),
            )
        )
    if workers > 1 and MULTIPROC_ENV not in os.environ:
        # Before the workers start: each writes its request metrics there, any of them answers.
        prepare_multiprocess_dir(settings.data_dir)
    forwarded = forwarded_options(settings.trusted_proxies)
    try:
        if workers > 1 and balanced_workers_supported():
            WorkerSupervisor(
                host, port, workers, access_log=access_log, trusted_proxies=settings.trusted_proxies
            ).run()
        elif workers > 1:
            uvicorn.run(
                "central.app:app_from_environment",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                access_log=access_log,
                **forwarded,
            )
        else:
            app = create_app(settings)
            freeze_startup_heap()
            uvicorn.run(app, host=host, port=port, access_log=access_log, **forwarded)
    finally:
        if background is not None:
            background.shutdown(wait=False)
        http.close()


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@app.command("demo")
def demo(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    with_nodes: Annotated[
        bool,
        typer.Option(
            "--with-nodes",
            help="also enroll and run one node per demo bank, on simulated boards (make run)",
        ),
    ] = False,
    kiosk_port: Annotated[
        int, typer.Option(help="--with-nodes: the first bank's kiosk port; the next ones follow")
    ] = 8081,
    parcels: Annotated[
        int, typer.Option(help="--with-nodes: demo reservations per bank", min=0, max=10)
    ] = 2,
) -> None:
    """Set up the embedded default with demo carriers and banks, print credentials, and serve.

    With --with-nodes, central runs as a child process beside one `locker-node run` per demo
    bank (enrolled on first use, under <data_dir>/nodes/), until Ctrl-C stops them all.
    """
    from central.demo import prepare_demo, prepare_demo_operators

    settings = _settings()
    if with_nodes:
        from central.demo_network import run_network

        status = run_network(
            settings, host=host, port=port, kiosk_port=kiosk_port, parcels=parcels, echo=typer.echo
        )
        raise typer.Exit(status)
    upgrade_database(settings.database_url)
    credentials = prepare_demo(settings)
    operators = prepare_demo_operators(settings)
    base = f"http://{host}:{port}"
    typer.echo("")
    typer.echo("Locker network central is starting")
    typer.echo(f"  carrier API     {base}/v1")
    typer.echo(f"  API docs        {base}/docs")
    typer.echo(f"  dashboard       {base}/ops")
    for email, (role, password) in operators.items():
        typer.echo(f"    {role:6} {email} / {password}")
    typer.echo(f"  database        {_safe_url(settings.database_url)}")
    for carrier_id, key in credentials.items():
        typer.echo(f"  API key ({carrier_id:5}) {key}")
    typer.echo(f"  try: curl -H 'Authorization: Bearer {credentials['usps']}' {base}/v1/banks")
    typer.echo("")
    configure_logging()
    _serve(settings, host, port, 1, settings.scheduler_enabled)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

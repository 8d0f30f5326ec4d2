"""Command line of a locker node: `locker-node`."""

from __future__ import annotations

import contextlib
import enum
import logging
import secrets
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from locker_node.config import ConfigError, NodeConfig, load_config
from locker_node.hardware.simulator import (
    DEFAULT_LOCKS,
    BoardSimulator,
    PtyBoardServer,
    run_control_command,
)
from locker_node.hardware.xor import READ_HEADER, UNLOCK_HEADER
from locker_wire.process import limit_malloc_arenas

app = typer.Typer(no_args_is_help=True, help="Locker bank node: kiosk, door controller and sync.")


@app.callback()
def _root() -> None:
    """Locker bank node."""


class SimulatedProtocol(enum.StrEnum):
    KERONG_CU16 = "kerong-cu16"
    KERONG_CU48 = "kerong-cu48"
    XOR = "xor"


class ReplyHeader(enum.StrEnum):
    H8A = "8a"
    H80 = "80"


@app.command("simulate-board")
def simulate_board(
    protocol: Annotated[SimulatedProtocol, typer.Option(help="protocol the board speaks")],
    pty: Annotated[
        bool, typer.Option("--pty", help="serve on a new pseudo-terminal (required)")
    ] = False,
    address: Annotated[
        int | None, typer.Option(help="board address on the bus (default 0; xor 1)", min=0)
    ] = None,
    locks: Annotated[
        int | None, typer.Option(help="number of locks (default 16, 48 or 24)", min=1)
    ] = None,
    door_delay_ms: Annotated[
        int, typer.Option(help="time from a relay pulse to the door reading open", min=0)
    ] = 50,
    lock_closed_bit: Annotated[
        int,
        typer.Option(help="what a lock feedback bit of 1 means: 1 closed, 0 open", min=0, max=1),
    ] = 1,
    auto_close_ms: Annotated[
        int | None,
        typer.Option(help="the simulated person closes a door this long after it opens", min=1),
    ] = None,
    reply_header: Annotated[
        ReplyHeader, typer.Option(help="xor: header of unlock replies (boards differ)")
    ] = ReplyHeader.H8A,
    unlock_reply_delay_ms: Annotated[
        int, typer.Option(help="xor: delay before the unlock reply (real boards: 500-1000)", min=0)
    ] = 0,
    pace_baudrate: Annotated[
        int | None,
        typer.Option(help="act on commands and answer only after their time on a line this fast"),
    ] = None,
) -> None:
    """Play a lock board on a pseudo-terminal until killed.

    Prints the pty slave path (e.g. /dev/pts/7) as the first line on stdout: a board's port.

    Doors open --door-delay-ms after an unlock and stay open until closed.

    \b
    Control channel: one command per line on stdin, answered on stdout
    (the answer's last line is "ok" or "error: ..."):
      close N|all           the simulated person closes door N (or every door)
      force-open N          door N opens with no command (forced entry)
      fault jam N           lock N fires but its door never opens
      fault left-open N     nobody closes door N, even with --auto-close-ms
      fault no-reply [K]    answer nothing (for K commands; default until cleared)
      fault bad-checksum [K]  answer with a corrupted checksum
      fault wrong-address [K] answer as another board
      fault split [K]       answer one byte at a time
      fault garbage [K]     send line noise before each answer
      fault reset           reboot on the next command: drop it, release relays
      clear [N]             clear all faults (or lock N's)
      status                door states, relay pulses and active faults
    """
    if not pty:
        raise typer.BadParameter("only --pty is supported", param_hint="--pty")
    name = protocol.value
    count = locks if locks is not None else DEFAULT_LOCKS[name]
    try:
        simulator = BoardSimulator(
            name,
            address=address if address is not None else (1 if name == "xor" else 0),
            lock_count=count,
            door_delay_s=door_delay_ms / 1000,
            lock_closed_bit=lock_closed_bit,
            auto_close_after_s=None if auto_close_ms is None else auto_close_ms / 1000,
            unlock_reply_delay_s=unlock_reply_delay_ms / 1000,
            reply_header=UNLOCK_HEADER if reply_header is ReplyHeader.H8A else READ_HEADER,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    _serve_on_pty(simulator, pace_baudrate=pace_baudrate)


def _serve_on_pty(simulator: BoardSimulator, *, pace_baudrate: int | None) -> None:
    """Print the pty's path, then answer control commands from stdin until killed."""
    signal.signal(signal.SIGTERM, _exit_on_signal)
    with PtyBoardServer([simulator], pace_baudrate=pace_baudrate) as server:
        print(server.path, flush=True)
        try:
            for line in sys.stdin:
                for answer in run_control_command(simulator, line):
                    print(answer, flush=True)
            # stdin closed (e.g. started in the background): keep serving until killed.
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="the node's TOML config file", exists=False)
]


def _load(path: Path) -> NodeConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def configure_logging() -> None:
    """The node's own INFO lines; libraries only from WARNING up. httpx logs every request at
    INFO, and the sync loop makes one every two seconds: 43,000 lines a day that say nothing
    (the sync loop logs when central goes away and when it comes back)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


# Modules FastAPI, Starlette, uvicorn and httpx load when they are installed, for what a kiosk
# never has: models of pydantic's version 1, e-mail address fields, form uploads, reloading the
# server when its source changes (watchfiles; uvicorn falls back to its own reloader, which the
# node never starts either), and httpx's command-line client (`httpx._main`, which pulls in rich,
# pygments and click's terminal helpers because typer installs them). Central or development needs
# some of them, so they are installed; a node's process refuses them (importing one raises
# ModuleNotFoundError, which those libraries expect of a module that is not installed), and keeps
# about 2.8 MB (the first five, `bench/kiosk.py`) and 4.1 MB (httpx's client, 82 modules) of a
# small board's memory.
UNUSED_MODULES = (
    "pydantic.v1",
    "email_validator",
    "python_multipart",
    "multipart",
    "watchfiles",
    "httpx._main",
)


def leave_out_unused_modules() -> None:
    """Before the kiosk's web stack is imported: never load `UNUSED_MODULES` in this process."""
    for name in UNUSED_MODULES:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


@app.command("run")
def run(config: ConfigOption) -> None:
    """Run the node: kiosk, door monitor and sync with central (when enrolled), in one process.

    Every door is read before the kiosk serves; the store's schema is upgraded first if needed.
    """
    limit_malloc_arenas()  # before the first thread
    configure_logging()
    leave_out_unused_modules()
    from locker_node.app import run_node

    # Ctrl-C: uvicorn has already shut the kiosk down and the node has stopped; no traceback.
    with contextlib.suppress(KeyboardInterrupt):
        run_node(_load(config))


@app.command("supervise")
def supervise(config: ConfigOption) -> None:
    """Run the node as the service's main process, with node updates when `\\[update]` is on.

    With updates off (the default) this is `locker-node run`, in this same process. With them
    on it runs `<update.root>/current/bin/locker-node run` as a child and rolls an update back
    when the new version is not healthy within `update.verify_timeout_s`.
    """
    node_config = _load(config)
    if not node_config.update.enabled:
        run(config)
        return
    configure_logging()
    from locker_node.update.supervisor import Supervisor

    supervisor = Supervisor(node_config.update, ["run", "--config", str(config.absolute())])
    raise typer.Exit(supervisor.run())


@app.command("seed-demo")
def seed_demo(
    config: ConfigOption,
    carrier: Annotated[str, typer.Option(help="carrier id of the demo courier")] = "demo",
    parcels: Annotated[int, typer.Option(help="reservations to create", min=0, max=500)] = 3,
    size: Annotated[str, typer.Option(help="size class of the reservations")] = "S",
    code: Annotated[
        str | None, typer.Option(help="courier access code (default: a random 8 digits)")
    ] = None,
    hold_hours: Annotated[int, typer.Option(help="how long the reservations hold", min=1)] = 72,
) -> None:
    """Give a node without central something to work with: reservations and a courier code.

    The courier code is printed once and stored only as a hash, as central's would be.
    """
    from locker_node.domain.credentials import hash_courier_code
    from locker_node.flows.errors import Refused
    from locker_node.flows.feed import (
        CourierCredentialIn,
        ReservationIn,
        add_courier_credential,
        apply_reservation,
    )
    from locker_node.store.database import database_path, ensure_schema, make_engine, transaction

    node_config = _load(config)
    if code is not None and not (code.isdigit() and 4 <= len(code) <= 12):
        raise typer.BadParameter("4-12 digits", param_hint="--code")
    courier_code = code or f"{secrets.randbelow(10**8):08d}"
    path = database_path(node_config.data_dir)
    ensure_schema(path, in_process=True)
    engine = make_engine(path)
    now = datetime.now(UTC)
    tag = secrets.token_hex(2).upper()
    tracking_numbers = [f"DEMO{tag}{n:04d}" for n in range(1, parcels + 1)]
    try:
        with transaction(engine) as conn:
            for number, tracking in enumerate(tracking_numbers, start=1):
                apply_reservation(
                    conn,
                    ReservationIn(
                        id=f"demo-{tag.lower()}-{number:04d}",
                        carrier_id=carrier,
                        tracking_number=tracking,
                        size=size,
                        reserved_until=now + timedelta(hours=hold_hours),
                    ),
                    now,
                )
            add_courier_credential(
                conn,
                CourierCredentialIn(
                    carrier_id=carrier,
                    code_hash=hash_courier_code(courier_code),
                    valid_from=now - timedelta(minutes=1),
                    valid_until=now + timedelta(days=1),
                ),
                now,
            )
    except Refused as exc:
        raise typer.BadParameter(str(exc)) from exc
    finally:
        engine.dispose()
    typer.echo(f"carrier: {carrier}")
    typer.echo(f"courier code (valid 24 h, shown once): {courier_code}")
    for tracking in tracking_numbers:
        typer.echo(f"reservation: {tracking} size {size}")


DEMO_LAYOUT = (("S", 24), ("M", 20), ("L", 12), ("XL", 4))


@app.command("provision")
def provision(
    central: Annotated[str, typer.Option("--central", help="central's base URL")],
    bank: Annotated[str, typer.Option("--bank", help="the bank this node runs")],
    token: Annotated[str, typer.Option("--token", help="one-time token from `bank enroll`")],
    config: ConfigOption,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="default: the config's, else ./data")
    ] = None,
    ca_bundle: Annotated[
        Path | None,
        typer.Option(
            "--ca-bundle",
            help="PEM file of the CA that issued central's certificate, for a network with its "
            "own CA (default: the system's CA store); written into the config",
        ),
    ] = None,
) -> None:
    """Enroll this node with central: a new key pair, then the node config for the bank."""
    from locker_node.sync.provision import ProvisionError
    from locker_node.sync.provision import provision as enroll_node

    try:
        done = enroll_node(
            central_url=central,
            bank_id=bank,
            token=token,
            config_path=config,
            data_dir=data_dir,
            ca_bundle=ca_bundle,
        )
    except ProvisionError as exc:
        typer.echo(f"provision failed: {exc}", err=True)
        raise typer.Exit(1) from None
    layout = "matches" if done.enrollment.layout_matches else "does NOT match"
    typer.echo(
        f"enrolled as {done.node_id} for bank {done.enrollment.bank_id}; "
        f"{len(done.enrollment.compartments)} compartments ({layout} the old config)\n"
        f"config: {done.config_path}\nkey: {done.key_path}\n"
        "edit [[boards]] and the compartments' board/lock to the real wiring before running"
    )


def demo_config(bank_id: str, port: int) -> str:
    """A node config for one simulated 60-door bank whose doors close themselves after 4 s."""
    lines = [
        f'bank_id = "{bank_id}"',
        'data_dir = "data"',
        "",
        "[kiosk]",
        f"port = {port}",
        "",
        "[[boards]]",
        'name = "main"',
        'protocol = "simulated"',
        f"locks = {sum(count for _, count in DEMO_LAYOUT)}",
        "door_delay_ms = 300",
        "auto_close_ms = 4000",
    ]
    lock = 0
    for size, count in DEMO_LAYOUT:
        for _ in range(count):
            column, row = divmod(lock, 12)
            lock += 1
            lines += [
                "",
                "[[compartments]]",
                f'label = "{chr(ord("A") + column)}{row + 1:02d}"',
                f'size = "{size}"',
                'board = "main"',
                f"lock = {lock}",
            ]
    return "\n".join(lines) + "\n"


@app.command("demo")
def demo(
    folder: Annotated[Path, typer.Option(help="where the demo node keeps its config and store")] = (
        Path("var/node")
    ),
    port: Annotated[int, typer.Option(help="kiosk port")] = 8080,
) -> None:
    """A standalone demo node: 60 simulated doors, demo parcels and a courier code, then run.

    Writes `<folder>/node.toml` on first use and keeps its store between runs.
    """
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "node.toml"
    if not config.exists():
        config.write_text(demo_config("DEMO-NODE", port))
    typer.echo(f"kiosk           http://127.0.0.1:{port}/  (node config {config})")
    seed_demo(config=config, carrier="usps", parcels=5, size="S", code=None, hold_hours=72)
    run(config)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""The soak: the whole network as real processes under load and chaos, then every invariant.

Central (`locker-central serve`, scheduler on) on a throw-away PostgreSQL database or a SQLite
file; N enrolled nodes (`locker-node run`) on simulated boards whose doors close themselves;
a webhook receiver that checks every signature and an SMTP server for the recipients' notices,
both in this process. A carrier reserves through the carrier API, a courier deposits at the
kiosk API, the recipient reads the pickup code in the "ready" mail and picks the parcel up at
the kiosk, parcels arriving at `--rate` a minute. On a schedule, central and nodes are SIGKILLed
(and restarted with the same command line) or SIGSTOPped (and SIGCONTed a few seconds later).

After `--minutes`, the load stops, every process is brought back, and the network is left to
settle (node outboxes, webhooks and notices drained); then every invariant is checked and
printed with the resident memory of each process over time. Exit status 0 when every invariant
holds, 1 when one does not, 2 when the network could not be set up.

    python bench/soak.py --minutes 10                       # PostgreSQL, 3 nodes, chaos
    python bench/soak.py --minutes 2 --database sqlite --chaos-schedule 30:kill:central
    python bench/soak.py --minutes 120 --plot memory.svg --max-slope-mb-h 5 --max-node-rss-mb 100
"""

from __future__ import annotations

import argparse
import random
import signal
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.soak_chaos import Chaos, ChaosEvent, ScheduleError, parse_schedule, random_schedule
from bench.soak_checks import Verdict, check_all, describe
from bench.soak_ledger import Ledger
from bench.soak_load import CourierCodes, KioskDesk, Load, LoadContext, LoadOptions
from bench.soak_memory import (
    MemorySampler,
    SeriesSummary,
    describe_memory,
    positive_minutes,
    summarize,
    write_csv,
)
from bench.soak_memory import plot_svg as plot_memory
from bench.soak_network import (
    CARRIER,
    Network,
    SoakSetupError,
    central_database,
    start_network,
)
from bench.soak_receivers import RecipientMail, WebhookReceiver, start_mail
from bench.soak_state import BREAKS, gather, plant_fault, settled

SETUP_FAILED = 2
CODES_TIMEOUT_S = 90.0


class _Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default after its help, unless it has none (its help says what then)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None:
            return action.help or ""
        return super()._get_help_string(action) or ""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0], formatter_class=_Defaults
    )
    add = parser.add_argument
    add("--minutes", type=float, default=10.0, help="how long the load runs")
    add("--database", choices=("postgres", "sqlite"), default="postgres",
        help="central's database: a throw-away PostgreSQL database on LOCKER_BENCH_DATABASE_URL's "
        "server, or a SQLite file")  # fmt: skip
    add("--nodes", type=int, default=3, help="banks, each with its node")
    add("--compartments", default="S:24,M:18,L:12,XL:6", help="every bank's compartments")
    add("--rate", type=float, default=30.0, help="parcels a minute, network-wide")
    add("--chaos", type=float, default=6.0, help="chaos events per 10 minutes, at random")
    add("--chaos-schedule", default=None,
        help="instead of --chaos: <seconds>:<kill|stop>:<central|node-N>,...")  # fmt: skip
    add("--restart-after-s", type=float, default=2.0, help="a killed process restarts after")
    add("--stop-s", type=float, nargs=2, default=(3.0, 8.0), metavar=("MIN", "MAX"),
        help="a stopped process is continued after between MIN and MAX seconds")  # fmt: skip
    add("--settle-minutes", type=float, default=5.0, help="at most this long to settle")
    add("--warmup-minutes", type=float, default=10.0, help="memory slopes leave this out")
    add("--window-minutes", type=positive_minutes, default=30.0,
        help="the highest RSS of each process is printed per stretch this long")  # fmt: skip
    add("--sample-s", type=float, default=5.0, help="memory is sampled this often")
    add("--timeout-s", type=float, default=5.0, help="the clients' request timeout")
    add("--cancel-share", type=float, default=0.05, help="reservations the carrier cancels")
    add("--courier-delay-s", type=float, default=20.0, help="reservation to deposit, at most")
    add("--pickup-delay-s", type=float, default=30.0, help="ready mail to pickup, at most")
    add("--give-up-minutes", type=float, default=15.0, help="a parcel stuck this long fails")
    add("--workers", type=int, default=64, help="threads telling the parcels' stories")
    add("--sync-s", type=float, default=2.0, help="the nodes' sync interval")
    add("--seed", type=int, default=None, help="for the parcels and the chaos (default: random)")
    add("--work-dir", type=Path, default=None,
        help="logs, node folders, memory samples (default: a new temp dir, kept)")  # fmt: skip
    add("--csv", type=Path, default=None, help="memory samples (default: <work dir>/memory.csv)")
    add("--plot", type=Path, default=None, help="an SVG of the memory samples (matplotlib)")
    add("--max-node-rss-mb", type=float, default=None, help="also check every node stays under")
    add("--max-slope-mb-h", type=float, default=None,
        help="also check every process's memory grows slower than this after warm-up")  # fmt: skip
    add("--break", dest="fault", choices=BREAKS, default=None,
        help="break one fact before the check, which must then fail")  # fmt: skip
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1_000_000)
    return args


def echo(line: str) -> None:
    print(line, flush=True)


def wait_for_courier_codes(network: Network) -> None:
    """Until every node holds today's courier codes: a courier who logs in before would be
    refused, and refusals lock the courier keypad."""
    deadline = time.monotonic() + CODES_TIMEOUT_S
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    for site in network.sites:
        while True:
            try:
                with sqlite3.connect(f"file:{site.database}?mode=ro", uri=True) as conn:
                    found = conn.execute(
                        "SELECT count(*) FROM courier_credentials WHERE carrier_id = ? "
                        "AND valid_from <= ? AND valid_until > ?",
                        (CARRIER, now, now),
                    ).fetchone()[0]
            except sqlite3.Error:
                found = 0
            if found:
                break
            if time.monotonic() > deadline:
                raise SoakSetupError(f"{site.bank_id}'s node never got the courier codes")
            time.sleep(0.5)


def load_context(network: Network, mail: RecipientMail, args: argparse.Namespace) -> LoadContext:
    options = LoadOptions(
        rate_per_min=args.rate,
        cancel_share=args.cancel_share,
        courier_delay_s=args.courier_delay_s,
        pickup_delay_s=args.pickup_delay_s,
        give_up_s=args.give_up_minutes * 60,
        workers=args.workers,
        seed=args.seed,
    )
    ledger = Ledger()
    limits = httpx.Limits(max_connections=args.workers)
    central = httpx.Client(base_url=network.central_url, timeout=args.timeout_s, limits=limits)
    auth = {"Authorization": f"Bearer {network.api_key}"}
    kiosks = {
        site.bank_id: KioskDesk(
            site, httpx.Client(base_url=site.kiosk_url, timeout=args.timeout_s, limits=limits)
        )
        for site in network.sites
    }
    return LoadContext(
        network, ledger, mail, options, central, CourierCodes(central, ledger, auth), kiosks
    )


def chaos_schedule(network: Network, args: argparse.Namespace) -> list[ChaosEvent]:
    if args.chaos_schedule is not None:
        return parse_schedule(args.chaos_schedule, network)
    return random_schedule(args.chaos, args.minutes * 60, network, random.Random(args.seed))


def progress(ctx: LoadContext, load: Load, sampler: MemorySampler, origin: float) -> str:
    ledger = ctx.ledger
    latest: dict[str, float] = {}
    for sample in sampler.samples[-4 * len(ctx.network.processes) :]:
        latest[sample.process] = sample.rss_mb
    memory = " ".join(f"{name.removeprefix('node-')} {mb:.0f}" for name, mb in latest.items())
    return (
        f"  {(time.monotonic() - origin) / 60:5.1f} min: {load.started} parcels, "
        f"{len(ledger.told)} reserved, {len(ledger.confirmed)} deposited, "
        f"{len(ledger.picked_up)} picked up, {load.in_flight()} under way; MB {memory}"
    )


@dataclass
class Outcome:
    ctx: LoadContext
    load: Load
    chaos: Chaos
    samples: MemorySampler
    load_s: float
    settle_s: float
    waiting: dict[str, int]
    fault: str | None = None


def run_load(network: Network, mail: RecipientMail, args: argparse.Namespace) -> Outcome:
    """The load and the chaos for `--minutes`, printing progress each minute; then settling."""
    wait_for_courier_codes(network)
    ctx = load_context(network, mail, args)
    load = Load(ctx, run_tag=f"{args.seed:06d}")
    chaos = Chaos(
        network, chaos_schedule(network, args), args.restart_after_s, tuple(args.stop_s),
        args.seed, echo,
    )  # fmt: skip
    echo(f"chaos: {len(chaos.schedule)} events planned")
    origin = time.monotonic()
    sampler = MemorySampler(lambda: network.processes, args.sample_s, origin)
    sampler.start()
    chaos.start(origin)
    load.start()
    end = origin + args.minutes * 60
    next_report = origin + 60
    try:
        while (now := time.monotonic()) < end:
            time.sleep(max(0.0, min(end, next_report, now + 1.0) - now))
            watch(network, ctx.ledger)
            if time.monotonic() >= next_report:
                echo(progress(ctx, load, sampler, origin))
                next_report += 60
    except BaseException:  # SIGTERM, Ctrl-C: the parcels' threads end before the network
        ctx.give_up.set()
        load.stop_arrivals()
        chaos.stop()
        raise
    load.stop_arrivals()
    chaos.stop()
    sampler.sample_once()
    sampler.stop()
    load_s = time.monotonic() - origin
    echo(f"load stopped after {load_s / 60:.1f} min; settling (at most {args.settle_minutes} min)")
    watch(network, ctx.ledger)
    waiting = settle(network, load, args.settle_minutes * 60)
    return Outcome(ctx, load, chaos, sampler, load_s, time.monotonic() - origin - load_s, waiting)


def watch(network: Network, ledger: Ledger) -> None:
    """A process that ended on its own is a failure of the run; it is restarted so that the
    soak goes on (with the same command line, as after a kill)."""
    for process in network.processes:
        status = process.exited_on_its_own()
        if status is not None:
            ledger.anomaly(f"{process.name} exited on its own (status {status})")
            echo(f"  {process.name} exited on its own (status {status}): restarting it")
            try:
                process.ensure_running()
            except SoakSetupError as exc:
                ledger.anomaly(str(exc))


def settle(network: Network, load: Load, limit_s: float) -> dict[str, int]:
    """Bring every process back, let the parcels under way finish, then wait until nothing is
    on its way any more (or `limit_s` has passed); what still waits."""
    deadline = time.monotonic() + limit_s
    for process in network.processes:
        process.ensure_running()
    cut = load.finish(max(0.0, deadline - time.monotonic()))
    if cut:
        echo(f"  {cut} parcels were still under way at the end of the settling time")
    while True:
        waiting = settled(network)
        if not waiting or time.monotonic() > deadline:
            return waiting
        time.sleep(1.0)


def memory_verdicts(summaries: list[SeriesSummary], args: argparse.Namespace) -> list[Verdict]:
    verdicts = []
    if args.max_node_rss_mb is not None:
        over = [
            f"{s.series} reached {s.max_mb:.1f} MB"
            for s in summaries
            if s.is_node and s.max_mb >= args.max_node_rss_mb
        ]
        verdicts.append(
            Verdict(f"every node under {args.max_node_rss_mb:g} MB", over, len(summaries))
        )
    if args.max_slope_mb_h is not None:
        steep = [
            f"{s.series} grew {s.slope_mb_per_h:+.2f} MB/h after warm-up"
            for s in summaries
            if s.slope_mb_per_h is not None and s.slope_mb_per_h >= args.max_slope_mb_h
        ]
        measured = sum(1 for s in summaries if s.slope_mb_per_h is not None)
        if not measured:
            steep.append("no process ran long enough after warm-up for a slope")
        verdicts.append(
            Verdict(f"memory grows under {args.max_slope_mb_h:g} MB/h", steep, measured)
        )
    return verdicts


def print_load(outcome: Outcome, receiver: WebhookReceiver, mail: RecipientMail) -> None:
    ledger = outcome.ctx.ledger
    hooks = receiver.log.snapshot()
    echo("")
    echo(f"load: {outcome.load_s / 60:.1f} min, then {outcome.settle_s:.0f} s settling")
    echo(
        f"  {outcome.load.started} parcels: {len(ledger.told)} reserved, "
        f"{len(ledger.cancelled)} cancelled, {len(ledger.confirmed)} deposited, "
        f"{len(ledger.picked_up)} picked up"
    )
    echo(
        f"  webhooks: {len(hooks)} events, {sum(h.deliveries for h in hooks)} deliveries, "
        f"{receiver.log.bad_signatures} bad signatures; mail: {mail.count()} messages"
    )
    for what, n in sorted(ledger.counts.items()):
        echo(f"  {n:6d}  {what}")
    if outcome.waiting:
        echo(f"  still on its way after settling: {outcome.waiting}")
    echo(f"chaos: {len(outcome.chaos.done)} events")
    for done in outcome.chaos.done:
        error = f" ERROR {done.error}" if done.error else ""
        echo(
            f"  {done.began_s:7.0f} s  {done.event.action:4} {done.event.target:14} "
            f"back after {done.outage_s:5.1f} s{error}"
        )


def report(
    outcome: Outcome,
    network: Network,
    receivers: tuple[WebhookReceiver, RecipientMail],
    args: argparse.Namespace,
    work: Path,
) -> bool:
    """Check and print; True when every invariant holds."""
    receiver, mail = receivers
    if args.fault is not None:
        outcome.fault = plant_fault(args.fault, network, outcome.ctx.ledger, receiver.log)
        echo(f"--break {args.fault}: {outcome.fault}")
    state = gather(network, outcome.ctx.ledger, receiver.log, mail)
    print_load(outcome, receiver, mail)
    samples = outcome.samples.samples
    summaries = summarize(samples, args.warmup_minutes * 60)
    verdicts = check_all(state) + memory_verdicts(summaries, args)
    echo("")
    echo("invariants")
    for verdict in verdicts:
        for line in describe(verdict):
            echo(line)
    echo("")
    for line in describe_memory(samples, args.warmup_minutes * 60, args.window_minutes * 60):
        echo(line)
    csv_path = args.csv or work / "memory.csv"
    write_csv(samples, csv_path)
    echo(f"  samples in {csv_path}")
    if args.plot is not None:
        title = f"soak: {len(network.sites)} nodes, {args.database}, {args.minutes:g} min"
        chaos = [(done.began_s, done.event.action) for done in outcome.chaos.done]
        warmup_s = args.warmup_minutes * 60
        if plot_memory(samples, args.plot, warmup_s, title, chaos):
            echo(f"  plot in {args.plot}")
        else:
            echo("  no plot: matplotlib is not installed (pip install -e '.[soak]')")
    failed = [v.name for v in verdicts if not v.ok]
    echo("")
    echo("SOAK FAILED: " + "; ".join(failed) if failed else "SOAK PASSED: every invariant holds")
    return not failed


def soak(args: argparse.Namespace, work: Path) -> int:
    receiver = WebhookReceiver()
    mail, smtp = start_mail()
    try:
        with central_database(args.database, work) as url:
            network = start_network(
                url, work, nodes=args.nodes, compartments=args.compartments, smtp_url=smtp.url,
                webhook=(receiver.url, receiver.log.secret), sync_s=args.sync_s, echo=echo,
            )  # fmt: skip
            try:
                outcome = run_load(network, mail, args)
                passed = report(outcome, network, (receiver, mail), args, work)
            finally:
                statuses = network.stop()
                network.engine.dispose()
            echo(f"stopped: {statuses}")
    finally:
        smtp.close()
        receiver.close()
    return 0 if passed else 1


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Unwinds through the `finally` blocks, which stop central and the nodes (they run in
    # process groups of their own and would outlive this process); a second SIGTERM must not
    # cut that short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="soak-"))
    work.mkdir(parents=True, exist_ok=True)
    echo(
        f"soak: {args.minutes:g} min, {args.nodes} nodes ({args.compartments}), {args.database}, "
        f"{args.rate:g} parcels/min, seed {args.seed}; work dir {work}"
    )
    try:
        status = soak(args, work)
    except (SoakSetupError, ScheduleError) as exc:
        echo(f"soak could not run: {exc}")
        status = SETUP_FAILED
    echo(f"logs, node stores and memory samples in {work}")
    return status


if __name__ == "__main__":
    sys.exit(main())

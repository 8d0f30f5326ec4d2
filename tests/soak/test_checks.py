"""The soak's invariant checks on plain states: a consistent one passes, and each kind of broken
fact (a double booking, a lost or doubled event, a reservation nobody was told of) fails the
invariant that guards it. Also the log scan and the memory slope."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.soak_checks import (
    Capacity,
    CentralNodeEvent,
    CentralReservation,
    NodeParcel,
    State,
    Verdict,
    Webhook,
    check_all,
    deposits_reached_central_once,
    no_double_booking,
    nothing_applied_twice,
    outboxes_empty,
    pickups_reached_central_once,
    ready_mail_for_every_deposit,
    told_reservations_exist,
    webhooks_delivered,
)
from bench.soak_memory import (
    Sample,
    describe_memory,
    least_squares_slope,
    main,
    read_csv,
    summarize,
    window_maxima,
    write_csv,
)
from bench.soak_state import scan_log

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
BANK = "SOAK-1"


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def consistent_state() -> State:
    """r1 deposited in A01 and picked up, then r2 deposited in A01; r3 waits for its parcel,
    r4 was cancelled. Every fact reached central and the carrier once."""
    reservations = [
        CentralReservation("r1", "T1", BANK, "S", "picked_up", "A01"),
        CentralReservation("r2", "T2", BANK, "S", "deposited", "A01"),
        CentralReservation("r3", "T3", BANK, "M", "reserved", None),
        CentralReservation("r4", "T4", BANK, "S", "cancelled", None),
    ]
    events = [
        CentralNodeEvent("e1", BANK, "parcel.deposited", "applied", "r1"),
        CentralNodeEvent("e2", BANK, "parcel.picked_up", "applied", "r1"),
        CentralNodeEvent("e3", BANK, "parcel.deposited", "applied", "r2"),
        CentralNodeEvent("e4", BANK, "door.left_open", "applied", None),
    ]
    hooks = [
        Webhook(f"w-created-{r}", "reservation.created", r, 1) for r in ("r1", "r2", "r3", "r4")
    ] + [
        Webhook("w-dep-1", "parcel.deposited", "r1", 2, "1111"),  # delivered twice: allowed
        Webhook("w-pick-1", "parcel.picked_up", "r1", 1),
        Webhook("w-dep-2", "parcel.deposited", "r2", 1, "2222"),
        Webhook("w-cancel-4", "reservation.cancelled", "r4", 1),
    ]
    return State(
        reservations=reservations,
        node_events=events,
        capacity=[Capacity(BANK, "S", 10, 9), Capacity(BANK, "M", 5, 4)],
        delivery_event_ids={hook.event_id for hook in hooks},
        node_parcels=[
            NodeParcel(BANK, "p1", "r1", "A01", minutes(0), minutes(5)),
            NodeParcel(BANK, "p2", "r2", "A01", minutes(6), None),
        ],
        outbox_unsent={BANK: 0},
        webhooks=hooks,
        mail_codes={"r1": ["1111"], "r2": ["2222"]},
        told={"r1": "T1", "r2": "T2", "r3": "T3", "r4": "T4"},
        cancelled={"r4"},
        confirmed={"r1": (BANK, "A01"), "r2": (BANK, "A01")},
        picked_up={"r1"},
        answers=40,
        logs=2,
    )


def failing(verdicts: list[Verdict]) -> dict[str, list[str]]:
    return {verdict.name: verdict.problems for verdict in verdicts if not verdict.ok}


def test_a_consistent_state_keeps_every_invariant() -> None:
    assert failing(check_all(consistent_state())) == {}


def _broken(change: Callable[[State], None]) -> State:
    state = consistent_state()
    change(state)
    return state


def test_a_parcel_deposited_where_another_still_was_is_a_double_booking() -> None:
    def overlap(state: State) -> None:
        state.node_parcels[1] = dataclasses.replace(state.node_parcels[1], deposited_at=minutes(4))

    verdict = no_double_booking(_broken(overlap))
    assert verdict.problems == [f"{BANK} A01: parcel r2 deposited while r1 was in it"]


def test_two_parcels_in_one_compartment_at_central_are_a_double_booking() -> None:
    def doubled(state: State) -> None:
        state.reservations.append(CentralReservation("r5", "T5", BANK, "S", "deposited", "A01"))
        state.told["r5"] = "T5"
        state.capacity[0] = Capacity(BANK, "S", 10, 8)

    verdict = no_double_booking(_broken(doubled))
    assert verdict.problems == [f"central: 2 deposited parcels in {BANK} A01"]


def test_more_holds_than_units_or_a_drifting_free_count_fails() -> None:
    def over(state: State) -> None:
        state.capacity[1] = Capacity(BANK, "M", 0, -1)

    assert no_double_booking(_broken(over)).problems == [f"central: {BANK} M holds 1 of 0 units"]

    def drift(state: State) -> None:
        state.capacity[0] = Capacity(BANK, "S", 10, 10)

    problems = no_double_booking(_broken(drift)).problems
    assert problems == [f"central: {BANK} S counts 10 free, but 10 units - 1 holds = 9"]


def test_a_reservation_nobody_was_told_of_or_one_told_but_missing_fails() -> None:
    def unheard(state: State) -> None:
        del state.told["r3"]

    problems = told_reservations_exist(_broken(unheard)).problems
    assert problems == ["r3 (T3, reserved) holds capacity no carrier ever heard of"]

    def missing(state: State) -> None:
        state.told["r9"] = "T9"

    problems = told_reservations_exist(_broken(missing)).problems
    assert problems == ["r9 (T9) was told, central has no such one"]


def test_a_lost_webhook_fails_the_deposit_and_the_delivery() -> None:
    def lost(state: State) -> None:
        state.webhooks = [hook for hook in state.webhooks if hook.event_id != "w-dep-2"]

    state = _broken(lost)
    assert deposits_reached_central_once(state).problems == [
        "r2: 0 parcel.deposited webhook events"
    ]
    assert webhooks_delivered(state).problems == [
        "event w-dep-2 delivered by central, never received"
    ]


def test_a_node_event_applied_twice_fails() -> None:
    def twice(state: State) -> None:
        state.node_events.append(CentralNodeEvent("e9", BANK, "parcel.picked_up", "applied", "r1"))

    state = _broken(twice)
    assert pickups_reached_central_once(state).problems == ["r1: 2 applied parcel.picked_up events"]
    assert nothing_applied_twice(state).problems == ["r1: 2 applied parcel.picked_up events"]


def test_a_rejected_duplicate_is_not_applied_twice() -> None:
    def rejected(state: State) -> None:
        state.node_events.append(CentralNodeEvent("e9", BANK, "parcel.picked_up", "rejected", "r1"))

    assert failing(check_all(_broken(rejected))) == {}


def test_one_fact_announced_under_two_event_ids_fails() -> None:
    def announced_twice(state: State) -> None:
        state.webhooks.append(Webhook("w-dep-1b", "parcel.deposited", "r1", 1, "1111"))
        state.delivery_event_ids.add("w-dep-1b")

    state = _broken(announced_twice)
    assert nothing_applied_twice(state).problems == [
        "r1: 2 distinct parcel.deposited webhook events"
    ]
    assert deposits_reached_central_once(state).problems == [
        "r1: 2 parcel.deposited webhook events"
    ]


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("outbox_unsent", {BANK: 3}, f"{BANK}: 3 events not sent"),
        ("mail_codes", {"r1": ["1111"]}, "r2: no ready mail"),
        ("mail_codes", {"r1": ["1111"], "r2": ["9"]}, "r2: the mail's code is not the webhook's"),
        ("notices_not_sent", {"pending": 2}, "2 notices pending at central"),
        ("bad_signatures", 1, "1 deliveries with a bad signature"),
        ("deliveries_not_delivered", {"failed": 1}, "1 webhook deliveries failed at central"),
        ("server_errors", ["POST /v1/reservations: 500"], "POST /v1/reservations: 500"),
        ("tracebacks", {"central.log": ["KeyError: 'x'"]}, "central.log: KeyError: 'x'"),
        ("processes_down", ["node-SOAK-1"], "node-SOAK-1 is not running"),
    ],
)
def test_every_other_broken_fact_fails_its_invariant(
    name: str, value: object, problem: str
) -> None:
    state = consistent_state()
    setattr(state, name, value)
    problems = [p for verdict in check_all(state) for p in verdict.problems]
    assert problems == [problem]


def test_outboxes_empty_names_each_bank_with_events_left() -> None:
    state = consistent_state()
    state.outbox_unsent = {"A": 0, "B": 2}
    assert outboxes_empty(state).problems == ["B: 2 events not sent"]


def test_the_ready_mail_check_needs_a_mail_for_each_confirmed_deposit() -> None:
    state = consistent_state()
    state.confirmed["r3"] = (BANK, "B01")
    assert "r3: no ready mail" in ready_mail_for_every_deposit(state).problems


def test_the_log_scan_finds_each_traceback_and_each_5xx_answer(tmp_path: Path) -> None:
    log = tmp_path / "central.log"
    log.write_text(
        'INFO:     127.0.0.1:5 - "POST /v1/node/events HTTP/1.1" 200 OK\n'
        "ERROR scheduled job deliver_webhooks failed\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\n'
        "    boom()\n"
        "RuntimeError: boom\n"
        'INFO:     127.0.0.1:6 - "GET /v1/node/feed?limit=200 HTTP/1.1" 503 Service Unavailable\n'
        "Traceback (most recent call last):\n"
        '  File "y.py", line 2, in f\n'
    )
    tracebacks, errors = scan_log(log)
    assert tracebacks == ["RuntimeError: boom", "(a traceback at the end of the log)"]
    assert errors == ["central.log: 503 for /v1/node/feed?limit=200"]


def test_the_memory_slope_leaves_out_each_series_warm_up() -> None:
    samples = []
    for t in range(0, 1201, 10):
        # Warms up by 30 MB in its first minute, then grows 3 MB an hour.
        warm = 30.0 * min(1.0, t / 60)
        samples.append(Sample(float(t), "node-A", 1, 100, 50.0 + warm + 3.0 * t / 3600))
    for t in range(1210, 1300, 10):  # restarted: a new series, too short for a slope
        samples.append(Sample(float(t), "node-A", 2, 200, 40.0))
    first, second = summarize(samples, warmup_s=60)
    assert first.series == "node-A#1" and second.series == "node-A#2"
    assert first.slope_mb_per_h == pytest.approx(3.0)
    assert first.max_mb == pytest.approx(80.0 + 3.0 * 1200 / 3600)
    assert second.slope_mb_per_h is None
    assert least_squares_slope([(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]) == pytest.approx(2.0)
    assert least_squares_slope([(1.0, 1.0)]) == 0.0


def test_a_slope_needs_fifteen_minutes_after_warm_up() -> None:
    # One 1 MB step four minutes after warm-up: over a short life it would read as a leak.
    short = [Sample(float(t), "central", 1, 10, 150.0 + (t >= 240)) for t in range(0, 421, 10)]
    long = [Sample(float(t), "central", 2, 11, 150.0 + (t >= 240)) for t in range(0, 961, 10)]
    assert summarize(short, warmup_s=0)[0].slope_mb_per_h is None
    (measured,) = summarize(long, warmup_s=0)
    assert measured.slope_mb_per_h is not None and 0 < measured.slope_mb_per_h < 5


def test_the_highest_rss_per_stretch_spans_restarts_and_leaves_out_warm_up(
    tmp_path: Path,
) -> None:
    samples = [
        # node-A's first life: warms up to 90 MB, then sits at 92 until it is killed at 2,000 s.
        *(Sample(float(t), "node-A", 1, 1, 60.0 if t < 600 else 92.0) for t in range(0, 2000, 50)),
        # its second life climbs from 40 to 95 MB; its warm-up (to 2,600 s) is left out.
        *(Sample(float(t), "node-A", 2, 2, 40.0 + (t - 2000) / 40) for t in range(2000, 4200, 50)),
        # central lives through the whole run at 150 MB, 180 at one sample during warm-up.
        *(
            Sample(float(t), "central", 1, 3, 180.0 if t == 100 else 150.0)
            for t in range(0, 4200, 50)
        ),
    ]
    maxima = window_maxima(samples, warmup_s=600, window_s=1800)
    assert maxima == {
        "central": [150.0, 150.0, 150.0],
        # 1,800-3,600 s: the first life's last samples (92) outweigh the second's (up to 83.75).
        "node-A": [92.0, 92.0, pytest.approx(40.0 + 2150 / 40)],
    }
    # A sample right at the end of the last stretch belongs to it, not to a stretch of its own.
    at_end = [*samples, Sample(5400.0, "central", 1, 3, 151.0)]
    assert window_maxima(at_end, warmup_s=600, window_s=1800)["central"] == [150.0, 150.0, 151.0]
    # No settled sample in a stretch: a dash, not a zero.
    assert window_maxima(samples[:5], warmup_s=600, window_s=1800) == {"node-A": [None]}

    path = tmp_path / "memory.csv"
    write_csv(samples, path)
    again = read_csv(path)
    assert [(s.series, s.at_s, s.rss_mb) for s in again] == [
        (s.series, s.at_s, round(s.rss_mb, 2)) for s in samples
    ]
    lines = describe_memory(again, warmup_s=600, window_s=1800)
    assert "  highest RSS per 30 minutes of the run, after each warm-up:" in lines
    table = lines[lines.index("  highest RSS per 30 minutes of the run, after each warm-up:") + 1 :]
    assert table[0].split() == ["process", "0-30", "30-60", "60-90"]
    assert table[1].split() == ["central", "150.0", "150.0", "150.0"]
    assert table[2].split() == ["node-A", "92.0", "92.0", "93.8"]


@pytest.mark.parametrize("minutes", ["0", "-5", "half", "nan"])
def test_the_memory_summary_refuses_a_stretch_of_no_length(
    minutes: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "memory.csv"
    write_csv([Sample(0.0, "central", 1, 3, 150.0)], path)
    with pytest.raises(SystemExit) as exited:
        main([str(path), "--window-minutes", minutes])
    assert exited.value.code == 2
    assert "--window-minutes" in capsys.readouterr().err

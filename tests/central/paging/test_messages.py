"""Pages in words: one transition, a digest, the link, and nothing personal."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from central.paging.messages import PageFacts, render_digest, render_page
from central.paging.senders import TargetUrlError, check_target_url, scrub, url_hint
from central.paging.words import ALERT_KINDS, alert_sentence

AT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
URL = "https://locker.example.com/"


def facts(**changes: Any) -> PageFacts:
    values: dict[str, Any] = {
        "alert_id": 7,
        "transition": "raised",
        "alert_type": "door_left_open",
        "subject": "A03",
        "detail": {"compartment": "A03", "detail": {"open_for_s": 300}},
        "bank_id": "NYC-1",
        "bank_name": "Penn Station",
        "raised_at": AT,
        "resolved_at": None,
    }
    return PageFacts(**(values | changes))


def test_a_raised_alert_in_words_with_its_link() -> None:
    message = render_page(facts(), URL)
    assert message.subject == "[Locker] Alert: Door left open at Penn Station (NYC-1)"
    assert message.text == (
        "Alert: Door left open at Penn Station (NYC-1)\n\n"
        "Door A03 left open for 5 min\n"
        "Raised 2026-03-02 15:00 UTC\n\n"
        "Open in the dashboard: https://locker.example.com/ops/banks/NYC-1\n"
    )
    assert message.slack["text"] == (
        "*Alert: Door left open at Penn Station (NYC-1)*\nDoor A03 left open for 5 min\n"
        "Raised 2026-03-02 15:00 UTC · "
        "<https://locker.example.com/ops/banks/NYC-1|Open in the dashboard>"
    )
    assert [block["type"] for block in message.slack["blocks"]] == ["section", "context", "section"]


def test_a_resolution_and_a_page_sent_after_it() -> None:
    resolved = facts(transition="resolved", resolved_at=datetime(2026, 3, 2, 15, 20, tzinfo=UTC))
    assert render_page(resolved, URL).subject.startswith("[Locker] Resolved: Door left open")
    assert "resolved 2026-03-02 15:20 UTC" in render_page(resolved, URL).text
    late = facts(resolved_at=datetime(2026, 3, 2, 15, 20, tzinfo=UTC))
    assert "Door A03 left open for 5 min (resolved since)" in render_page(late, URL).text


def test_slack_control_characters_are_escaped() -> None:
    message = render_page(facts(alert_type="manual", detail={"note": "<!channel> & <b>"}), URL)
    assert "&lt;!channel&gt; &amp; &lt;b&gt;" in message.slack["text"]
    assert "<!channel>" not in message.slack["text"]
    assert "<!channel> & <b>" in message.text


@pytest.mark.parametrize(
    ("alert_type", "detail", "secret"),
    [
        (
            "recipient_problem",
            {
                "reason": "parcel_damaged",
                "message": "call me at 555-0143",
                "tracking_number": "1Z999",
            },
            ("555-0143", "1Z999"),
        ),
        ("manual", {"note": "door 3 sticks", "raised_by": "ana@ops.test"}, ("ana@ops.test",)),
        (
            "remote_open_budget_exhausted",
            {"operator": "bo@ops.test", "bank_id": "NYC-1", "compartment": "A01"},
            ("bo@ops.test",),
        ),
        (
            "mass_open_requested",
            {"requested_by": "cy@ops.test", "doors": "all", "reason": "flood at 5th Ave"},
            ("cy@ops.test",),
        ),
        (
            "parcel_past_deadline",
            {"count": 2, "parcels": [{"tracking_number": "9400TRACK", "reservation_id": "r1"}]},
            ("9400TRACK",),
        ),
    ],
)
def test_no_personal_data_leaves_in_a_page(
    alert_type: str, detail: dict[str, Any], secret: tuple[str, ...]
) -> None:
    message = render_page(facts(alert_type=alert_type, detail=detail), URL)
    everything = message.subject + message.text + str(message.slack)
    assert not [s for s in secret if s in everything]


def test_every_kind_has_words_and_unknown_ones_are_humanised() -> None:
    for alert_type in ALERT_KINDS:
        assert alert_sentence(alert_type, "X", {})
    assert alert_sentence("fan_stuck", "F1", None) == "Fan stuck (F1)"
    assert alert_sentence(
        "recipient_problem", None, {"reason": "door_did_not_open", "compartment": "B2"}
    ) == ("A recipient reports the door did not open at compartment B2")


def test_a_digest_counts_per_kind_and_lists_the_first_few() -> None:
    pages = [facts(alert_id=n, subject=f"A{n:02}") for n in range(1, 8)] + [
        facts(alert_id=20, alert_type="bank_offline", transition="resolved", resolved_at=AT),
        facts(alert_id=21, alert_type="power_lost", bank_id=None, bank_name=None),
    ]
    message = render_digest(pages, URL)
    assert message.subject == "[Locker] 9 alert changes"
    lines = message.text.splitlines()
    assert lines[2:5] == [
        "Bank offline: 1 resolved",
        "Door left open: 7 raised",
        "Mains power lost: 1 raised",
    ]
    assert message.text.count("  Raised ") == 5
    assert "…and 4 more." in message.text
    assert message.text.endswith(
        "Open in the dashboard: https://locker.example.com/ops/alerts?status=all\n"
    )
    assert len(message.slack["blocks"]) == 1 + 5 + 1 + 1


def test_target_urls_are_checked_and_shown_by_host_alone() -> None:
    assert (
        check_target_url("https://hooks.slack.com/services/T0/B0/abc") == "https://hooks.slack.com"
    )
    assert check_target_url("http://[::1]:9000/hook") == "http://[::1]:9000"
    assert check_target_url("http://192.168.1.5/hook?token=x") == "http://192.168.1.5"
    for bad in (
        "ftp://h/x",
        "https:///x",
        "https://h:99999/",
        "https://h/ x",
        "file:///etc/passwd",
    ):
        with pytest.raises(TargetUrlError):
            check_target_url(bad)
    url = "https://hooks.slack.com/services/T0/B0/abc?x=1"
    assert url_hint(url) == "https://hooks.slack.com"
    assert scrub(f"failed for {url}: nope", url) == "failed for https://hooks.slack.com/…: nope"
    assert "abc" not in scrub("path /services/T0/B0/abc was refused", url)


def test_every_alert_type_central_raises_can_be_subscribed_to_by_name() -> None:
    from central.nodes.updates import ALERT_TYPE as UPDATE_FAILED
    from central.ops.actions import OPEN_BUDGET_EXHAUSTED
    from central.ops.alerts import ALERT_TYPES

    raised = {*ALERT_TYPES, UPDATE_FAILED, OPEN_BUDGET_EXHAUSTED}
    assert raised - set(ALERT_KINDS) == set()

"""Pages in words: one alert's transition, or a digest of many, as an email and as the JSON of a
Slack incoming webhook (`text` for receivers that read only that: Mattermost, Rocket.Chat).

Pure functions over plain data; `central.paging.tasks` gathers the facts and sends.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, urlencode

from central.paging.words import alert_sentence, kind_label

Transition = Literal["raised", "resolved"]
TRANSITIONS: tuple[Transition, ...] = ("raised", "resolved")
# A digest lists this many pages in full; the rest only in its counts.
DIGEST_LISTED = 5
SUBJECT_PREFIX = "[Locker]"


@dataclass(frozen=True, slots=True)
class PageFacts:
    """What a page tells of: one alert's transition, read from the alert when it is sent."""

    alert_id: int
    transition: Transition
    alert_type: str
    subject: str | None
    detail: Mapping[str, Any] | None
    bank_id: str | None
    bank_name: str | None
    raised_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class Message:
    """A page ready for either channel: `subject` and `text` for email, `slack` for webhooks."""

    subject: str
    text: str
    slack: dict[str, Any]


def _when(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _where(facts: PageFacts) -> str:
    if facts.bank_id is None:
        return "the network"
    if facts.bank_name and facts.bank_name != facts.bank_id:
        return f"{facts.bank_name} ({facts.bank_id})"
    return facts.bank_id


def headline(facts: PageFacts) -> str:
    state = "Resolved" if facts.transition == "resolved" else "Alert"
    return f"{state}: {kind_label(facts.alert_type)} at {_where(facts)}"


def _times(facts: PageFacts) -> str:
    times = f"Raised {_when(facts.raised_at)}"
    if facts.resolved_at is not None:
        times += f", resolved {_when(facts.resolved_at)}"
    return times


def alert_link(facts: PageFacts, public_url: str) -> str:
    """The dashboard's page of the alert's bank, or its alerts of that type when network-wide."""
    base = public_url.rstrip("/")
    if facts.bank_id is not None:
        return f"{base}/ops/banks/{quote(facts.bank_id, safe='')}"
    return f"{base}/ops/alerts?{urlencode({'status': 'all', 'type': facts.alert_type})}"


def _escape(text: str) -> str:
    """Slack's mrkdwn: these three are control characters in message text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(mrkdwn: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn[:3000]}}


def render_page(facts: PageFacts, public_url: str) -> Message:
    """One alert's transition."""
    title = headline(facts)
    sentence = alert_sentence(facts.alert_type, facts.subject, facts.detail)
    if facts.transition == "raised" and facts.resolved_at is not None:
        sentence += " (resolved since)"
    times = _times(facts)
    link = alert_link(facts, public_url)
    text = f"{title}\n\n{sentence}\n{times}\n\nOpen in the dashboard: {link}\n"
    chat = f"*{_escape(title)}*\n{_escape(sentence)}\n{times} · <{link}|Open in the dashboard>"
    slack = {
        "text": chat,
        "blocks": [
            _section(f"*{_escape(title)}*\n{_escape(sentence)}"),
            {"type": "context", "elements": [{"type": "mrkdwn", "text": times}]},
            _section(f"<{link}|Open in the dashboard>"),
        ],
    }
    return Message(subject=f"{SUBJECT_PREFIX} {title}", text=text, slack=slack)


def _counts(pages: Sequence[PageFacts]) -> list[str]:
    by_kind: Counter[tuple[str, str]] = Counter((p.alert_type, p.transition) for p in pages)
    lines = []
    for alert_type in sorted({p.alert_type for p in pages}, key=kind_label):
        parts = [
            f"{by_kind[(alert_type, transition)]} {transition}"
            for transition in TRANSITIONS
            if by_kind[(alert_type, transition)]
        ]
        lines.append(f"{kind_label(alert_type)}: {', '.join(parts)}")
    return lines


def render_digest(pages: Sequence[PageFacts], public_url: str) -> Message:
    """Many transitions for one destination at once: the counts per alert type, and the first
    `DIGEST_LISTED` in full."""
    # Raised first (what needs someone), oldest first within each.
    first = sorted(pages, key=lambda p: (p.transition == "resolved", p.raised_at, p.alert_id))
    first = first[:DIGEST_LISTED]
    title = f"{len(pages)} alert changes"
    counts = _counts(pages)
    link = f"{public_url.rstrip('/')}/ops/alerts?status=all"
    listed = [
        (headline(p), alert_sentence(p.alert_type, p.subject, p.detail), _times(p)) for p in first
    ]
    more = len(pages) - len(listed)
    text_lines = [title, "", *counts, ""]
    for head, sentence, times in listed:
        text_lines += [head, f"  {sentence}", f"  {times}"]
    if more:
        text_lines.append(f"…and {more} more.")
    text_lines += ["", f"Open in the dashboard: {link}", ""]
    blocks = [
        _section(f"*{_escape(title)}*\n" + "\n".join(f"• {_escape(c)}" for c in counts)),
        *(
            _section(f"*{_escape(head)}*\n{_escape(sentence)}\n_{times}_")
            for head, sentence, times in listed
        ),
    ]
    if more:
        more_text = {"type": "mrkdwn", "text": f"…and {more} more"}
        blocks.append({"type": "context", "elements": [more_text]})
    blocks.append(_section(f"<{link}|Open the alerts in the dashboard>"))
    chat = f"*{_escape(title)}*: " + "; ".join(_escape(c) for c in counts) + f" · <{link}|Open>"
    return Message(
        subject=f"{SUBJECT_PREFIX} {title}",
        text="\n".join(text_lines),
        slack={"text": chat, "blocks": blocks},
    )

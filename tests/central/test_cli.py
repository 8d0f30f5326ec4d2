"""The operator command line, run as an operator would run it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from central.cli import app
from central.models import ApiKey, Bank, BankCapacity, Compartment
from tests.central.conftest import TEST_SECRET, engine_for

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    monkeypatch.setenv("LOCKER_DATABASE_URL", url)
    monkeypatch.setenv("LOCKER_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("LOCKER_SECRET_KEY", TEST_SECRET)
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    return url


def test_carrier_key_and_bank(env: str) -> None:
    added = runner.invoke(app, ["carrier", "add", "usps", "--name", "USPS"])
    assert added.exit_code == 0, added.output
    created = runner.invoke(app, ["apikey", "create", "usps"])
    assert created.exit_code == 0, created.output
    key = created.output.strip()
    assert key.startswith("lk_")
    bank = runner.invoke(
        app,
        [
            "bank", "add", "NYC-0042", "--name", "Penn Station", "--address", "7th Ave",
            "--lat", "40.75", "--lon", "-73.99", "--compartments", "S:20,M:15,L:8,XL:2",
            "--timezone", "America/New_York",
        ],
    )  # fmt: skip
    assert bank.exit_code == 0, bank.output

    sessions = engine_for(env)
    with sessions() as session:
        stored = session.scalars(select(ApiKey)).one()
        assert stored.key_hash != key and key not in stored.key_hash  # only a hash is kept
        assert session.get(Bank, "NYC-0042") is not None
        labels = session.scalars(select(Compartment.label).order_by(Compartment.id)).all()
        assert len(labels) == 45 and labels[0] == "A01" and labels[12] == "B01"
        capacity = {c.size: c.total for c in session.scalars(select(BankCapacity))}
        assert capacity == {"S": 20, "M": 15, "L": 8, "XL": 2}
    sessions.kw["bind"].dispose()

    revoked = runner.invoke(app, ["apikey", "revoke", key.split("_")[1]])
    assert revoked.exit_code == 0, revoked.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["carrier", "add", "US PS"], "carrier id must be"),
        (["apikey", "create", "nobody"], "no carrier"),
        (["apikey", "revoke", "aaaaaaaaaaaa"], "no active key"),
        (
            ["bank", "add", "B1", "--name", "n", "--address", "a", "--lat", "1", "--lon", "2",
             "--compartments", "S:x"],
            "bad compartment spec",
        ),
        (
            ["bank", "add", "B1", "--name", "n", "--address", "a", "--lat", "91", "--lon", "2",
             "--compartments", "S:1"],
            "latitude",
        ),
        (
            ["bank", "add", "B1", "--name", "n", "--address", "a", "--lat", "1", "--lon", "2",
             "--compartments", "S:1", "--timezone", "Mars/Olympus"],
            "unknown time zone",
        ),
    ],
)  # fmt: skip
def test_bad_input_exits_1_with_a_message(env: str, args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert message in result.output


def test_duplicate_carrier_is_refused(env: str) -> None:
    assert runner.invoke(app, ["carrier", "add", "dhl"]).exit_code == 0
    again = runner.invoke(app, ["carrier", "add", "dhl"])
    assert again.exit_code == 1 and "exists already" in again.output


def test_node_command_will_not_open_several_doors_without_a_second_admin(env: str) -> None:
    """`open_compartments` goes only through an approved open request, never from the CLI."""
    payload = (
        '{"labels": ["A01", "A02"], "approval_id": "opr_made_up", '
        '"requested_by": "a@x.test", "approved_by": "b@x.test"}'
    )
    result = runner.invoke(
        app, ["node", "command", "NYC-0042", "open_compartments", "--payload", payload]
    )
    assert result.exit_code != 0
    assert "second admin" in result.output


def test_central_keeps_request_urls_out_of_its_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """httpx logs each request's full URL at INFO; webhook endpoints may carry a token in it."""
    import logging

    import httpx

    from central.cli import configure_logging

    for name in ("httpx", "httpcore"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
    configure_logging()
    transport = httpx.MockTransport(lambda request: httpx.Response(204))
    with caplog.at_level(logging.INFO), httpx.Client(transport=transport) as client:
        client.post("https://hooks.example.net/services/T000/B000/secret-token", json={})
    assert "secret-token" not in caplog.text
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING

"""A short soak: central and three nodes as real processes under load for two minutes, central
and nodes SIGKILLed and SIGSTOPped on a schedule, and every invariant holds afterwards."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import pytest

from tests.soak.support import load_figures, run_soak, verdicts

pytestmark = pytest.mark.slow

# A kill and a stop of central, a kill and a stop of a node; a stop of central outlasts the
# carrier's 3-second timeout, so a create may time out and be retried.
SCHEDULE = "20:kill:central,40:stop:node-1,60:kill:node-2,85:stop:central"
INVARIANTS = 11


@pytest.mark.timeout(480)
def test_a_short_soak_under_chaos_keeps_every_invariant(tmp_path: Path) -> None:
    done = run_soak(
        tmp_path,
        "--minutes", "2", "--nodes", "3", "--rate", "30", "--chaos-schedule", SCHEDULE,
        "--stop-s", "6", "8", "--timeout-s", "3", "--courier-delay-s", "5",
        "--pickup-delay-s", "10", "--warmup-minutes", "0.5", "--settle-minutes", "3",
        timeout_s=420,
    )  # fmt: skip
    output = done.stdout
    assert done.returncode == 0, output[-6000:] + done.stderr[-3000:]
    assert "SOAK PASSED: every invariant holds" in output
    held = verdicts(output)
    assert len(held) == INVARIANTS and all(held.values()), held

    # The chaos happened, and every process came back from it.
    chaos = [line for line in output.splitlines() if "back after" in line and " s  " in line]
    assert len(chaos) == 4, output[-4000:]
    assert not [line for line in chaos if "ERROR" in line]

    # Parcels went all the way through, across the outages.
    figures = load_figures(output)
    assert figures["deposited"] >= 20, figures
    assert figures["picked_up"] >= 20, figures

    # Memory was sampled throughout, a killed process starting a new series when restarted.
    series: dict[str, set[str]] = defaultdict(set)
    with (tmp_path / "memory.csv").open() as samples:
        for row in csv.DictReader(samples):
            series[row["process"]].add(row["incarnation"])
            assert 20 < float(row["rss_mb"]) < 2000
    assert set(series) == {"central", "node-SOAK-1", "node-SOAK-2", "node-SOAK-3"}
    assert series["central"] == {"1", "2"}
    assert series["node-SOAK-2"] == {"1", "2"}
    assert series["node-SOAK-1"] == {"1"}  # stopped and continued: the same process

"""The soak fails when an invariant is broken: a real short run whose central loses one applied
node event before the check must exit non-zero and name the invariant."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.soak.support import load_figures, run_soak, verdicts

pytestmark = pytest.mark.slow


@pytest.mark.timeout(300)
def test_a_soak_whose_central_lost_a_node_event_fails(tmp_path: Path) -> None:
    done = run_soak(
        tmp_path,
        "--minutes", "0.4", "--nodes", "1", "--chaos", "0", "--courier-delay-s", "1",
        "--pickup-delay-s", "1", "--settle-minutes", "2", "--break", "node-event",
        timeout_s=240,
    )  # fmt: skip
    output = done.stdout
    assert done.returncode == 1, output[-6000:] + done.stderr[-3000:]
    assert "--break node-event: deleted central's parcel.deposited node event" in output
    assert "SOAK FAILED: every confirmed deposit reached central once" in output
    held = verdicts(output)
    assert held.pop("every confirmed deposit reached central once") is False
    # Only the broken fact fails: the run itself was sound.
    assert all(held.values()), held
    assert load_figures(output)["deposited"] >= 1

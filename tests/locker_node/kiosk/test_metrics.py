"""The node's /metrics: door states, outbox depth and counters read from the store."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from locker_node.hardware.simulator import Fault
from tests.locker_node.kiosk.rig import Rig
from tests.locker_node.kiosk.test_pickup import deposited, wrong_code


def scrape(rig: Rig) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = rig.client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def test_counters_follow_what_happens_at_the_kiosk(rig: Rig) -> None:
    before = scrape(rig)
    assert before[("locker_node_doors", (("state", "closed"),))] == 10
    assert before[("locker_node_pickups_total", ())] == 0
    assert before[("locker_node_info", (("bank", "TEST-1"),))] == 1

    _, label, code = deposited(rig)
    for _ in range(5):
        rig.pickup(wrong_code(code))
    rig.clock.advance(seconds=31)
    assert rig.pickup(code).status_code == 200

    after = scrape(rig)
    assert after[("locker_node_deposits_total", ())] == 1
    assert after[("locker_node_pickups_total", ())] == 1
    assert after[("locker_node_code_failures_total", ())] == 5
    assert after[("locker_node_lockouts_total", ())] == 1
    # No central configured: everything queued is still waiting.
    assert after[("locker_node_outbox_depth", ())] == len(rig.events())
    assert after[("locker_node_doors", (("state", "open"),))] == 1  # the pickup's door
    rig.close_door(label)


def test_a_jammed_door_shows_as_a_fault_and_out_of_service(rig: Rig) -> None:
    rig.add_reservation("1Z0009")
    rig.board.set_fault(Fault.JAM, lock=rig.lock_of("A01"))
    headers = rig.login()
    rig.client.post("/api/courier/deposit", json={"tracking_number": "1Z0009"}, headers=headers)

    after = scrape(rig)
    assert after[("locker_node_door_faults_total", ())] == 1
    assert after[("locker_node_compartments_out_of_service", ())] == 1


def test_metrics_stay_out_of_the_kiosk_api_schema(rig: Rig) -> None:
    schema = rig.client.get("/api/openapi.json").json()
    assert "/metrics" not in schema["paths"]

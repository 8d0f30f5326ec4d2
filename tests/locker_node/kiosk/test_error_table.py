"""Every refusal a flow can raise has its status in the kiosk's one table."""

from __future__ import annotations

from locker_node.flows import errors
from locker_node.kiosk.endpoints import FLOW_ERROR_STATUS, flow_error_status


def all_subclasses(kind: type[errors.FlowError]) -> set[type[errors.FlowError]]:
    found = set(kind.__subclasses__())
    for sub in list(found):
        found |= all_subclasses(sub)
    return found


def test_each_flow_error_has_a_4xx_or_503_status() -> None:
    refusals = all_subclasses(errors.FlowError)

    assert refusals <= set(FLOW_ERROR_STATUS)
    for refusal in refusals:
        status = flow_error_status(refusal("detail"))
        assert 400 <= status < 500 or status == 503, (refusal, status)


def test_the_status_follows_the_error_and_its_code_is_kept() -> None:
    exc = errors.Conflict("no room", code="no_capacity")

    assert flow_error_status(exc) == 409
    assert (exc.code, exc.detail) == ("no_capacity", "no room")
    assert flow_error_status(errors.LockedOut("wait", retry_after_s=30)) == 429

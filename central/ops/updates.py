"""Node updates in the dashboard: the wanted node version for a set of banks, and each node's
progress towards it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Self

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from central.context import Ctx
from central.models import OperatorAccount
from central.nodes import updates
from central.ops.auth import Operator, OperatorRoute, current_operator, run_unit
from central.ops.endpoints import _audited

# The JSON API (every call needs a signed-in operator) and the HTML pages.
router = APIRouter(prefix="/ops/api", include_in_schema=False, route_class=OperatorRoute)
pages = APIRouter(prefix="/ops", include_in_schema=False)
OperatorDep = Annotated[Operator, Depends(current_operator)]
BankIdText = Annotated[str, Field(min_length=1, max_length=64)]


class RolloutIn(BaseModel):
    """`{"version": "1.4.2", "bank_ids": [...]}` or `{"version": "1.4.2", "all": true}`."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, populate_by_name=True)

    version: str = Field(min_length=1, max_length=64)
    bank_ids: list[BankIdText] | None = Field(
        default=None, max_length=updates.MAX_BANKS_PER_ROLLOUT
    )
    all_banks: bool = Field(default=False, alias="all")
    reason: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if self.all_banks == (self.bank_ids is not None):
            raise ValueError("give either bank_ids or all: true")
        return self


class RolloutOut(BaseModel):
    id: int
    version: str
    all: bool
    bank_ids: list[str]
    set_by: str | None
    set_at: datetime


class NodeProgressOut(BaseModel):
    bank_id: str
    bank_name: str
    node_id: str
    online: bool
    wanted: str | None
    running: str | None
    state: str
    detail: str | None
    since: datetime | None


class UpdatesOut(BaseModel):
    rollouts: list[RolloutOut]
    banks: list[NodeProgressOut]


class StoppedOut(BaseModel):
    stopped: int


def _rollout_out(ctx: Ctx, rollout: Any, banks: list[str]) -> RolloutOut:
    account = ctx.session.get(OperatorAccount, rollout.set_by) if rollout.set_by else None
    return RolloutOut(
        id=rollout.id,
        version=rollout.version,
        all=rollout.all_banks,
        bank_ids=banks,
        set_by=account.email if account is not None else None,
        set_at=rollout.set_at,
    )


def _overview(ctx: Ctx) -> UpdatesOut:
    return UpdatesOut(
        rollouts=[
            _rollout_out(ctx, rollout, banks)
            for rollout, banks in updates.active_rollouts(ctx.session)
        ],
        banks=[
            NodeProgressOut(
                bank_id=p.bank_id,
                bank_name=p.bank_name,
                node_id=p.node_id,
                online=p.online,
                wanted=p.wanted,
                running=p.running,
                state=p.state,
                detail=p.detail,
                since=p.since,
            )
            for p in updates.fleet_progress(ctx.session)
        ],
    )


@router.get("/updates")
async def get_updates(request: Request, operator: OperatorDep) -> UpdatesOut:
    return await run_unit(request, _overview)


@router.put("/updates")
async def put_updates(request: Request, operator: OperatorDep, body: RolloutIn) -> UpdatesOut:
    target = "all" if body.all_banks else ",".join(sorted(set(body.bank_ids or [])))[:64]

    def work(ctx: Ctx) -> tuple[UpdatesOut, dict[str, Any]]:
        rollout = updates.set_rollout(
            ctx.session,
            version=body.version,
            bank_ids=None if body.all_banks else body.bank_ids,
            operator_id=operator.id,
            now=ctx.now,
        )
        detail: dict[str, Any] = {"rollout_id": rollout.id, "version": rollout.version}
        if body.bank_ids is not None:
            detail["bank_ids"] = sorted(set(body.bank_ids))
        return _overview(ctx), detail

    return await _audited(
        request,
        operator,
        action="set_node_version",
        target_type="node_version",
        target_id=target,
        reason=body.reason,
        work=work,
    )


@router.delete("/updates")
async def delete_updates(request: Request, operator: OperatorDep) -> StoppedOut:
    def work(ctx: Ctx) -> tuple[StoppedOut, dict[str, Any]]:
        stopped = updates.stop_rollouts(ctx.session, operator_id=operator.id, now=ctx.now)
        return StoppedOut(stopped=stopped), {"stopped": stopped}

    return await _audited(
        request,
        operator,
        action="stop_node_update",
        target_type="node_version",
        target_id="all",
        reason=None,
        work=work,
    )

"""The effective rule set, read-only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from gateway.api.deps import AnyUser, Context

router = APIRouter(prefix="/api/rules", tags=["rules"])


class RuleSetPublic(BaseModel):
    """The rule set one engine runs: for one organisation, or (org null) for all others."""

    org: str | None
    outcomes: list[str]
    ruleset: dict[str, Any]


@router.get("")
async def effective_rules(user: AnyUser, ctx: Context) -> list[RuleSetPublic]:
    """The rule sets in force: the shared one, and each organisation's own that the user sees."""
    result = []
    for key, engine in ctx.console.alerting.engines.items():
        if key is not None and not user.sees(key):
            continue
        rs = engine.ruleset
        result.append(
            RuleSetPublic(org=key, outcomes=list(rs.outcomes), ruleset=rs.model_dump(mode="json"))
        )
    return result

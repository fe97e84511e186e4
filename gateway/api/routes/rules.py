"""The effective rule set, read-only, with how the console shows each rule's alerts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from gateway.api.deps import AnyUser, Context
from rules import Presentation

router = APIRouter(prefix="/api/rules", tags=["rules"])


class RuleSetPublic(BaseModel):
    """The rule set one engine runs: for one organisation, or (org null) for all others."""

    org: str | None
    outcomes: list[str]
    # Rule id → its category, icon and titles in Swedish and English: the
    # console's labels (the same keys as under ruleset.rules, typed here).
    presentation: dict[str, Presentation]
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
            RuleSetPublic(
                org=key,
                outcomes=list(rs.outcomes),
                presentation={rule_id: rule.presentation for rule_id, rule in rs.rules.items()},
                ruleset=rs.model_dump(mode="json"),
            )
        )
    return result

"""Organisation ids: the pattern topics, the registry, the API and the access log share."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, TypeAdapter, ValidationError

ORG_ID_PATTERN = r"^[A-Za-z0-9._-]+$"
OrgId = Annotated[str, Field(min_length=1, max_length=64, pattern=ORG_ID_PATTERN)]
_ORG_ID = TypeAdapter(OrgId)


def is_org_id(text: str) -> bool:
    """Whether a text could be an organisation id (as topics, registry and log use them)."""
    try:
        _ORG_ID.validate_python(text)
    except ValidationError:
        return False
    return True

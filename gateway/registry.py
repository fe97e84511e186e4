"""The device registry: which devices exist, their family, organisation and heartbeat interval."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import RegistryError
from core.events import DeviceId, Family
from core.ids import OrgId


class DeviceRecord(BaseModel):
    """One registered device as imported from a registry file and kept in PostgreSQL."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device_id: DeviceId
    family: Family
    org: OrgId
    # A pseudonym for the home or room (never a name or personal number).
    unit: Annotated[str, Field(max_length=200)] = ""
    # The district or team whose night patrol answers for it; the console filters by it.
    area: Annotated[str, Field(max_length=100)] = ""
    heartbeat_interval_s: Annotated[int, Field(gt=0, le=86_400)] = 60
    # SCAIP over SIP: where this unit expects its <mrs> ("body" of the 200 OK or a
    # separate "message"); empty: the [scaip] reply default.
    scaip_reply: Literal["body", "message"] | None = None
    # SIP digest credentials (RFC 2617 HA1): hex MD5 of "device_id:realm:password",
    # so the password itself is never stored; empty: no authentication asked.
    sip_ha1: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")] | None = None


class SipAccount(NamedTuple):
    """A device's SIP settings from the registry, for the devices that have any."""

    reply: Literal["body", "message"] | None
    ha1: str | None


def parse_registry(text: str, *, source: str) -> list[DeviceRecord]:
    """Parse a registry file's text (YAML with a ``devices`` list, or CSV with a header)."""
    rows: list[Mapping[str, Any]]
    if source.endswith(".csv"):
        rows = list(csv.DictReader(io.StringIO(text)))
    else:
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RegistryError(f"{source}: not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict) or not isinstance(loaded.get("devices"), list):
            raise RegistryError(f"{source}: expected a mapping with a 'devices' list")
        rows = loaded["devices"]
    records: list[DeviceRecord] = []
    seen: set[str] = set()
    for index, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise RegistryError(f"{source}: device #{index} is not a mapping")
        clean = {k: v for k, v in row.items() if v not in (None, "")}
        try:
            record = DeviceRecord.model_validate(clean)
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"]) or "?"
            raise RegistryError(
                f"{source}: device #{index} ({row.get('device_id', '?')}): key {key!r}: "
                f"{first['msg']}"
            ) from exc
        if record.device_id in seen:
            raise RegistryError(f"{source}: device id {record.device_id!r} appears twice")
        seen.add(record.device_id)
        records.append(record)
    return records


def load_registry_file(path: Path) -> list[DeviceRecord]:
    """Read and validate a registry file; errors name the file and the device."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"cannot read registry file {path}: {exc.strerror}") from exc
    return parse_registry(text, source=str(path))


def dump_registry_yaml(records: Iterable[DeviceRecord]) -> str:
    """Render records as a registry YAML file (the format ``wgw devices import`` reads)."""
    # Unset optional keys (the SIP ones) are left out, as an operator would write it.
    devices = [r.model_dump(mode="json", exclude_none=True) for r in records]
    return yaml.safe_dump({"devices": devices}, sort_keys=False, allow_unicode=True)

"""Device health for the console: last contact, battery, offline."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from gateway.api.context import ApiContext
from gateway.api.deps import (
    AreaFilter,
    Connection,
    Context,
    Handler,
    OrgFilter,
    check_org,
    log_list_read,
)
from gateway.store.console import DeviceRow, list_areas, list_devices

router = APIRouter(prefix="/api/devices", tags=["devices"])


class DeviceHealthPublic(BaseModel):
    """One device's health as the console's panel shows it."""

    device_id: str
    family: str
    org: str
    unit: str
    area: str
    last_contact: datetime | None  # gateway time of its latest message since start-up
    battery: int | None  # percent, as last reported
    offline: bool  # ingen kontakt: reported silent by supervision
    battery_low: bool  # låg batterinivå


def judge_health(ctx: ApiContext, devices: list[DeviceRow]) -> list[DeviceHealthPublic]:
    """The health of registered devices, from what the running gateway has heard and judged."""
    alerting = ctx.console.alerting
    health = alerting.health
    # Offline is what supervision said: an open no-contact alert or a silent
    # device of an open outage incident; a battery alert marks it low as well.
    offline = {i for incident in alerting.incidents() for i in incident.silent}
    low = set()
    for alert in alerting.open_alerts():
        if alert.kind == "device.offline":
            offline.add(alert.device_id)
        elif alert.kind.endswith("battery_low"):
            low.add(alert.device_id)
    threshold = ctx.settings.api.battery_low_percent
    result = []
    for d in devices:
        battery = health.battery.get(d.device_id)
        result.append(
            DeviceHealthPublic(
                device_id=d.device_id,
                family=d.family,
                org=d.org,
                unit=d.unit,
                area=d.area,
                last_contact=health.last_contact.get(d.device_id),
                battery=battery,
                offline=d.device_id in offline,
                battery_low=d.device_id in low or (battery is not None and battery <= threshold),
            )
        )
    return result


@router.get("", responses={503: {}})
async def device_health(
    user: Handler,
    ctx: Context,
    conn: Connection,
    org: OrgFilter = None,
    area: AreaFilter = None,
    problems_only: bool = False,
) -> list[DeviceHealthPublic]:
    """Registered devices with their health; ``problems_only`` keeps the offline and low ones."""
    orgs = check_org(user, org)
    devices = await list_devices(conn, orgs=orgs, area=area)
    result = judge_health(ctx, devices)
    if problems_only:
        result = [d for d in result if d.offline or d.battery_low]
    # Homes and their devices, which are silent or failing: a read of personal data.
    log_list_read(ctx, user, [(d.org, d.device_id) for d in result], subject="device_health",
                  key="devices", detail={"area": area} if area is not None else None)  # fmt: skip
    return result


@router.get("/areas", responses={503: {}})
async def areas(user: Handler, conn: Connection) -> list[str]:
    """The areas (districts, care homes) of the account's devices, for the console's filter."""
    return await list_areas(conn, orgs=user.scope())

"""An invented access directory for remote-supervision tests, on the API tests' devices."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from gateway.store.access import import_directory
from rules.access import parse_directory

SE = ZoneInfo("Europe/Stockholm")
OPERATOR = "operator-a"  # tests.api.conftest.OPERATOR_A: logs in as staff member s-anna
CONSENTING = "sensor-a001"  # consent on record, agreed 22:00-06:00, checks at 23:00 and 02:00
REFUSING = "sensor-a002"  # consent not on record, a check planned at 23:30
# The night of 24-25 November 2026, on the wall clock staff read.
CHECK_1 = datetime(2026, 11, 24, 23, 0, tzinfo=SE)
CHECK_2 = datetime(2026, 11, 25, 2, 0, tzinfo=SE)
CHECK_REFUSING = datetime(2026, 11, 24, 23, 30, tzinfo=SE)

DIRECTORY = f"""
organisations:
  - {{org: vallby, visit_plan_enforced: false}}
staff:
  - {{org: vallby, staff_id: s-anna, pseudonym: Anna N, account: {OPERATOR}}}
shifts:
  - {{org: vallby, staff_id: s-anna, start: "2026-11-24T21:00:00+01:00",
     end: "2026-11-25T07:00:00+01:00"}}
grants:
  - {{org: vallby, device_id: {CONSENTING}, staff_id: s-anna}}
  - {{org: vallby, device_id: {REFUSING}, staff_id: s-anna}}
consents:
  - {{device_id: {CONSENTING}, consent_on_record: true, windows: ["22:00-06:00"],
     checks: ["23:00", "02:00"]}}
  - {{device_id: {REFUSING}, consent_on_record: false, windows: ["22:00-06:00"],
     checks: ["23:30"]}}
"""


def import_remote_directory(dsn: str) -> None:
    """Store the directory above, as `wgw access import` would."""
    import_directory(dsn, parse_directory(DIRECTORY, source="test"), source="test")

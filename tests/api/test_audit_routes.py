"""The audit API: who may read the access log, what a search finds, CSV, extract, chain status."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from core.events import Family, RawMessage
from gateway.cli import main
from gateway.registry import DeviceRecord
from gateway.store.access import import_directory
from gateway.store.devices import import_devices
from rules.access import parse_directory
from tests.api.conftest import (
    ADMIN_A,
    ADMIN_ALL,
    AUDITOR_A,
    COORDINATOR_A,
    OPERATOR_A,
    ORG_A,
    ORG_B,
    RunningApi,
    Shared,
    db_rows,
    eventually,
    running_api,
)

pytestmark = pytest.mark.db

LOCK_A1, LOCK_A2, LOCK_B1 = "lock-a001", "lock-a002", "lock-b001"
UNIT_A1, UNIT_A2 = "Lgh 1101", "Lgh 1102"
# Device time of the openings: recent enough to be accepted, old enough to be history.
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def _lock(device_id: str, org: str, unit: str) -> DeviceRecord:
    return DeviceRecord(device_id=device_id, family=Family.LOCK, org=org, unit=unit,
                        heartbeat_interval_s=3600)  # fmt: skip


# Anna (key-0042) may open lock-a001 during her shift; Bo (key-0099) has no
# grant and no shift; neither has a grant on lock-a002.
DIRECTORY = f"""
organisations:
  - {{org: {ORG_A}, visit_plan_enforced: false}}
  - {{org: {ORG_B}, visit_plan_enforced: false}}
staff:
  - {{org: {ORG_A}, staff_id: s-anna, pseudonym: Personal 17}}
  - {{org: {ORG_A}, staff_id: s-bo, pseudonym: Personal 18}}
  - {{org: {ORG_B}, staff_id: s-cay, pseudonym: Personal 3}}
keys:
  - {{org: {ORG_A}, key_id: key-0042, staff_id: s-anna}}
  - {{org: {ORG_A}, key_id: key-0099, staff_id: s-bo}}
  - {{org: {ORG_B}, key_id: key-0500, staff_id: s-cay}}
shifts:
  - {{org: {ORG_A}, staff_id: s-anna, start: "{(T0 - timedelta(hours=1)).isoformat()}",
     end: "{(T0 + timedelta(hours=1)).isoformat()}"}}
grants:
  - {{org: {ORG_A}, device_id: {LOCK_A1}, staff_id: s-anna}}
"""

# (minutes after T0, lock, kind, key): what the lock logs report.
OPENINGS = [
    (1, LOCK_A1, "lock.unlocked", "key-0042"),  # allowed
    (2, LOCK_A1, "lock.unlocked", "key-0099"),  # not granted, off shift
    (3, LOCK_A2, "lock.door_opened", "key-0042"),  # not granted
    (4, LOCK_A1, "lock.locked", "key-0042"),  # not an opening
    (5, LOCK_B1, "lock.unlocked", "key-0500"),  # the other organisation
]


def lock_message(minute: int, device_id: str, kind: str, key: str) -> RawMessage:
    org = ORG_B if device_id == LOCK_B1 else ORG_A
    at = T0 + timedelta(minutes=minute)
    body = {"id": f"L-{minute:04d}", "kind": kind, "ts": at.isoformat(), "actor": key}
    return RawMessage(f"wgw/{org}/lock/{device_id}/event", json.dumps(body).encode(), at)


@pytest.fixture
async def audit_api(prepared_dsn: str) -> AsyncIterator[RunningApi]:
    """A gateway whose access log holds the OPENINGS, judged against DIRECTORY."""
    import_devices(
        prepared_dsn,
        [_lock(LOCK_A1, ORG_A, UNIT_A1), _lock(LOCK_A2, ORG_A, UNIT_A2),
         _lock(LOCK_B1, ORG_B, "Rum 7")],
    )  # fmt: skip
    import_directory(prepared_dsn, parse_directory(DIRECTORY, source="test"), source="test")
    async with running_api(prepared_dsn) as running:
        running.source.feed([lock_message(*o) for o in OPENINGS])
        await eventually(
            lambda: _logged(running.dsn, len(OPENINGS)), what="the openings in the access log"
        )
        yield running


async def _logged(dsn: str, n: int) -> bool:
    rows = await db_rows(dsn, "SELECT count(*) FROM access_log WHERE subject LIKE 'lock-%%'")
    return rows == [(n,)]


async def search(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/api/audit/entries", params=params)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


def openings(entries: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["subject"], e["actor"], e["action"]) for e in entries]


# --- who may read ----------------------------------------------------------------------

AUDIT_READS = ["/api/audit/entries", f"/api/audit/extract?person={UNIT_A1}", "/api/audit/verify"]


@pytest.mark.parametrize("path", AUDIT_READS)
@pytest.mark.parametrize("username", [OPERATOR_A, COORDINATOR_A])
async def test_the_night_patrol_and_coordinators_may_not_read_the_access_log(
    shared: Shared, path: str, username: str
) -> None:
    client = await shared.login(username)
    response = await client.get(path)
    assert response.status_code == 403, response.text
    assert "may not do this" in response.json()["detail"]


@pytest.mark.parametrize("path", AUDIT_READS)
async def test_an_organisation_outside_the_accounts_scope_is_refused(
    shared: Shared, path: str
) -> None:
    client = await shared.login(AUDITOR_A)
    sep = "&" if "?" in path else "?"
    response = await client.get(f"{path}{sep}org={ORG_B}")
    assert response.status_code == 403
    assert "outside this account's scope" in response.json()["detail"]


@pytest.mark.parametrize("path", AUDIT_READS)
async def test_an_organisation_id_that_cannot_exist_is_refused_before_anything_is_logged(
    shared: Shared, path: str
) -> None:
    # The read would be logged in that organisation's chain, which needs a valid id.
    admin = await shared.login(ADMIN_ALL)
    sep = "&" if "?" in path else "?"
    response = await admin.get(f"{path}{sep}org=no such org")
    assert response.status_code == 422


async def test_auditors_and_admins_read_the_access_log(api: RunningApi) -> None:
    for username in (AUDITOR_A, ADMIN_A):
        client = await api.login(username)
        for path in AUDIT_READS:
            response = await client.get(path)
            assert response.status_code == 200, (username, path, response.text)


async def test_without_a_directory_openings_are_listed_but_not_judged(api: RunningApi) -> None:
    client = await api.login(AUDITOR_A)
    page = (await client.get("/api/audit/entries")).json()
    assert page["judged"] is False
    refused = await client.get("/api/audit/entries", params={"outside_plan": "true"})
    assert refused.status_code == 409
    assert "wgw access import" in refused.json()["detail"]


# --- what a search finds ---------------------------------------------------------------


async def test_who_opened_a_door_and_which_doors_a_key_opened(audit_api: RunningApi) -> None:
    client = await audit_api.login(AUDITOR_A)
    by_door = await search(client, door=LOCK_A1)
    assert openings(by_door) == [
        (LOCK_A1, "key-0042", "unlock"),
        (LOCK_A1, "key-0099", "unlock"),
        (LOCK_A1, "key-0042", "lock"),
    ]
    assert [e["person"] for e in by_door] == [UNIT_A1] * 3
    assert datetime.fromisoformat(by_door[0]["at"]) == T0 + timedelta(minutes=1)  # device time
    by_key = await search(client, key="key-0042")
    assert openings(by_key) == [
        (LOCK_A1, "key-0042", "unlock"),
        (LOCK_A2, "key-0042", "door_opened"),
        (LOCK_A1, "key-0042", "lock"),
    ]
    by_person = await search(client, person=UNIT_A2)
    assert openings(by_person) == [(LOCK_A2, "key-0042", "door_opened")]
    window = {
        "since": (T0 + timedelta(minutes=2)).isoformat(),
        "until": (T0 + timedelta(minutes=4)).isoformat(),
    }
    assert openings(await search(client, **window)) == [
        (LOCK_A1, "key-0099", "unlock"),
        (LOCK_A2, "key-0042", "door_opened"),
    ]


async def test_openings_are_flagged_with_their_reasons_in_swedish_too(
    audit_api: RunningApi,
) -> None:
    client = await audit_api.login(AUDITOR_A)
    response = await client.get("/api/audit/entries", params={"door": LOCK_A1})
    page = response.json()
    assert page["judged"] is True
    flags = [(e["actor"], e["action"], e["refused"], e["refused_labels"]) for e in page["entries"]]
    assert flags == [
        ("key-0042", "unlock", [], []),
        ("key-0099", "unlock", ["not_granted", "off_shift"],
         ["ej behörig för dörren", "utanför arbetspass"]),
        ("key-0042", "lock", [], []),  # locking is not an opening: never judged
    ]  # fmt: skip


async def test_outside_plan_keeps_only_the_openings_the_directory_does_not_allow(
    audit_api: RunningApi,
) -> None:
    client = await audit_api.login(AUDITOR_A)
    refused = await search(client, outside_plan="true")
    assert [(e["subject"], e["actor"], e["refused"]) for e in refused] == [
        (LOCK_A1, "key-0099", ["not_granted", "off_shift"]),
        (LOCK_A2, "key-0042", ["not_granted"]),
    ]


async def test_the_scope_decides_which_organisations_a_search_covers(
    audit_api: RunningApi,
) -> None:
    scoped = await audit_api.login(AUDITOR_A)
    assert LOCK_B1 not in {e["subject"] for e in await search(scoped)}
    everything = await audit_api.login(ADMIN_ALL)
    assert {LOCK_A1, LOCK_A2, LOCK_B1} <= {e["subject"] for e in await search(everything)}
    # (The admin's own searches are in the log of both organisations by now, or soon.)
    only_b = [e for e in await search(everything, org=ORG_B) if e["subject"] != "access_log"]
    assert openings(only_b) == [(LOCK_B1, "key-0500", "unlock")]


async def test_a_search_larger_than_its_limit_says_so(audit_api: RunningApi) -> None:
    client = await audit_api.login(AUDITOR_A)
    page = (await client.get("/api/audit/entries", params={"key": "key-0042", "limit": 2})).json()
    assert (page["count"], page["truncated"], page["limit"]) == (2, True, 2)
    assert "narrow the search" in page["message"]
    empty = await client.get(
        "/api/audit/entries", params={"since": T0.isoformat(), "until": T0.isoformat()}
    )
    assert empty.status_code == 200  # an empty period: well formed, finds nothing
    assert empty.json()["count"] == 0
    naive = await client.get("/api/audit/entries", params={"since": "2026-01-01T00:00:00"})
    assert naive.status_code == 422  # a time without its offset is ambiguous


# --- CSV -------------------------------------------------------------------------------


async def test_the_csv_download_is_what_the_cli_writes(
    audit_api: RunningApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = await audit_api.login(AUDITOR_A)
    response = await client.get(
        "/api/audit/entries", params={"door": LOCK_A1, "outside_plan": "true", "format": "csv"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith('attachment; filename="access-log-')
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == [
        "refused", "at", "org", "seq", "actor", "action", "subject", "person", "detail",
    ]  # fmt: skip
    assert [(r["actor"], r["refused"], r["person"]) for r in rows] == [
        ("key-0099", "not_granted; off_shift", UNIT_A1),
    ]
    # The same question to `wgw audit query` gives the same bytes.
    config = tmp_path / "wgw.toml"
    config.write_text(f'[db]\ndsn = "{audit_api.dsn}"\n')
    capsys.readouterr()
    args = ["audit", "query", "--door", LOCK_A1, "--outside-plan", "--format", "csv"]
    assert main([*args, "--config", str(config)]) == 0
    assert capsys.readouterr().out.replace("\r\n", "\n") == response.text.replace("\r\n", "\n")


# --- reads are logged ------------------------------------------------------------------


async def _log_of(dsn: str, actor: str) -> list[tuple[Any, ...]]:
    return await db_rows(
        dsn,
        "SELECT org, action, subject, person, detail FROM access_log WHERE actor = %s ORDER BY seq",
        actor,
    )


async def test_every_search_and_export_is_itself_in_the_access_log(audit_api: RunningApi) -> None:
    client = await audit_api.login(AUDITOR_A)
    await search(client, door=LOCK_A1, since=T0.isoformat())
    await client.get("/api/audit/entries", params={"key": "key-0099", "format": "csv"})
    await client.get("/api/audit/entries", params={"outside_plan": "true"})
    logged: list[tuple[Any, ...]] = []

    async def three() -> bool:
        logged[:] = await _log_of(audit_api.dsn, AUDITOR_A)
        return len(logged) >= 3

    await eventually(three, what="the auditor's reads in the access log")
    assert [(org, action, subject, person) for org, action, subject, person, _ in logged] == [
        (ORG_A, "read", "access_log", None),
        (ORG_A, "export", "access_log", None),
        (ORG_A, "read", "access_log", None),
    ]
    details = [row[4] for row in logged]
    assert details[0] == {"via": "api", "door": LOCK_A1, "since": T0.isoformat(),
                          "format": "json", "rows": 3}  # fmt: skip
    assert details[1] == {"via": "api", "key": "key-0099", "format": "csv", "rows": 1}
    assert details[2] == {"via": "api", "outside_plan": True, "format": "json", "rows": 2}
    # The reads are chained like every other entry.
    status = (await client.get("/api/audit/verify")).json()
    assert status["ok"] is True


async def test_the_per_person_extract_shows_who_looked_at_the_person(
    audit_api: RunningApi,
) -> None:
    admin = await audit_api.login(ADMIN_A)
    await search(admin, person=UNIT_A1)
    await eventually(
        lambda: _has(audit_api.dsn, ADMIN_A, "read"), what="the admin's search in the log"
    )
    auditor = await audit_api.login(AUDITOR_A)
    response = await auditor.get("/api/audit/extract", params={"person": UNIT_A1})
    assert response.status_code == 200
    extract = response.json()
    assert extract["person"] == UNIT_A1
    assert [(e["actor"], e["action"], e["subject"]) for e in extract["entries"]] == [
        ("key-0042", "unlock", LOCK_A1),
        ("key-0099", "unlock", LOCK_A1),
        ("key-0042", "lock", LOCK_A1),
        (ADMIN_A, "read", "access_log"),  # who searched the log for this person
    ]
    assert extract["count"] == 4
    csv_response = await auditor.get(
        "/api/audit/extract", params={"person": UNIT_A1, "format": "csv"}
    )
    assert csv_response.headers["content-disposition"].startswith(
        'attachment; filename="extract-Lgh_1101-'
    )
    header = next(csv.reader(io.StringIO(csv_response.text)))
    assert header == ["at", "org", "seq", "actor", "action", "subject", "person", "detail"]
    # Both extracts left the system: each is logged as an export about the person.
    await eventually(
        lambda: _has(audit_api.dsn, AUDITOR_A, "export", count=2), what="the extracts in the log"
    )
    rows = await _log_of(audit_api.dsn, AUDITOR_A)
    assert [(r[1], r[3], r[4]["format"]) for r in rows] == [
        ("export", UNIT_A1, "json"),
        ("export", UNIT_A1, "csv"),
    ]


async def _has(dsn: str, actor: str, action: str, *, count: int = 1) -> bool:
    rows = await db_rows(
        dsn, "SELECT count(*) FROM access_log WHERE actor = %s AND action = %s", actor, action
    )
    return rows == [(count,)]


# --- chain status ----------------------------------------------------------------------


async def test_verify_reports_an_intact_chain_and_names_a_changed_entry(
    audit_api: RunningApi,
) -> None:
    client = await audit_api.login(ADMIN_ALL)
    intact = (await client.get("/api/audit/verify")).json()
    assert intact == {"ok": True, "checked": 5, "chains": 2, "broken": []}
    # What someone with database rights would do: switch off the guard, then edit.
    with psycopg.connect(audit_api.dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE access_log DISABLE TRIGGER access_log_append_only")
        conn.execute(
            "UPDATE access_log SET actor = 'key-0042' WHERE org = %s AND actor = 'key-0099'",
            (ORG_A,),
        )
    broken = (await client.get("/api/audit/verify")).json()
    assert broken["ok"] is False
    [entry] = broken["broken"]
    assert (entry["org"], entry["seq"]) == (ORG_A, 2)
    assert "changed" in entry["why"]
    only_b = (await client.get("/api/audit/verify", params={"org": ORG_B})).json()
    assert only_b == {"ok": True, "checked": 1, "chains": 1, "broken": []}

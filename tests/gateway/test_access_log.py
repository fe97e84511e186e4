"""The access log in PostgreSQL: exactly one chained entry per access event; tampering is named."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from core.events import Event, Family
from core.rows import StoredRow
from gateway.cli import main
from gateway.registry import DeviceRecord
from gateway.store import migrate
from gateway.store.auditlog import verify
from gateway.store.devices import import_devices
from tests.utils.services import EntryWriter, count, rows

pytestmark = pytest.mark.db

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)


def lock_event(n: int, *, kind: str = "lock.unlocked", actor: str | None = "key-0042") -> Event:
    return Event(
        event_id=f"L-{n:04d}",
        device_id="lock-0001" if n % 2 else "lock-0002",
        family=Family.LOCK,
        kind=kind,
        occurred_at=T0 + timedelta(minutes=n),
        received_at=T0 + timedelta(hours=6),
        actor=actor,
    )


@pytest.fixture
async def writer(db_dsn: str) -> AsyncIterator[EntryWriter]:
    migrate(db_dsn)
    import_devices(
        db_dsn,
        [
            DeviceRecord(device_id="lock-0001", family=Family.LOCK, org="vallby", unit="Lgh 1"),
            DeviceRecord(device_id="lock-0002", family=Family.LOCK, org="vallby", unit="Lgh 2"),
        ],
    )
    writer = EntryWriter(db_dsn)
    yield writer
    await writer.sink.close()


def tamper(dsn: str, statement: str) -> None:
    # What someone with database rights would do: switch off the guard, then edit.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE access_log DISABLE TRIGGER access_log_append_only")
        conn.execute(statement.encode())


async def test_each_access_event_is_logged_once_and_chained(
    writer: EntryWriter, db_dsn: str
) -> None:
    batch = [StoredRow(lock_event(n), "vallby") for n in range(1, 7)]
    no_actor = StoredRow(lock_event(7, kind="lock.locked", actor=None), "vallby")
    jammed = StoredRow(lock_event(8, kind="lock.jammed"), "vallby")
    await writer.write([*batch, no_actor, jammed], ())
    await writer.write(batch, ())  # a redelivery: no second entry
    assert count(db_dsn, "SELECT count(*) FROM access_log") == 6
    logged = rows(db_dsn, "SELECT seq, actor, action, subject, person FROM access_log ORDER BY seq")
    assert logged[0] == (1, "key-0042", "unlock", "lock-0001", "Lgh 1")
    assert [r[0] for r in logged] == [1, 2, 3, 4, 5, 6]
    report = verify(db_dsn)
    assert report.ok and report.result.checked == 6


async def test_the_table_refuses_updates_and_deletes(writer: EntryWriter, db_dsn: str) -> None:
    await writer.write([StoredRow(lock_event(1), "vallby")], ())
    with psycopg.connect(db_dsn) as conn, pytest.raises(psycopg.errors.RaiseException):
        conn.execute("UPDATE access_log SET actor = 'key-9999'")


@pytest.mark.parametrize(
    ("statement", "seq", "why"),
    [
        ("UPDATE access_log SET actor = 'key-0001' WHERE seq = 3", 3, "changed"),
        ("UPDATE access_log SET at = at - interval '1 hour' WHERE seq = 2", 2, "changed"),
        ("DELETE FROM access_log WHERE seq = 4", 5, "missing"),
        ("DELETE FROM access_log WHERE seq = 6", 6, "missing"),
    ],
)
async def test_verify_names_the_entry_that_was_changed_or_deleted(
    writer: EntryWriter,
    db_dsn: str,
    config: Path,
    capsys: pytest.CaptureFixture[str],
    statement: str,
    seq: int,
    why: str,
) -> None:
    await writer.write([StoredRow(lock_event(n), "vallby") for n in range(1, 7)], ())
    assert main(["audit", "verify", "--config", str(config)]) == 0
    assert "access log intact: 6 entries" in capsys.readouterr().out
    tamper(db_dsn, statement)
    assert main(["audit", "verify", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert f"organisation vallby, entry {seq}:" in out
    assert why in out


async def test_audit_query_answers_who_opened_a_door(
    writer: EntryWriter, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await writer.write([StoredRow(lock_event(n), "vallby") for n in range(1, 7)], ())
    since = (T0 + timedelta(minutes=2)).isoformat()
    args = ["audit", "query", "--door", "lock-0001", "--since", since, "--config", str(config)]
    assert main([*args, "--format", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["seq"], r["subject"], r["actor"]) for r in table] == [
        ("3", "lock-0001", "key-0042"),
        ("5", "lock-0001", "key-0042"),
    ]
    assert main([*args, "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["detail"]["event_id"] for r in records] == ["L-0003", "L-0005"]
    assert main([*args, "--format", "table"]) == 0
    assert "(2 entries)" in capsys.readouterr().out


REMOTE_DIRECTORY = """
organisations:
  - {org: vallby, visit_plan_enforced: false}
staff:
  - {org: vallby, staff_id: s-anna, pseudonym: Personal 17}
shifts:
  - {org: vallby, staff_id: s-anna, start: "2026-11-23T21:00:00+01:00",
     end: "2026-11-24T07:00:00+01:00"}
grants:
  - {org: vallby, device_id: sensor-0001, staff_id: s-anna}
  - {org: vallby, device_id: sensor-0002, staff_id: s-anna}
consents:
  - {device_id: sensor-0001, consent_on_record: true, windows: ["22:00-06:00"], checks: ["02:00"]}
  - {device_id: sensor-0002, consent_on_record: false, windows: ["22:00-06:00"]}
"""


def test_remote_views_are_judged_and_logged_either_way(
    db_dsn: str, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    migrate(db_dsn)
    directory = tmp_path / "access.yaml"
    directory.write_text(REMOTE_DIRECTORY)
    assert main(["access", "import", str(directory), "--config", str(config)]) == 0
    assert "2 consents; remote checks planned a night: 1" in capsys.readouterr().out
    ask = ["access", "remote-view", "--staff", "s-anna", "--org", "vallby", "--config", str(config)]
    night = "2026-11-24T02:00:00+01:00"
    assert main([*ask, "sensor-0001", "--at", night]) == 0
    assert main([*ask, "sensor-0002", "--at", night]) == 1  # no consent on record
    assert main([*ask, "sensor-0001", "--at", "2026-11-24T06:30:00+01:00"]) == 1  # not agreed
    out = capsys.readouterr().out
    assert "samtycke saknas" in out and "utanför överenskommen tid" in out
    logged = rows(
        db_dsn,
        "SELECT subject, action, detail->>'allowed', detail->'reasons'"
        " FROM access_log ORDER BY seq",
    )
    assert logged == [
        ("sensor-0001", "remote_view", "true", []),
        ("sensor-0002", "remote_view", "false", ["no_consent"]),
        ("sensor-0001", "remote_view", "false", ["outside_agreed_times"]),
    ]
    assert verify(db_dsn).ok

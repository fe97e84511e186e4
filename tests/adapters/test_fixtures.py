"""Golden payloads: every file under fixtures/<family>/ must decode to its .expected.json."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters import SPECS, spec_for_topic
from core.errors import DecodeError
from core.events import ALL_KINDS, Event, RawMessage

FIXTURES = Path(__file__).parent / "fixtures"
PAYLOAD_SUFFIXES = (".json", ".xml", ".txt")
EXPECTED_SUFFIX = ".expected.json"
RECEIVED_AT = datetime(2026, 11, 23, 1, 14, 7, tzinfo=UTC)
SPEC_BY_FOLDER = {spec.family.value: spec for spec in SPECS}

# Reasons every family's bad fixtures must show, and the extra ones for SCAIP.
COMMON_BAD_REASONS = {
    "invalid_json",
    "invalid_utf8",
    "invalid_event",
    "naive_timestamp",
    "unknown_kind",
    "wrong_family_kind",
    "device_mismatch",
}
SCAIP_BAD_REASONS = {
    "xml_dtd",
    "xml_entities",
    "xml_external_entity",
    "invalid_xml",
    "xml_encoding",
    "scaip_missing_tag",
    "scaip_invalid",
}


def _is_expected(path: Path) -> bool:
    return path.name.endswith(EXPECTED_SUFFIX)


def _payloads() -> list[Path]:
    return sorted(p for p in FIXTURES.glob("*/*") if not _is_expected(p))


def _expected_for(payload: Path) -> Path:
    return payload.with_name(payload.stem + EXPECTED_SUFFIX)


def _load_expected(payload: Path) -> dict[str, Any]:
    expected_path = _expected_for(payload)
    assert expected_path.exists(), f"{payload.name} has no {expected_path.name} next to it"
    loaded: dict[str, Any] = json.loads(expected_path.read_text(encoding="utf-8"))
    return loaded


def _normalize(event: Event) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "device_id": event.device_id,
        "family": event.family.value,
        "kind": event.kind,
        "occurred_at": event.occurred_at.isoformat(),
        "device_time": event.device_time,
        "actor": event.actor,
        "attributes": event.attributes,
    }


def _raw(payload: Path, expected: dict[str, Any]) -> RawMessage:
    return RawMessage(
        topic=expected["topic"],
        payload=payload.read_bytes(),
        received_at=RECEIVED_AT,
        retained=expected.get("retained", False),
    )


def test_fixture_tree_is_well_formed() -> None:
    folders = {p.name for p in FIXTURES.iterdir() if p.is_dir()}
    assert folders == set(SPEC_BY_FOLDER), "one fixture folder per family, named after it"
    for path in FIXTURES.glob("*/*"):
        if _is_expected(path):
            stem = path.name.removesuffix(EXPECTED_SUFFIX)
            assert any(path.with_name(stem + s).exists() for s in PAYLOAD_SUFFIXES), (
                f"{path} has no payload"
            )
        else:
            assert path.suffix in PAYLOAD_SUFFIXES, f"{path}: payloads are .json, .xml or .txt"


@pytest.mark.parametrize("payload", _payloads(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixture(payload: Path) -> None:
    expected = _load_expected(payload)
    spec = SPEC_BY_FOLDER[payload.parent.name]
    raw = _raw(payload, expected)
    if "reason" in expected:
        assert payload.name.startswith("bad_"), "refused payloads are named bad_*"
        with pytest.raises(DecodeError) as info:
            spec.decode(raw)
        assert info.value.reason == expected["reason"], str(info.value)
        assert expected.get("message_contains", "") in str(info.value)
        return
    assert not payload.name.startswith("bad_"), "a bad_* fixture needs a reason"
    assert spec_for_topic(raw.topic) is spec, "the topic must route to the folder's family"
    events = spec.decode(raw)
    assert [_normalize(e) for e in events] == expected["events"]
    assert all(e.received_at == RECEIVED_AT for e in events)
    assert spec.decode(raw) == events, "decode must be deterministic"


def test_every_kind_is_produced_by_a_good_fixture() -> None:
    produced: set[str] = set()
    for payload in _payloads():
        produced.update(event["kind"] for event in _load_expected(payload).get("events", []))
    assert sorted(ALL_KINDS - produced) == []


@pytest.mark.parametrize("family", sorted(SPEC_BY_FOLDER))
def test_every_family_has_the_standard_bad_fixtures(family: str) -> None:
    reasons = {
        _load_expected(p).get("reason")
        for p in _payloads()
        if p.parent.name == family and p.name.startswith("bad_")
    }
    wanted = COMMON_BAD_REASONS | (SCAIP_BAD_REASONS if family == "alarm" else set())
    assert sorted(wanted - reasons) == []

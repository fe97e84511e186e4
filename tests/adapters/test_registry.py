"""The spec registry: every adapter listed, no topic served twice, routing agrees with MQTT."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import adapters
from adapters import SPECS, build_routes, spec_for_topic, topic_shape
from adapters.common import DeviceSpec, topic_matches
from adapters.lock import decode as lock_decode
from core.errors import RegistryError
from core.events import Family


def test_every_adapter_module_with_a_spec_is_registered() -> None:
    for module_info in pkgutil.iter_modules(adapters.__path__):
        module = importlib.import_module(f"adapters.{module_info.name}")
        spec = getattr(module, "SPEC", None)
        if spec is not None:
            assert isinstance(spec, DeviceSpec), f"adapters.{module_info.name}.SPEC"
            assert spec in SPECS, f"adapters.{module_info.name}.SPEC is not listed in SPECS"


def test_one_spec_per_family() -> None:
    assert sorted(spec.family for spec in SPECS) == sorted(Family)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.family.value)
def test_each_family_covers_its_event_and_status_topics(spec: DeviceSpec) -> None:
    for channel in ("event", "status"):
        assert spec_for_topic(f"wgw/org-1/{spec.family.value}/dev-1/{channel}") is spec


TOPICS = [
    *(f"wgw/org-1/{f.value}/dev-1/{c}" for f in Family for c in ("event", "status")),
    "scaip/org-1/mrq",
    "wgw//lock//event",  # '+' matches empty levels; the decoder refuses them later
    "wgw/org-1/alerts/a-1",
    "wgw/org-1/lock/dev-1/config",
    "wgw/org-1/lock/dev-1/event/extra",
    "wgw/org-1/thermostat/dev-1/event",
    "wgw/org-1/lock",
    "scaip/org-1/mrs",
    "scaip/org-1/mrq/x",
    "other/org-1/lock/dev-1/event",
    "wgw",
    "",
]


@pytest.mark.parametrize("topic", TOPICS)
def test_routing_agrees_with_mqtt_matching(topic: str) -> None:
    matching = [s for s in SPECS if any(topic_matches(f, topic) for f in s.topic_filters)]
    assert len(matching) <= 1, f"{topic!r} is served by more than one spec"
    assert spec_for_topic(topic) is (matching[0] if matching else None)


def test_scaip_bridge_routes_to_alarm() -> None:
    spec = spec_for_topic("scaip/hemtjanst-nord/mrq")
    assert spec is not None
    assert spec.family is Family.ALARM


def test_topic_shape_hides_org_and_device() -> None:
    assert topic_shape("wgw/org-1/lock/lock-0007/event") == "wgw/+/lock/+/event"
    assert topic_shape("scaip/org-1/mrq") == "scaip/+/mrq"


def _spec(family: Family, *filters: str) -> DeviceSpec:
    return DeviceSpec(family=family, topic_filters=filters, decode=lock_decode, description="t")


def test_a_filter_claimed_twice_is_refused() -> None:
    specs = [_spec(Family.LOCK, "wgw/+/lock/+/event"), _spec(Family.SENSOR, "wgw/+/lock/+/event")]
    with pytest.raises(RegistryError, match="claimed by both lock and sensor"):
        build_routes(specs)


@pytest.mark.parametrize(
    "topic_filter",
    ["wgw/+/+/+/event", "wgw/org-1/lock/+/event", "wgw/+/lock/+/#", "#", "wgw/+//+/event"],
)
def test_filters_with_wildcards_elsewhere_are_refused(topic_filter: str) -> None:
    with pytest.raises(RegistryError, match="must have"):
        build_routes([_spec(Family.LOCK, topic_filter)])


def test_registered_specs_build_cleanly() -> None:
    routes = build_routes(SPECS)
    assert len(routes) == sum(len(s.topic_filters) for s in SPECS)

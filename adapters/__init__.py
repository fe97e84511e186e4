"""Device adapters: one DeviceSpec per family, and the topic routing between them.

    SPECS           the registered specs, checked at import (no filter served twice)
    spec_for_topic  which spec decodes a topic, or None (called once per message)

Every filter has the shape ``{root}/+/{literal}/+/{literal}`` or ``{root}/+/{literal}``:
wildcards only at the organisation and device levels. A topic's shape (those two
levels replaced by ``+``) is then its filter, so routing is one dict lookup.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from adapters import alarm, dispenser, lock, sensor
from adapters.common import DeviceSpec
from core.errors import RegistryError

__all__ = ["SPECS", "DeviceSpec", "build_routes", "spec_for_topic", "topic_shape"]

SPECS: tuple[DeviceSpec, ...] = (alarm.SPEC, sensor.SPEC, lock.SPEC, dispenser.SPEC)

_WILDCARD_LEVELS = (1, 3)  # organisation and device id


def topic_shape(topic: str) -> str:
    """Replace the organisation and device levels of a topic with ``+``."""
    levels = topic.split("/")
    for index in _WILDCARD_LEVELS:
        if index < len(levels):
            levels[index] = "+"
    return "/".join(levels)


def build_routes(specs: Iterable[DeviceSpec]) -> dict[str, DeviceSpec]:
    """Map each topic filter to its spec; RegistryError on a malformed or shared filter."""
    routes: dict[str, DeviceSpec] = {}
    for spec in specs:
        for topic_filter in spec.topic_filters:
            levels = topic_filter.split("/")
            literal = [lvl for i, lvl in enumerate(levels) if i not in _WILDCARD_LEVELS]
            if topic_shape(topic_filter) != topic_filter or any(
                not lvl or "+" in lvl or "#" in lvl for lvl in literal
            ):
                raise RegistryError(
                    f"{spec.family.value}: filter {topic_filter!r} must have '+' exactly at "
                    "the organisation and device levels and literals elsewhere"
                )
            other = routes.get(topic_filter)
            if other is not None:
                raise RegistryError(
                    f"filter {topic_filter!r} is claimed by both {other.family.value} "
                    f"and {spec.family.value}"
                )
            routes[topic_filter] = spec
    return routes


_ROUTES: Mapping[str, DeviceSpec] = build_routes(SPECS)


def spec_for_topic(topic: str) -> DeviceSpec | None:
    """Return the spec whose filter matches ``topic``, or None if no family claims it."""
    return _ROUTES.get(topic_shape(topic))

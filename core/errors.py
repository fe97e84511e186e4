"""The gateway's exception tree.

    GatewayError                  root of everything the gateway raises on purpose
    ├── ConfigError               a configuration file or value is wrong (names file and key)
    ├── DecodeError               a payload cannot become an event (carries a short reason code)
    ├── RegistryError             a device or registry file is wrong or unknown
    ├── StorageUnavailable        PostgreSQL cannot be reached or refused a write
    └── ServiceError              an embedded broker or database could not be started

Library errors are translated at each boundary with ``raise … from``.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Root of all errors raised on purpose by welfare-gateway."""


class ConfigError(GatewayError):
    """A configuration file or value is invalid; the message names the file and key."""


class DecodeError(GatewayError):
    """A payload could not be decoded into events.

    ``reason`` is a short stable code stored in the dead-letter table (for
    example ``invalid_json`` or ``xml_entities_forbidden``); the message says
    what was wrong in words.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class RegistryError(GatewayError):
    """A device registry file or entry is invalid."""


class StorageUnavailable(GatewayError):
    """PostgreSQL is unreachable or refused a write."""


class ServiceError(GatewayError):
    """An embedded broker or database could not be started or stopped."""

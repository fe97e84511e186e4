"""Settings: one pydantic-settings class with nested sections, read from TOML and WGW_* env."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    IPvAnyNetwork,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from core.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttSettings(_Section):
    """Where the broker is and how the gateway's session behaves."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: str | None = None
    password: str | None = None
    client_id: Annotated[str, Field(min_length=1, max_length=64)] = "wgw-gateway"
    # 5 for MQTT 5 (Receive Maximum, session expiry); 4 for 3.1.1 brokers.
    protocol: Literal[4, 5] = 5
    # How long the broker keeps our session (and queues for us) while we are away.
    session_expiry_s: Annotated[int, Field(ge=60)] = 7 * 24 * 3600
    # Unacknowledged QoS 1 messages the broker may have in flight to us: the
    # bound on gateway memory and the back-pressure towards the broker.
    # 4,000 with 2,000-row batches kept the drain rate of 10,000/5,000 and
    # brought RSS with 100,000 devices under 150 MB (wgw bench, this machine).
    receive_maximum: Annotated[int, Field(ge=10, le=65535)] = 4_000
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    reconnect_max_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    # Optional MQTT 5 shared-subscription group, for several gateway processes.
    share_group: str | None = None
    # TLS to the broker (deploy/mosquitto-tls.conf, port 8883): set the CA that signed
    # the broker's certificate. The broker's name must match mqtt.host (checked).
    tls_ca_file: FilePath | None = None
    # Optional client certificate and its key, for a broker that asks for one.
    tls_cert_file: FilePath | None = None
    tls_key_file: FilePath | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> MqttSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("mqtt.tls_cert_file and mqtt.tls_key_file go together: set both")
        if self.tls_cert_file is not None and self.tls_ca_file is None:
            raise ValueError("mqtt.tls_cert_file needs mqtt.tls_ca_file (the broker's CA)")
        return self


class DatabaseSettings(_Section):
    """How to reach PostgreSQL."""

    dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    pool_min: Annotated[int, Field(ge=1)] = 1
    pool_max: Annotated[int, Field(ge=1)] = 4
    # How long start-up waits for PostgreSQL before giving up with a clear message.
    connect_timeout_s: Annotated[float, Field(gt=0)] = 60.0
    # Events as a TimescaleDB hypertable: "auto" when the server can load the
    # extension (installed and in shared_preload_libraries), else native
    # partitions with one log line saying why; "on" refuses to start without
    # it; "off" always native. Chosen once, when the events table is made.
    timescaledb: Literal["auto", "on", "off"] = "auto"


class IngestSettings(_Section):
    """Batching and plausibility limits of the ingest pipeline."""

    batch_max: Annotated[int, Field(ge=1, le=100_000)] = 2_000
    # Longest a message waits for its batch to fill before it is decoded, judged
    # by the rules and queued for writing. Short, because alarms wait for it;
    # the writer then commits whatever queued up meanwhile in one transaction.
    # 5 ms: console p99 36-60 ms at 10,000 msg/s, against 97 ms at 20 ms (wgw bench).
    batch_linger_ms: Annotated[int, Field(ge=1, le=10_000)] = 5
    # Device time this far ahead of the gateway clock is a broken clock.
    max_future_skew_s: Annotated[int, Field(ge=0)] = 300
    # Device time older than this is refused (locks sync hours late, not months).
    max_age_days: Annotated[int, Field(ge=1)] = 30
    # How often the in-memory registry is refreshed from PostgreSQL.
    registry_refresh_s: Annotated[float, Field(gt=0)] = 5.0
    # How often storage tries PostgreSQL again while it is away. No back-off:
    # the spool holds everything meanwhile, and storing resumes within this
    # long of PostgreSQL answering again.
    storage_retry_s: Annotated[float, Field(gt=0, le=60)] = 0.5


class SpoolSettings(_Section):
    """The local durable spool between the broker and PostgreSQL."""

    # Where messages are kept from acknowledgement until PostgreSQL has them.
    # On the gateway's own disk; one directory per gateway process.
    dir: Path = Path("/var/lib/wgw/spool")
    # At this size acknowledgements stop (the broker keeps the rest) and the
    # operators are told. 2 GiB holds about 10 million heartbeats: well over
    # a night of a large municipality with PostgreSQL away.
    max_bytes: Annotated[int, Field(ge=1024 * 1024)] = 2 * 1024**3
    # Segment files; drained data is released a whole segment at a time.
    segment_bytes: Annotated[int, Field(ge=64 * 1024, le=1024**3)] = 16 * 1024 * 1024


class RulesSettings(_Section):
    """Which rule set the engine runs and how often its timers are checked."""

    # Overrides on top of the packaged default rule set, for every organisation...
    file: Path | None = None
    # ... or for one organisation: its own overrides instead (org id → file).
    org_files: dict[str, Path] = {}
    tick_s: Annotated[float, Field(gt=0, le=60)] = 1.0


class ApiSettings(_Section):
    """The HTTP API and console served beside ingest."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080  # 0: any free port (tests)
    # A night shift plus margin; a session is refused after this and the user logs in again.
    session_hours: Annotated[float, Field(gt=0, le=24)] = 12.0
    # Send cookies only over HTTPS. Turn off only for plain-HTTP use on one machine.
    secure_cookies: bool = True
    # Failed logins per account before it must wait (per window).
    login_attempts: Annotated[int, Field(ge=1, le=100)] = 5
    # Failed logins per real client address (any accounts) before it must wait:
    # higher, as several staff may share one address (a NAT, a care home's network).
    login_attempts_per_address: Annotated[int, Field(ge=1, le=10_000)] = 30
    login_window_s: Annotated[float, Field(gt=0)] = 900.0
    # An alert open and not acknowledged this long counts as stale in the report.
    stale_after_min: Annotated[int, Field(ge=1)] = 30
    # The report's night, local time (Europe/Stockholm), from this hour to the
    # next, for an organisation whose rule set names no `night` window (it wins).
    night_starts_hour: Annotated[int, Field(ge=0, le=23)] = 22
    night_ends_hour: Annotated[int, Field(ge=0, le=23)] = 7
    # Battery at or below this percentage shows in the device-health panel.
    battery_low_percent: Annotated[int, Field(ge=1, le=100)] = 20
    # Reverse proxies (addresses or CIDRs) whose X-Forwarded-For/-Proto are believed;
    # from any other peer they are ignored. Empty: the peer is the client.
    trusted_proxies: tuple[IPvAnyNetwork, ...] = ()


class ScaipSettings(_Section):
    """The SCAIP receiver: SIP MESSAGE from social-alarm units over UDP, TCP and TLS."""

    host: str = "127.0.0.1"
    # UDP and TCP share this port (5060 is SIP's); 0: any free port (tests).
    port: Annotated[int, Field(ge=0, le=65535)] = 5060
    # SIP over TLS on its own port, when a certificate and its key are set.
    tls_port: Annotated[int, Field(ge=0, le=65535)] = 5061
    tls_cert_file: FilePath | None = None
    tls_key_file: FilePath | None = None
    # Source networks a unit may send from; empty: any. A refused source gets 403.
    allow_from: tuple[IPvAnyNetwork, ...] = ()
    # Where the <mrs> goes unless the device's registry entry says otherwise:
    # "body" in the 200 OK, "message" as a separate MESSAGE back to the unit.
    reply: Literal["body", "message"] = "body"
    # The digest realm for devices with SIP credentials in the registry.
    realm: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")] = "wgw"
    # A whole SIP request larger than this is refused (413 over UDP/TCP framing);
    # SCAIP bodies are capped at 8 KiB by the adapter, headers take the rest.
    max_message_bytes: Annotated[int, Field(ge=1024, le=65_000)] = 16 * 1024
    # The UDP socket's receive and send buffers: 2,000 MESSAGE/s of ~600 bytes queue
    # while an fsync runs, and the kernel's ~208 KiB default drops them. The kernel
    # grants at most net.core.rmem_max / wmem_max; the size granted is logged.
    udp_buffer_bytes: Annotated[int, Field(ge=64 * 1024, le=256 * 1024 * 1024)] = 4 * 1024 * 1024

    @model_validator(mode="after")
    def _tls_pair(self) -> ScaipSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("scaip.tls_cert_file and scaip.tls_key_file go together: set both")
        return self


StaffRole = Literal["operator", "coordinator", "auditor", "admin"]

# The push services of the browsers staff use (Chrome/Android, Firefox, Safari/iOS, Edge):
# the gateway POSTs only to these, so an account cannot make it call any other host.
PUSH_SERVICE_HOSTS = (
    "fcm.googleapis.com",
    "android.googleapis.com",
    "push.services.mozilla.com",
    "push.apple.com",
    "notify.windows.com",
)


class PushSettings(_Section):
    """Web Push to staff phones with the console closed (RFC 8030, RFC 8291, RFC 8292)."""

    enabled: bool = True
    # The VAPID key (PEM, EC P-256) every push is signed with; browsers bind their
    # subscriptions to its public half. Unset: made on first start and kept as
    # vapid_private_key.pem in the gateway's state directory (the parent of
    # spool.dir), so a restart keeps every subscription working. Set it when
    # several gateway processes serve the console: they must all sign alike.
    vapid_private_key_file: Path | None = None
    # Who runs this gateway, for push services to contact (the VAPID "sub" claim).
    contact: Annotated[str, Field(pattern=r"^(mailto:[^@\s]+@[^@\s]+|https://\S+)$")] = (
        "mailto:drift@localhost"
    )
    # The priorities each role is paged for on the phone; escalations reach the
    # roles (or groups) the escalation names, whatever their priority.
    paged_priorities: dict[StaffRole, tuple[Annotated[int, Field(ge=1, le=4)], ...]] = {
        "operator": (1, 2),
        "coordinator": (1, 2),
    }
    # Hosts (and their subdomains) a subscription's endpoint may name.
    service_hosts: tuple[str, ...] = PUSH_SERVICE_HOSTS
    # A push still undelivered after this long is dropped by the push service: an
    # alarm that surfaces much later would mislead (the console shows what is now).
    ttl_s: Annotated[int, Field(ge=0, le=86_400)] = 900
    # A push service that does not answer within this long is given up on for that push.
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 10.0
    # Pushes waiting to be sent; beyond this, new ones are dropped (and logged),
    # never waited for: the alarm path must not slow down behind a push service.
    queue_max: Annotated[int, Field(ge=1, le=100_000)] = 1_000
    # Pushes sent at once (each in a thread of its own).
    senders: Annotated[int, Field(ge=1, le=32)] = 4


class Settings(BaseSettings):
    """All gateway settings: TOML file first, then WGW_SECTION__KEY environment overrides."""

    model_config = SettingsConfigDict(
        env_prefix="WGW_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    mqtt: MqttSettings = MqttSettings()
    db: DatabaseSettings = DatabaseSettings()
    ingest: IngestSettings = IngestSettings()
    spool: SpoolSettings = SpoolSettings()
    rules: RulesSettings = RulesSettings()
    api: ApiSettings = ApiSettings()
    # The SCAIP receiver runs only when this section is present.
    scaip: ScaipSettings | None = None
    push: PushSettings = PushSettings()
    # A throwaway installation: plain-HTTP cookies on this machine are allowed.
    demo: bool = False

    @model_validator(mode="after")
    def _pool_bounds(self) -> Settings:
        if self.spool.segment_bytes * 4 > self.spool.max_bytes:
            raise ValueError("spool.segment_bytes must be at most a quarter of spool.max_bytes")
        if self.db.pool_min > self.db.pool_max:
            raise ValueError("db.pool_min must not exceed db.pool_max")
        if self.api.enabled and not self.api.secure_cookies and not _is_loopback(self.api.host):
            raise ValueError(
                "api.secure_cookies = false sends session cookies in clear text; it is allowed "
                "only when api.host is a loopback address (127.0.0.1, ::1, localhost)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Let environment variables override the file's values."""
        return (env_settings, init_settings)


def _is_loopback(host: str) -> bool:
    return host in {"localhost", "::1"} or host.startswith("127.")


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read settings from a TOML file and the environment; errors name the file and key."""
    data: dict[str, Any] = {}
    source = str(path) if path else "environment"
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    for section, values in overrides.items():
        if isinstance(values, dict):
            data.setdefault(section, {}).update(values)
        else:
            data[section] = values
    try:
        return Settings(**data)
    except ValidationError as exc:
        problems = "; ".join(
            f"key {'.'.join(str(p) for p in err['loc']) or '?'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from exc

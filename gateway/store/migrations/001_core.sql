-- Devices, dead letters and the migration bookkeeping's companions.

CREATE TABLE devices (
    device_id            text PRIMARY KEY,
    family               text NOT NULL CHECK (family IN ('alarm', 'sensor', 'lock', 'dispenser')),
    org                  text NOT NULL,
    unit                 text NOT NULL DEFAULT '',
    heartbeat_interval_s integer NOT NULL DEFAULT 60 CHECK (heartbeat_interval_s > 0),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_org_idx ON devices (org, family);

-- Everything that could not become an event, with the bytes as they came.
-- One row per distinct (topic, payload): a broker redelivery after a crash
-- must not count as a second bad message.
CREATE TABLE dead_letters (
    id              bigserial PRIMARY KEY,
    received_at     timestamptz NOT NULL,
    topic           text NOT NULL,
    payload         bytea NOT NULL,
    payload_size    integer NOT NULL,
    message_sha256  bytea NOT NULL UNIQUE,
    reason          text NOT NULL,
    detail          text NOT NULL,
    org             text,
    device_id       text
);
CREATE INDEX dead_letters_received_idx ON dead_letters (received_at);
CREATE INDEX dead_letters_reason_idx ON dead_letters (reason);

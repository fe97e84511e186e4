-- The events table on TimescaleDB: the same columns and key as the native
-- variant, as a hypertable with compression and retention. The only
-- TimescaleDB-specific statements in the schema are in this file.

CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE events (
    occurred_at  timestamptz NOT NULL,
    device_id    text NOT NULL,
    event_id     text NOT NULL,
    received_at  timestamptz NOT NULL,
    stored_at    timestamptz NOT NULL DEFAULT now(),
    org          text NOT NULL,
    family       text NOT NULL,
    kind         text NOT NULL,
    actor        text,
    device_time  boolean NOT NULL DEFAULT true,
    attributes   jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (device_id, event_id, occurred_at)
);
CREATE INDEX events_org_kind_idx ON events (org, kind, occurred_at);

SELECT create_hypertable('events', 'occurred_at', chunk_time_interval => interval '7 days');
ALTER TABLE events SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id',
    timescaledb.compress_orderby = 'occurred_at DESC'
);
-- Compress a week after the fact: late lock logs arrive within hours.
SELECT add_compression_policy('events', interval '7 days');
-- Device events (not the access log, which is kept separately for five years).
SELECT add_retention_policy('events', interval '400 days');

-- The native variant manages partitions itself; here chunks are automatic.
CREATE FUNCTION wgw_ensure_event_partitions(from_ts timestamptz, to_ts timestamptz)
RETURNS integer LANGUAGE sql AS $$ SELECT 0 $$;

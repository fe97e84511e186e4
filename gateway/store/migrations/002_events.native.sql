-- The events table on plain PostgreSQL: monthly range partitions on device
-- time, BRIN on time inside each partition, and a default partition so that a
-- month nobody created yet never refuses a write.

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
    -- false when the device sent no time and occurred_at is the gateway's.
    device_time  boolean NOT NULL DEFAULT true,
    attributes   jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (device_id, event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);

CREATE INDEX events_occurred_brin ON events USING brin (occurred_at);
CREATE INDEX events_org_kind_idx ON events (org, kind, occurred_at);
CREATE TABLE events_default PARTITION OF events DEFAULT;

-- Create the monthly partitions covering [from_ts, to_ts); idempotent.
CREATE FUNCTION wgw_ensure_event_partitions(from_ts timestamptz, to_ts timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    month_start date := date_trunc('month', from_ts AT TIME ZONE 'UTC')::date;
    created integer := 0;
    name text;
BEGIN
    WHILE month_start < to_ts AT TIME ZONE 'UTC' LOOP
        name := format('events_%s', to_char(month_start, 'YYYY_MM'));
        IF to_regclass(name) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                name,
                month_start::timestamp AT TIME ZONE 'UTC',
                (month_start + interval '1 month')::timestamp AT TIME ZONE 'UTC');
            created := created + 1;
        END IF;
        month_start := (month_start + interval '1 month')::date;
    END LOOP;
    RETURN created;
END $$;

SELECT wgw_ensure_event_partitions(now() - interval '2 months', now() + interval '3 months');

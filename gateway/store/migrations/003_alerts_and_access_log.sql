-- Alerts with their full history, the rules engine's saved state, and the
-- tamper-evident access log.

CREATE TABLE alerts (
    alert_id      text PRIMARY KEY,
    org           text NOT NULL,
    device_id     text NOT NULL,
    rule_id       text NOT NULL,
    kind          text NOT NULL,
    priority      smallint NOT NULL,
    state         text NOT NULL,
    occurred_at   timestamptz NOT NULL,
    opened_at     timestamptz NOT NULL,
    paged_at      timestamptz,
    last_seen_at  timestamptz NOT NULL,
    count         integer NOT NULL DEFAULT 1,
    escalated     boolean NOT NULL DEFAULT false,
    late          boolean NOT NULL DEFAULT false,
    reason        text NOT NULL DEFAULT '',
    title         text NOT NULL DEFAULT '',
    event_id      text,
    match         text,
    outcome       text,
    closed_at     timestamptz
);
-- One open alert per (device, rule), across every gateway process.
CREATE UNIQUE INDEX alerts_one_open ON alerts (device_id, rule_id)
    WHERE state NOT IN ('resolved', 'cleared');
CREATE INDEX alerts_org_state_idx ON alerts (org, state, priority, opened_at);

-- Every state change is a row: who, when, from, to, note. Nothing in place.
CREATE TABLE alert_transitions (
    id          bigserial PRIMARY KEY,
    alert_id    text NOT NULL REFERENCES alerts (alert_id),
    at          timestamptz NOT NULL,
    actor       text NOT NULL,
    from_state  text,
    to_state    text NOT NULL,
    note        text NOT NULL DEFAULT ''
);
-- A batch replayed after a crash writes the same transitions again: once only.
CREATE UNIQUE INDEX alert_transitions_once ON alert_transitions (alert_id, to_state, at);

-- Many devices of one organisation silent together: one incident, not one alert each.
CREATE TABLE incidents (
    incident_id  text PRIMARY KEY,
    org          text NOT NULL,
    opened_at    timestamptz NOT NULL,
    cleared_at   timestamptz,
    device_ids   text[] NOT NULL,
    silent       text[] NOT NULL
);

-- The rules engine's pending timers, saved with the batch that changed them.
CREATE TABLE rule_state (
    name      text PRIMARY KEY,
    state     jsonb NOT NULL,
    saved_at  timestamptz NOT NULL DEFAULT now()
);

-- The access log: append-only, hash-chained per organisation.
CREATE TABLE access_log (
    org        text NOT NULL,
    seq        bigint NOT NULL,
    at         timestamptz NOT NULL,
    actor      text NOT NULL,
    action     text NOT NULL,
    subject    text NOT NULL,
    person     text,
    detail     jsonb NOT NULL DEFAULT '{}'::jsonb,
    prev_hash  text NOT NULL,
    hash       text NOT NULL,
    logged_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org, seq)
);
CREATE INDEX access_log_person_idx ON access_log (org, person, at);
CREATE INDEX access_log_subject_idx ON access_log (org, subject, at);
CREATE INDEX access_log_actor_idx ON access_log (org, actor, at);

-- Append-only for the application: changing or removing history takes a
-- deliberate act (disabling this trigger), which `wgw audit verify` exposes.
CREATE FUNCTION wgw_access_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'access_log is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE ON access_log
    FOR EACH ROW EXECUTE FUNCTION wgw_access_log_append_only();

-- The newest entry of each organisation's chain, kept apart from the chain:
-- appends lock this row (so two gateways append in turn), and verify compares
-- it with the chain's end, so cutting off the newest entries is seen too.
CREATE TABLE access_log_heads (
    org   text PRIMARY KEY,
    seq   bigint NOT NULL,
    hash  text NOT NULL
);

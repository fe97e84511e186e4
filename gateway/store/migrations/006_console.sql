-- The console and API: staff accounts, their sessions, comments on alerts,
-- who is handling each alert, and the area a device belongs to.

CREATE TABLE users (
    username       text PRIMARY KEY CHECK (username ~ '^[a-z0-9._-]{2,64}$'),
    display_name   text NOT NULL DEFAULT '',
    role           text NOT NULL CHECK (role IN ('operator', 'coordinator', 'auditor', 'admin')),
    -- The organisations the account may see; '*' for every one.
    orgs           text[] NOT NULL CHECK (cardinality(orgs) > 0),
    password_hash  text NOT NULL,  -- argon2id, with its parameters and salt
    disabled       boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Only a hash of the session token is kept, so a copy of this table logs nobody in.
CREATE TABLE sessions (
    token_sha256  bytea PRIMARY KEY,
    username      text NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    csrf_token    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX sessions_expiry_idx ON sessions (expires_at);

CREATE TABLE alert_comments (
    id        bigserial PRIMARY KEY,
    alert_id  text NOT NULL,
    at        timestamptz NOT NULL,
    actor     text NOT NULL,
    note      text NOT NULL CHECK (note <> '')
);
CREATE INDEX alert_comments_alert_idx ON alert_comments (alert_id, at);

-- The staff member who last moved the alert (acknowledged, en route, on site, resolved).
ALTER TABLE alerts ADD COLUMN handled_by text;
CREATE INDEX alerts_opened_idx ON alerts (org, opened_at);
CREATE INDEX alert_transitions_at_idx ON alert_transitions (at);

-- District or team the night patrol filters by ("Norr", "Centrum").
ALTER TABLE devices ADD COLUMN area text NOT NULL DEFAULT '';

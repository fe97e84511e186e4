-- Care context: while staff are inside a home, bed-exit and door events there
-- are recorded but not turned into alerts; each such hold is a row saying who
-- was there and why. Staff arriving during an open alert record its arrival.

CREATE TABLE suppressions (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL,
    org        text NOT NULL,
    device_id  text NOT NULL,
    event_id   text NOT NULL,
    kind       text NOT NULL,
    actor      text NOT NULL,
    reason     text NOT NULL,
    UNIQUE (device_id, event_id)
);

ALTER TABLE alerts ADD COLUMN arrived_at timestamptz;

-- Out of service ("på sjukhus", "bortrest"): a coordinator takes a person's
-- devices out of the rules for a while, with a reason, and it ends by itself.
CREATE TABLE shelves (
    id          bigserial PRIMARY KEY,
    org         text NOT NULL,
    device_id   text NOT NULL,
    reason      text NOT NULL CHECK (reason <> ''),
    shelved_by  text NOT NULL CHECK (shelved_by <> ''),
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL CHECK (ends_at > starts_at),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX shelves_device_idx ON shelves (device_id, ends_at);

-- A device that raises the same alert again and again within minutes.
ALTER TABLE alerts ADD COLUMN chattering boolean NOT NULL DEFAULT false;

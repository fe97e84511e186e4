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

-- Escalation with recipients: named groups of staff, and the tier an alert reached.

-- Named groups an account belongs to ("nattledning", "jour-norr"); an
-- escalation tier of the rule set may name one as "group:<name>".
-- Names as rules/model.py GROUP_NAME_PATTERN.
ALTER TABLE users ADD COLUMN groups text[] NOT NULL DEFAULT '{}'
    CHECK (array_position(groups, NULL) IS NULL
           AND array_to_string(groups, ' ') ~ '^([a-z][a-z0-9_-]{0,63}( |$))*$');

-- The escalation tier an alert reached (0: none) and whom that tier named...
ALTER TABLE alerts
    ADD COLUMN escalation_tier smallint NOT NULL DEFAULT 0 CHECK (escalation_tier >= 0),
    ADD COLUMN escalated_to text[] NOT NULL DEFAULT '{}';

-- ... and each tier as it was reached: when, and whom it named. Kept apart
-- from the transitions, since escalating moves no state.
CREATE TABLE alert_escalations (
    alert_id    text NOT NULL REFERENCES alerts (alert_id),
    tier        smallint NOT NULL CHECK (tier >= 1),
    at          timestamptz NOT NULL,
    recipients  text[] NOT NULL,
    PRIMARY KEY (alert_id, tier)
);

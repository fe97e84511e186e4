-- Escalation with recipients: named groups of staff, and the tier an alert reached.

-- Named groups an account belongs to ("nattledning", "jour-norr"); an
-- escalation tier of the rule set may name one as "group:<name>".
-- Names as rules/model.py GROUP_NAME_PATTERN.
ALTER TABLE users ADD COLUMN groups text[] NOT NULL DEFAULT '{}'
    CHECK (array_position(groups, NULL) IS NULL
           AND array_to_string(groups, ' ') ~ '^([a-z][a-z0-9_-]{0,63}( |$))*$');

-- The escalation tier an alert reached (0: none) and whom that tier named.
ALTER TABLE alerts
    ADD COLUMN escalation_tier smallint NOT NULL DEFAULT 0 CHECK (escalation_tier >= 0),
    ADD COLUMN escalated_to text[] NOT NULL DEFAULT '{}';

-- The alert detail and open handover: entry notes kept with each unit's
-- devices, takeovers in the trail, and earlier alerts of a home found fast.

-- Key box, door code, pets: what the night patrol needs to get in. Shown
-- only to roles that act on alarms, and every view is an access-log read.
ALTER TABLE devices ADD COLUMN entry_notes text NOT NULL DEFAULT '';

-- A takeover is a row of its own (from_state = to_state): the staff user
-- who handled the alert before; actor is the one who took it over.
ALTER TABLE alert_transitions ADD COLUMN took_over_from text;

-- The detail lists a home's alerts of the last 30 days, by its devices.
CREATE INDEX alerts_device_opened_idx ON alerts (device_id, opened_at);

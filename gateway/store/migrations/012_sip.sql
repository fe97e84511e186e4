-- SCAIP over SIP, per device: where the unit expects its <mrs> reply, and its
-- digest credentials as HA1 (MD5 of "device_id:realm:password"), never the
-- password itself. NULL: the [scaip] defaults, no authentication.
ALTER TABLE devices
    ADD COLUMN scaip_reply text CHECK (scaip_reply IN ('body', 'message')),
    ADD COLUMN sip_ha1     text CHECK (sip_ha1 ~ '^[0-9a-f]{32}$');

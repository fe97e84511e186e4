-- The console's language with each Web Push subscription: the gateway writes a
-- notification's text in it (the phone's own language may well be another).
ALTER TABLE push_subscriptions
    ADD COLUMN lang text NOT NULL DEFAULT 'sv' CHECK (lang IN ('sv', 'en'));

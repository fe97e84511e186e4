-- Web Push subscriptions (RFC 8030): where a member of staff's browser or
-- phone is reached with the console closed. A browser hands out one endpoint
-- per subscription; its keys (RFC 8291) let only that browser read a message.

CREATE TABLE push_subscriptions (
    endpoint    text PRIMARY KEY CHECK (endpoint ~ '^https?://' AND length(endpoint) <= 2048),
    username    text NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    p256dh      text NOT NULL CHECK (p256dh <> ''),  -- the browser's ECDH public key, base64url
    auth        text NOT NULL CHECK (auth <> ''),    -- the shared authentication secret, base64url
    user_agent  text NOT NULL DEFAULT '',            -- so a user can tell their devices apart
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX push_subscriptions_user_idx ON push_subscriptions (username);

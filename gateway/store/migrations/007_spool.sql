-- How far each gateway's local spool is stored. Written in the same
-- transaction as the journal entries it counts, so a restart knows exactly
-- which spooled entries PostgreSQL holds (staff actions and logged reads in
-- the journal are stored once, not again after a crash).

CREATE TABLE spool_progress (
    spool_id     text PRIMARY KEY,   -- the spool directory's own id (spool.id in it)
    journal_seq  bigint NOT NULL,    -- the last journal entry stored
    alarm_seq    bigint NOT NULL,    -- the lane positions that entry covers
    bulk_seq     bigint NOT NULL,
    stored_at    timestamptz NOT NULL DEFAULT now()
);

-- The access directory (staff, keys, shifts, grants, visit plans, consents) as
-- last imported: one validated document, replaced whole by each import.
CREATE TABLE access_directory (
    name         text PRIMARY KEY,
    document     jsonb NOT NULL,
    source       text NOT NULL,
    imported_at  timestamptz NOT NULL DEFAULT now()
);

-- Secrets of the installation: the same table as migrations/postgres/0010_installation_secrets.sql
-- (the comments there say what it holds).
CREATE TABLE installation_secrets (
    name        TEXT PRIMARY KEY,
    secret      BLOB NOT NULL CHECK (length(secret) >= 32),
    created_at  TEXT NOT NULL
) STRICT;

-- Secrets of the installation, kept in the one place every instance of it shares: the key that
-- signs the operator pages' session cookies (`pages_session`). The first server to start
-- creates it; deleting the row ends every session at the next start.
-- migrations/sqlite/0010_installation_secrets.sql defines the same table.
CREATE TABLE installation_secrets (
    name        TEXT PRIMARY KEY,
    secret      BYTEA NOT NULL CHECK (length(secret) >= 32),
    created_at  TIMESTAMPTZ NOT NULL
);

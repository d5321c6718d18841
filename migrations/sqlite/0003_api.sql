-- The REST API: the same tables, columns and indexes as migrations/postgres/0003_api.sql (the
-- comments there say which query each index serves).

CREATE TABLE api_keys (
    id              BLOB PRIMARY KEY,
    name            TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    secret_sha256   BLOB NOT NULL UNIQUE,
    prefix          TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    revoked_at      TEXT
) STRICT;

CREATE INDEX meters_user ON meters (user_id, id);
CREATE INDEX meters_status ON meters (status, id);
CREATE INDEX meters_region_overdue ON meters (region_id, overdue_at);
CREATE INDEX alarms_kind ON alarms (kind, id);

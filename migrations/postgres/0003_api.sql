-- The REST API: its keys, and the indexes its queries need (each names the query it serves).
-- migrations/sqlite/0003_api.sql defines the same tables, columns and indexes.

-- API keys. The secret is shown once, when the key is created; only its SHA-256 is kept.
CREATE TABLE api_keys (
    id              UUID PRIMARY KEY,
    name            TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    secret_sha256   BYTEA NOT NULL UNIQUE,
    -- The first characters of the secret, so people can tell their keys apart.
    prefix          TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    revoked_at      TIMESTAMPTZ
);

-- GET /meters?userId=…: a customer's meters, in id order.
CREATE INDEX meters_user ON meters (user_id, id);
-- GET /meters?status=…: meters in a state, in id order.
CREATE INDEX meters_status ON meters (status, id);
-- GET /connectivity?region=… and the silent count of GET /regions: a region's meters whose
-- overdue time has passed.
CREATE INDEX meters_region_overdue ON meters (region_id, overdue_at);
-- GET /alarms?kind=…: alarms of a kind, newest first.
CREATE INDEX alarms_kind ON alarms (kind, id);

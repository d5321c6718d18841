-- The OTAA root keys of meters, given at install (`joinEui`, `appKey`), for creating their
-- devices in ChirpStack when `[chirpstack]` API settings keep its device list in step with the
-- registry. Kept apart from `meters` so that no reading of a meter can carry its AppKey: only
-- the ChirpStack sync reads this table, and no API answer serves it.
-- migrations/sqlite/0015_device_keys.sql defines the same table.
CREATE TABLE device_keys (
    meter_id    BIGINT PRIMARY KEY REFERENCES meters (id) ON DELETE CASCADE,
    join_eui    TEXT NOT NULL CHECK (join_eui ~ '^[0-9a-f]{16}$'),
    app_key     TEXT NOT NULL CHECK (app_key ~ '^[0-9a-f]{32}$'),
    updated_at  TIMESTAMPTZ NOT NULL
);

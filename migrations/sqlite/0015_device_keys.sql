-- OTAA root keys of meters: the same table as migrations/postgres/0015_device_keys.sql (the
-- comments there say what it holds).
CREATE TABLE device_keys (
    meter_id    INTEGER PRIMARY KEY REFERENCES meters (id) ON DELETE CASCADE,
    join_eui    TEXT NOT NULL
        CHECK (length(join_eui) = 16 AND join_eui NOT GLOB '*[^0-9a-f]*'),
    app_key     TEXT NOT NULL
        CHECK (length(app_key) = 32 AND app_key NOT GLOB '*[^0-9a-f]*'),
    updated_at  TEXT NOT NULL
) STRICT;

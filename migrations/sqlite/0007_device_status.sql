-- The latest status each meter reported through ChirpStack's `status` event (its answer to a
-- DevStatusReq): battery and demodulation margin (migrations/postgres/0007_device_status.sql
-- defines the same). One row per meter; an older report never replaces a newer one.
CREATE TABLE device_status (
    meter_id        INTEGER PRIMARY KEY REFERENCES meters (id),
    -- 'battery' (with battery_percent), 'external' (mains powered) or 'unknown' (the device
    -- cannot measure its battery).
    power_source    TEXT NOT NULL CHECK (power_source IN ('battery', 'external', 'unknown')),
    battery_percent REAL CHECK (battery_percent BETWEEN 0 AND 100),
    margin_db       INTEGER NOT NULL,
    -- The time of the uplink that carried the answer.
    received_at     TEXT NOT NULL,
    CHECK ((power_source = 'battery') = (battery_percent IS NOT NULL))
) STRICT;

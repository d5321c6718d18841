-- Deleting part of a meter's data: the same as migrations/postgres/0011_data_deletion.sql
-- (the comments there explain each). SQLite cannot change a CHECK constraint, so
-- billing_revisions is rebuilt with the new reason; nothing references it.
CREATE TABLE billing_revisions_new (
    id                      INTEGER PRIMARY KEY,
    meter_id                INTEGER NOT NULL,
    kind                    TEXT NOT NULL,
    first_day               TEXT NOT NULL,
    revision                INTEGER NOT NULL CHECK (revision > 0),
    revised_at              TEXT NOT NULL,
    reason                  TEXT NOT NULL CHECK (reason IN ('lateReading', 'readingsDeleted')),
    reading_time            TEXT NOT NULL,
    old_quality             TEXT NOT NULL,
    old_gas_litres          INTEGER,
    old_energy_wh           INTEGER,
    quality                 TEXT NOT NULL
                            CHECK (quality IN ('measured', 'estimated', 'incomplete', 'invalid')),
    readings                INTEGER NOT NULL,
    gas_quality             TEXT CHECK (gas_quality IN ('measured', 'estimated', 'incomplete', 'invalid')),
    gas_litres              INTEGER,
    gas_register_start      INTEGER,
    gas_register_end        INTEGER,
    energy_quality          TEXT CHECK (energy_quality IN ('measured', 'estimated', 'incomplete', 'invalid')),
    energy_wh               INTEGER,
    energy_register_start   INTEGER,
    energy_register_end     INTEGER,
    FOREIGN KEY (meter_id, kind, first_day) REFERENCES billing_periods (meter_id, kind, first_day),
    UNIQUE (meter_id, kind, first_day, revision)
) STRICT;
INSERT INTO billing_revisions_new SELECT id, meter_id, kind, first_day, revision, revised_at,
    reason, reading_time, old_quality, old_gas_litres, old_energy_wh, quality, readings,
    gas_quality, gas_litres, gas_register_start, gas_register_end, energy_quality, energy_wh,
    energy_register_start, energy_register_end FROM billing_revisions;
DROP TABLE billing_revisions;
ALTER TABLE billing_revisions_new RENAME TO billing_revisions;
CREATE INDEX billing_revisions_meter ON billing_revisions (meter_id, id);

CREATE INDEX inspections_alarm ON inspections (alarm_id) WHERE alarm_id IS NOT NULL;
CREATE INDEX alarm_outbox_alarm ON alarm_outbox (alarm_id);

-- Erasing a customer's personal data finds their supply points by customer id.
CREATE INDEX supply_points_user ON supply_points (user_id);

-- A meter's life after installation: the same tables, columns and indexes as
-- migrations/postgres/0009_lifecycle.sql (the comments there explain each).

ALTER TABLE meters ADD COLUMN service_state TEXT NOT NULL DEFAULT 'in_service'
    CHECK (service_state IN ('in_service', 'removed', 'destroyed'));

CREATE TABLE supply_points (
    id              INTEGER PRIMARY KEY,
    region_id       TEXT NOT NULL REFERENCES regions (id),
    user_id         TEXT NOT NULL,
    usage_type      TEXT NOT NULL
        CHECK (usage_type IN ('residential', 'commercial', 'industrial', 'public')),
    address         TEXT,
    first_meter_id  INTEGER NOT NULL REFERENCES meters (id),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
) STRICT;
CREATE INDEX supply_points_first_meter ON supply_points (first_meter_id);

CREATE TABLE installations (
    id                  INTEGER PRIMARY KEY,
    supply_point_id     INTEGER NOT NULL REFERENCES supply_points (id),
    meter_id            INTEGER NOT NULL REFERENCES meters (id),
    installed_at        TEXT NOT NULL,
    removed_at          TEXT,
    opening_register    INTEGER,
    closing_register    INTEGER,
    CHECK (removed_at IS NULL OR removed_at >= installed_at),
    CHECK (removed_at IS NOT NULL OR closing_register IS NULL)
) STRICT;
CREATE UNIQUE INDEX installations_open_meter ON installations (meter_id) WHERE removed_at IS NULL;
CREATE UNIQUE INDEX installations_open_supply_point ON installations (supply_point_id)
    WHERE removed_at IS NULL;
CREATE INDEX installations_meter ON installations (meter_id, installed_at);
CREATE INDEX installations_supply_point ON installations (supply_point_id, installed_at);

CREATE TABLE meter_audit (
    id          INTEGER PRIMARY KEY,
    meter_id    INTEGER NOT NULL REFERENCES meters (id),
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN
        ('install', 'reinstall', 'change', 'retire', 'delete_readings', 'delete_alarms',
         'erase_customer')),
    before      TEXT NOT NULL,
    after       TEXT NOT NULL,
    reason      TEXT NOT NULL
) STRICT;
CREATE INDEX meter_audit_meter ON meter_audit (meter_id, id);

CREATE TABLE final_reports (
    id          INTEGER PRIMARY KEY,
    meter_id    INTEGER NOT NULL REFERENCES meters (id),
    outcome     TEXT NOT NULL CHECK (outcome IN ('renovation', 'destruction')),
    created_at  TEXT NOT NULL,
    report      TEXT NOT NULL
) STRICT;
CREATE INDEX final_reports_meter ON final_reports (meter_id, id);

INSERT INTO supply_points (id, region_id, user_id, usage_type, address, first_meter_id,
                           created_at, updated_at)
SELECT id, region_id, user_id, usage_type, NULL, id, created_at, created_at FROM meters;
-- Times are RFC 3339 text in one format, so the smaller text is the earlier time.
INSERT INTO installations (supply_point_id, meter_id, installed_at, opening_register)
SELECT m.id, m.id,
       min(m.created_at, COALESCE(
           (SELECT r.reading_time FROM readings r WHERE r.meter_id = m.id
            ORDER BY r.reading_time LIMIT 1), m.created_at)),
       (SELECT COALESCE(r.gas_volume_litres, r.energy_wh) FROM readings r
        WHERE r.meter_id = m.id ORDER BY r.reading_time LIMIT 1)
FROM meters m;

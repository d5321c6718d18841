-- A meter replaced at its supply point, or moved to another: the same tables, columns and
-- indexes as migrations/postgres/0012_replacement_displacement.sql (the comments there
-- explain each). SQLite cannot change a CHECK constraint, so meter_audit is copied into a
-- table with the new one.
CREATE TABLE meter_audit_new (
    id          INTEGER PRIMARY KEY,
    meter_id    INTEGER NOT NULL REFERENCES meters (id),
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN
        ('install', 'reinstall', 'change', 'retire', 'delete_readings', 'delete_alarms',
         'erase_customer', 'replace', 'displace')),
    before      TEXT NOT NULL,
    after       TEXT NOT NULL,
    reason      TEXT NOT NULL
) STRICT;
INSERT INTO meter_audit_new (id, meter_id, at, actor, action, before, after, reason)
SELECT id, meter_id, at, actor, action, before, after, reason FROM meter_audit;
DROP TABLE meter_audit;
ALTER TABLE meter_audit_new RENAME TO meter_audit;
CREATE INDEX meter_audit_meter ON meter_audit (meter_id, id);

CREATE TABLE displacements (
    id                      INTEGER PRIMARY KEY,
    meter_id                INTEGER NOT NULL REFERENCES meters (id),
    from_supply_point_id    INTEGER NOT NULL REFERENCES supply_points (id),
    to_supply_point_id      INTEGER NOT NULL REFERENCES supply_points (id),
    gas                     INTEGER NOT NULL,
    step                    TEXT NOT NULL CHECK (step IN
        ('final_reading', 'disconnect', 'close_installation', 'open_installation',
         'reconnect', 'done')),
    command_id              BLOB,
    step_started_at         TEXT NOT NULL,
    step_deadline           TEXT NOT NULL,
    step_timeout_secs       INTEGER NOT NULL,
    timed_out_at            TEXT,
    final_register          INTEGER,
    requested_by            TEXT NOT NULL,
    reason                  TEXT NOT NULL,
    created_at              TEXT NOT NULL,
    updated_at              TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX displacements_open_meter ON displacements (meter_id) WHERE step <> 'done';
CREATE INDEX displacements_meter ON displacements (meter_id, id);
CREATE INDEX displacements_open ON displacements (step_deadline) WHERE step <> 'done';

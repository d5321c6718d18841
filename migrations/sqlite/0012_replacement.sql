-- A meter replaced at its supply point: the same change as
-- migrations/postgres/0012_replacement.sql. SQLite cannot change a CHECK constraint, so
-- meter_audit is copied into a table with the new one.
CREATE TABLE meter_audit_new (
    id          INTEGER PRIMARY KEY,
    meter_id    INTEGER NOT NULL REFERENCES meters (id),
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN
        ('install', 'reinstall', 'change', 'retire', 'delete_readings', 'delete_alarms',
         'erase_customer', 'replace')),
    before      TEXT NOT NULL,
    after       TEXT NOT NULL,
    reason      TEXT NOT NULL
) STRICT;
INSERT INTO meter_audit_new (id, meter_id, at, actor, action, before, after, reason)
SELECT id, meter_id, at, actor, action, before, after, reason FROM meter_audit;
DROP TABLE meter_audit;
ALTER TABLE meter_audit_new RENAME TO meter_audit;
CREATE INDEX meter_audit_meter ON meter_audit (meter_id, id);

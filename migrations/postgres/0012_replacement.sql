-- A meter replaced at its supply point
-- (migrations/sqlite/0012_replacement.sql does the same).

-- The audit trail records a replacement (on the meter taken out and on the meter put in).
ALTER TABLE meter_audit DROP CONSTRAINT meter_audit_action_check;
ALTER TABLE meter_audit ADD CONSTRAINT meter_audit_action_check CHECK (action IN
    ('install', 'reinstall', 'change', 'retire', 'delete_readings', 'delete_alarms',
     'erase_customer', 'replace'));

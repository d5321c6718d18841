-- Deleting part of a meter's data (migrations/sqlite/0011_data_deletion.sql does the same).

-- A forced deletion of readings inside a closed billing period adds a revision of that
-- period, so a published figure never changes without a trace.
ALTER TABLE billing_revisions DROP CONSTRAINT billing_revisions_reason_check;
ALTER TABLE billing_revisions ADD CONSTRAINT billing_revisions_reason_check
    CHECK (reason IN ('lateReading', 'readingsDeleted'));

-- Deleting alarms detaches the visits that named them and drops their webhook deliveries:
-- both found by alarm, and the foreign keys checked without a scan of either table.
CREATE INDEX inspections_alarm ON inspections (alarm_id) WHERE alarm_id IS NOT NULL;
CREATE INDEX alarm_outbox_alarm ON alarm_outbox (alarm_id);

-- Erasing a customer's personal data finds their supply points by customer id.
CREATE INDEX supply_points_user ON supply_points (user_id);

-- Downlinks, clock synchronisation, self-test schedules and monitoring (SQLite dialect; the
-- comments in migrations/postgres/0002_downlinks.sql explain each change).

ALTER TABLE alarms ADD COLUMN occurrences INTEGER NOT NULL DEFAULT 1;
ALTER TABLE alarms ADD COLUMN last_raised_at TEXT;
ALTER TABLE alarms ADD COLUMN detail TEXT;
UPDATE alarms SET last_raised_at = raised_at;
UPDATE alarms SET state = 'cleared', cleared_at = received_at
WHERE state <> 'cleared' AND EXISTS (
    SELECT 1 FROM alarms b
    WHERE b.meter_id = alarms.meter_id AND b.kind = alarms.kind AND b.state <> 'cleared'
      AND b.id > alarms.id);
CREATE UNIQUE INDEX alarms_open ON alarms (meter_id, kind) WHERE state <> 'cleared';

ALTER TABLE meters ADD COLUMN clock_drift_ms INTEGER;
ALTER TABLE meters ADD COLUMN drift_measured_at TEXT;
ALTER TABLE meters ADD COLUMN valve INTEGER;
ALTER TABLE meters ADD COLUMN register_value INTEGER;
ALTER TABLE meters ADD COLUMN register_at TEXT;
ALTER TABLE meters ADD COLUMN daily_consumption_avg REAL;
ALTER TABLE meters ADD COLUMN consumption_samples INTEGER NOT NULL DEFAULT 0;
CREATE INDEX meters_overdue ON meters (overdue_at) WHERE status IN ('installed', 'active');

ALTER TABLE commands ADD COLUMN sent_at TEXT;
ALTER TABLE commands ADD COLUMN completed_at TEXT;
ALTER TABLE commands ADD COLUMN deadline_at TEXT;
ALTER TABLE commands ADD COLUMN result TEXT;
ALTER TABLE commands ADD COLUMN schedule_id INTEGER;
CREATE INDEX commands_open ON commands (meter_id, created_at)
    WHERE state IN ('pending', 'queued', 'sent');
CREATE INDEX commands_expiry ON commands (expires_at) WHERE state IN ('pending', 'queued');
CREATE INDEX commands_deadline ON commands (deadline_at) WHERE state = 'sent';

CREATE TABLE self_test_schedules (
    id                  INTEGER PRIMARY KEY,
    scope               TEXT NOT NULL CHECK (scope IN ('fleet', 'region', 'meter')),
    region_id           TEXT REFERENCES regions (id),
    meter_id            INTEGER REFERENCES meters (id),
    tests               INTEGER NOT NULL CHECK (tests BETWEEN 1 AND 255),
    interval_minutes    INTEGER NOT NULL CHECK (interval_minutes BETWEEN 15 AND 527040),
    next_run_at         TEXT NOT NULL,
    enabled             INTEGER NOT NULL,
    created_by          TEXT NOT NULL,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    CHECK ((scope = 'fleet' AND region_id IS NULL AND meter_id IS NULL)
        OR (scope = 'region' AND region_id IS NOT NULL AND meter_id IS NULL)
        OR (scope = 'meter' AND meter_id IS NOT NULL AND region_id IS NULL))
) STRICT;
CREATE INDEX self_test_schedules_due ON self_test_schedules (next_run_at) WHERE enabled;

CREATE TABLE schedule_runs (
    schedule_id     INTEGER NOT NULL REFERENCES self_test_schedules (id) ON DELETE CASCADE,
    due_at          TEXT NOT NULL,
    started_at      TEXT NOT NULL,
    commands        INTEGER NOT NULL,
    PRIMARY KEY (schedule_id, due_at)
) STRICT, WITHOUT ROWID;

CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT,
    expires_at  TEXT
) STRICT;
INSERT INTO leases (name, holder, expires_at) VALUES ('scheduler', NULL, NULL);

CREATE TABLE alarm_outbox (
    id              INTEGER PRIMARY KEY,
    alarm_id        INTEGER NOT NULL REFERENCES alarms (id),
    payload         TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at TEXT NOT NULL,
    delivered_at    TEXT,
    last_error      TEXT
) STRICT;
CREATE INDEX alarm_outbox_due ON alarm_outbox (next_attempt_at) WHERE delivered_at IS NULL;

-- Downlinks, clock synchronisation, self-test schedules and monitoring (PostgreSQL dialect;
-- migrations/sqlite/0002_downlinks.sql defines the same). Times are bound from the
-- application's clock, as in 0001.

-- One open alarm per meter and kind: a repeat counts an occurrence on the open one.
ALTER TABLE alarms ADD COLUMN occurrences INTEGER NOT NULL DEFAULT 1;
ALTER TABLE alarms ADD COLUMN last_raised_at TIMESTAMPTZ;
-- What raised it, in words (the rule's figures for server alarms).
ALTER TABLE alarms ADD COLUMN detail TEXT;
UPDATE alarms SET last_raised_at = raised_at;
-- Alarms stored before this rule: the newest open one of each meter and kind stays open.
UPDATE alarms a SET state = 'cleared', cleared_at = a.received_at
WHERE a.state <> 'cleared' AND EXISTS (
    SELECT 1 FROM alarms b
    WHERE b.meter_id = a.meter_id AND b.kind = a.kind AND b.state <> 'cleared' AND b.id > a.id);
-- Also how a meter's open alarm of a kind is found (to count a repeat, or to clear it).
CREATE UNIQUE INDEX alarms_open ON alarms (meter_id, kind) WHERE state <> 'cleared';

-- Clock drift measured from readings (meter clock − network reference).
ALTER TABLE meters ADD COLUMN clock_drift_ms BIGINT;
ALTER TABLE meters ADD COLUMN drift_measured_at TIMESTAMPTZ;
-- The valve as last reported (wire code), to notice changes.
ALTER TABLE meters ADD COLUMN valve SMALLINT;
-- The consumption register (gas litres or energy Wh) as last read, and the meter's trailing
-- average daily consumption, for the over-consumption rule.
ALTER TABLE meters ADD COLUMN register_value BIGINT;
ALTER TABLE meters ADD COLUMN register_at TIMESTAMPTZ;
ALTER TABLE meters ADD COLUMN daily_consumption_avg DOUBLE PRECISION;
ALTER TABLE meters ADD COLUMN consumption_samples INTEGER NOT NULL DEFAULT 0;
-- The silence sweep: reporting meters whose overdue time has passed.
CREATE INDEX meters_overdue ON meters (overdue_at) WHERE status IN ('installed', 'active');

ALTER TABLE commands ADD COLUMN sent_at TIMESTAMPTZ;
ALTER TABLE commands ADD COLUMN completed_at TIMESTAMPTZ;
-- A command answered by an uplink (read, info, self-test) fails if nothing came by then.
ALTER TABLE commands ADD COLUMN deadline_at TIMESTAMPTZ;
-- What completed it (JSON): the reading's time, the info, the self-test's outcome.
ALTER TABLE commands ADD COLUMN result TEXT;
-- The schedule that created it, if one did.
ALTER TABLE commands ADD COLUMN schedule_id BIGINT;
-- The dispatcher's query: a meter's unfinished commands, oldest first.
CREATE INDEX commands_open ON commands (meter_id, created_at)
    WHERE state IN ('pending', 'queued', 'sent');
-- The sweep: commands not handed over or not sent by their expiry.
CREATE INDEX commands_expiry ON commands (expires_at) WHERE state IN ('pending', 'queued');
-- The sweep: commands waiting for an answer past their deadline.
CREATE INDEX commands_deadline ON commands (deadline_at) WHERE state = 'sent';

-- Self-tests on a schedule: the whole fleet, a region or one meter.
CREATE TABLE self_test_schedules (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope               TEXT NOT NULL CHECK (scope IN ('fleet', 'region', 'meter')),
    region_id           TEXT REFERENCES regions (id),
    meter_id            BIGINT REFERENCES meters (id),
    -- The wire's test bits (PROTOCOL.md, fPort 10 opcode 3).
    tests               SMALLINT NOT NULL CHECK (tests BETWEEN 1 AND 255),
    interval_minutes    INTEGER NOT NULL CHECK (interval_minutes BETWEEN 15 AND 527040),
    next_run_at         TIMESTAMPTZ NOT NULL,
    enabled             BOOLEAN NOT NULL,
    created_by          TEXT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL,
    CHECK ((scope = 'fleet' AND region_id IS NULL AND meter_id IS NULL)
        OR (scope = 'region' AND region_id IS NOT NULL AND meter_id IS NULL)
        OR (scope = 'meter' AND meter_id IS NOT NULL AND region_id IS NULL))
);
-- The scheduler's query: enabled schedules that are due.
CREATE INDEX self_test_schedules_due ON self_test_schedules (next_run_at) WHERE enabled;

-- One row per schedule and due time: a second run of the same occurrence inserts nothing and
-- so creates no commands.
CREATE TABLE schedule_runs (
    schedule_id     BIGINT NOT NULL REFERENCES self_test_schedules (id) ON DELETE CASCADE,
    due_at          TIMESTAMPTZ NOT NULL,
    started_at      TIMESTAMPTZ NOT NULL,
    commands        INTEGER NOT NULL,
    PRIMARY KEY (schedule_id, due_at)
);

-- Work done by one instance at a time, taken with a conditional UPDATE.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT,
    expires_at  TIMESTAMPTZ
);
INSERT INTO leases (name, holder, expires_at) VALUES ('scheduler', NULL, NULL);

-- Alarms on their way out (webhook), written in the transaction that raised them and
-- delivered until accepted.
CREATE TABLE alarm_outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alarm_id        BIGINT NOT NULL REFERENCES alarms (id),
    payload         TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    delivered_at    TIMESTAMPTZ,
    last_error      TEXT
);
-- The delivery loop's query: undelivered entries that are due.
CREATE INDEX alarm_outbox_due ON alarm_outbox (next_attempt_at) WHERE delivered_at IS NULL;

-- meterhub schema, PostgreSQL dialect. Indexes exist only for queries the code runs; each
-- says which. migrations/sqlite/0001_initial.sql defines the same
-- tables and columns (a test compares them). Times are always bound from the application's
-- clock, never taken from the database's, so that an accelerated clock works end to end.

-- The utility's areas; every meter belongs to one.
CREATE TABLE regions (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

-- The meter registry.
CREATE TABLE meters (
    id                          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dev_eui                     TEXT NOT NULL UNIQUE CHECK (dev_eui ~ '^[0-9a-f]{16}$'),
    serial                      TEXT NOT NULL UNIQUE CHECK (serial ~ '^[0-9]{14}$'),
    body_number                 BIGINT NOT NULL,
    user_id                     TEXT NOT NULL,
    application_id              TEXT NOT NULL,
    region_id                   TEXT NOT NULL REFERENCES regions (id),
    usage_type                  TEXT NOT NULL
        CHECK (usage_type IN ('residential', 'commercial', 'industrial', 'public')),
    mode                        TEXT NOT NULL CHECK (mode IN ('credit', 'prepaid')),
    production_date             DATE NOT NULL,
    status                      TEXT NOT NULL
        CHECK (status IN ('installed', 'active', 'silent', 'disconnected', 'removed')),
    reporting_interval_minutes  INTEGER NOT NULL CHECK (reporting_interval_minutes BETWEEN 15 AND 10080),
    last_seen_at                TIMESTAMPTZ,
    battery_millivolts          INTEGER,
    battery_percent             SMALLINT,
    rssi                        INTEGER,
    snr                         DOUBLE PRECISION,
    -- When the meter counts as silent if nothing arrives: last seen + interval × tolerance.
    overdue_at                  TIMESTAMPTZ,
    -- From the meter's latest device-info message.
    firmware_version            TEXT,
    info_received_at            TIMESTAMPTZ,
    created_at                  TIMESTAMPTZ NOT NULL,
    updated_at                  TIMESTAMPTZ NOT NULL
);
-- A region's meters, page by page in id order.
CREATE INDEX meters_region ON meters (region_id, id);

-- Readings, one per meter and meter-clock time; partitioned by month (see storage/partitions).
-- valve, door: wire codes of PROTOCOL.md (valve 0 notFitted, 1 open, 2 closed, 3 fault; door
-- 0 notFitted, 1 closed, 2 open); flags: the wire's status bits.
CREATE TABLE readings (
    meter_id                        BIGINT NOT NULL REFERENCES meters (id),
    reading_time                    TIMESTAMPTZ NOT NULL,
    received_at                     TIMESTAMPTZ NOT NULL,
    gas_volume_litres               BIGINT,
    energy_wh                       BIGINT,
    voltage_decivolts               INTEGER,
    current_milliamps               BIGINT,
    gas_temperature_centi_celsius   INTEGER,
    gas_pressure_pa                 BIGINT,
    valve                           SMALLINT NOT NULL,
    door                            SMALLINT NOT NULL,
    battery_millivolts              INTEGER NOT NULL,
    battery_percent                 SMALLINT NOT NULL,
    flags                           INTEGER NOT NULL,
    f_cnt                           BIGINT,
    -- Also the index for a meter's readings over a time range.
    PRIMARY KEY (meter_id, reading_time)
) PARTITION BY RANGE (reading_time);
-- A safety net only: readings outside [now − 400 days, now + 1 day] are quarantined, and the
-- partition job moves any row found here into its month before creating that month.
CREATE TABLE readings_default PARTITION OF readings DEFAULT;

-- Self-test results, one per meter and meter-clock time; tests_run and tests_failed are the
-- wire's test bits (PROTOCOL.md, fPort 3). The key also serves a meter's results by time.
CREATE TABLE self_tests (
    meter_id                            BIGINT NOT NULL REFERENCES meters (id),
    meter_time                          TIMESTAMPTZ NOT NULL,
    received_at                         TIMESTAMPTZ NOT NULL,
    tests_run                           SMALLINT NOT NULL,
    tests_failed                        SMALLINT NOT NULL,
    battery_loaded_millivolts           INTEGER NOT NULL,
    battery_rest_millivolts             INTEGER NOT NULL,
    valve_travel_ms                     INTEGER NOT NULL,
    metrology_deviation_centi_percent   INTEGER NOT NULL,
    internal_temperature_centi_celsius  INTEGER NOT NULL,
    PRIMARY KEY (meter_id, meter_time)
);

-- Alarms from meters (source 'meter') and from meterhub's own rules (source 'server').
CREATE TABLE alarms (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    meter_id            BIGINT NOT NULL REFERENCES meters (id),
    kind                TEXT NOT NULL,
    source              TEXT NOT NULL CHECK (source IN ('meter', 'server')),
    raised_at           TIMESTAMPTZ NOT NULL,
    value               BIGINT,
    state               TEXT NOT NULL CHECK (state IN ('open', 'acknowledged', 'cleared')),
    received_at         TIMESTAMPTZ NOT NULL,
    acknowledged_at     TIMESTAMPTZ,
    acknowledged_by     TEXT,
    cleared_at          TIMESTAMPTZ,
    -- A replayed alarm is stored once.
    UNIQUE (meter_id, kind, raised_at)
);
-- Alarm lists filter by state, newest first (id order).
CREATE INDEX alarms_state ON alarms (state, id);

-- Messages that could not be used, kept with the reason, never silently dropped.
CREATE TABLE quarantine (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at     TIMESTAMPTZ NOT NULL,
    topic           TEXT NOT NULL,
    payload         BYTEA NOT NULL,
    -- SHA-256 of topic and payload: a redelivered message is kept once.
    digest          BYTEA NOT NULL UNIQUE,
    reason          TEXT NOT NULL,
    detail          TEXT NOT NULL,
    dev_eui         TEXT,
    replayed_at     TIMESTAMPTZ
);
-- The quarantine list filters by reason, newest first (id order).
CREATE INDEX quarantine_reason ON quarantine (reason, id);

-- Identities of events already applied, for exactly-once effects under at-least-once
-- delivery. A table of its own: a unique key on the event id cannot live on the
-- month-partitioned readings. Pruned after a retention window.
CREATE TABLE event_identities (
    event_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    received_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (event_id, event_type)
);
-- Pruning deletes by age.
CREATE INDEX event_identities_received ON event_identities (received_at);

-- Downlink commands: meterhub's own queue and the audit trail.
CREATE TABLE commands (
    id              UUID PRIMARY KEY,
    meter_id        BIGINT NOT NULL REFERENCES meters (id),
    kind            TEXT NOT NULL,
    fport           SMALLINT NOT NULL,
    payload         BYTEA NOT NULL,
    confirmed       BOOLEAN NOT NULL,
    requested_by    TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN
        ('pending', 'queued', 'sent', 'acknowledged', 'nacked', 'completed', 'failed', 'expired')),
    attempts        INTEGER NOT NULL,
    error           TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL
);
-- A meter's commands, newest first.
CREATE INDEX commands_meter ON commands (meter_id, created_at);

-- Field visits.
CREATE TABLE inspections (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    meter_id        BIGINT NOT NULL REFERENCES meters (id),
    alarm_id        BIGINT REFERENCES alarms (id),
    visited_at      TIMESTAMPTZ NOT NULL,
    inspector       TEXT NOT NULL,
    outcome         TEXT NOT NULL
        CHECK (outcome IN ('ok', 'repaired', 'replaced', 'tampered', 'no_access')),
    notes           TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL
);
-- A meter's visits, newest first.
CREATE INDEX inspections_meter ON inspections (meter_id, visited_at);

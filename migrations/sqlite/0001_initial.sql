-- meterhub schema, SQLite dialect: the same tables and columns as
-- migrations/postgres/0001_initial.sql (a test compares them; the comments there explain each
-- table). STRICT tables so that a wrong type is an error, not a silent conversion. Times are
-- RFC 3339 text in UTC, always bound from the application's clock: one format, so text order is
-- time order.

CREATE TABLE regions (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
) STRICT;

CREATE TABLE meters (
    id                          INTEGER PRIMARY KEY,
    dev_eui                     TEXT NOT NULL UNIQUE
        CHECK (length(dev_eui) = 16 AND dev_eui NOT GLOB '*[^0-9a-f]*'),
    serial                      TEXT NOT NULL UNIQUE
        CHECK (length(serial) = 14 AND serial NOT GLOB '*[^0-9]*'),
    body_number                 INTEGER NOT NULL,
    user_id                     TEXT NOT NULL,
    application_id              TEXT NOT NULL,
    region_id                   TEXT NOT NULL REFERENCES regions (id),
    usage_type                  TEXT NOT NULL
        CHECK (usage_type IN ('residential', 'commercial', 'industrial', 'public')),
    mode                        TEXT NOT NULL CHECK (mode IN ('credit', 'prepaid')),
    production_date             TEXT NOT NULL,
    status                      TEXT NOT NULL
        CHECK (status IN ('installed', 'active', 'silent', 'disconnected', 'removed')),
    reporting_interval_minutes  INTEGER NOT NULL CHECK (reporting_interval_minutes BETWEEN 15 AND 10080),
    last_seen_at                TEXT,
    battery_millivolts          INTEGER,
    battery_percent             INTEGER,
    rssi                        INTEGER,
    snr                         REAL,
    overdue_at                  TEXT,
    firmware_version            TEXT,
    info_received_at            TEXT,
    created_at                  TEXT NOT NULL,
    updated_at                  TEXT NOT NULL
) STRICT;
CREATE INDEX meters_region ON meters (region_id, id);

CREATE TABLE readings (
    meter_id                        INTEGER NOT NULL REFERENCES meters (id),
    reading_time                    TEXT NOT NULL,
    received_at                     TEXT NOT NULL,
    gas_volume_litres               INTEGER,
    energy_wh                       INTEGER,
    voltage_decivolts               INTEGER,
    current_milliamps               INTEGER,
    gas_temperature_centi_celsius   INTEGER,
    gas_pressure_pa                 INTEGER,
    valve                           INTEGER NOT NULL,
    door                            INTEGER NOT NULL,
    battery_millivolts              INTEGER NOT NULL,
    battery_percent                 INTEGER NOT NULL,
    flags                           INTEGER NOT NULL,
    f_cnt                           INTEGER,
    PRIMARY KEY (meter_id, reading_time)
) STRICT, WITHOUT ROWID;

CREATE TABLE self_tests (
    meter_id                            INTEGER NOT NULL REFERENCES meters (id),
    meter_time                          TEXT NOT NULL,
    received_at                         TEXT NOT NULL,
    tests_run                           INTEGER NOT NULL,
    tests_failed                        INTEGER NOT NULL,
    battery_loaded_millivolts           INTEGER NOT NULL,
    battery_rest_millivolts             INTEGER NOT NULL,
    valve_travel_ms                     INTEGER NOT NULL,
    metrology_deviation_centi_percent   INTEGER NOT NULL,
    internal_temperature_centi_celsius  INTEGER NOT NULL,
    PRIMARY KEY (meter_id, meter_time)
) STRICT, WITHOUT ROWID;

CREATE TABLE alarms (
    id                  INTEGER PRIMARY KEY,
    meter_id            INTEGER NOT NULL REFERENCES meters (id),
    kind                TEXT NOT NULL,
    source              TEXT NOT NULL CHECK (source IN ('meter', 'server')),
    raised_at           TEXT NOT NULL,
    value               INTEGER,
    state               TEXT NOT NULL CHECK (state IN ('open', 'acknowledged', 'cleared')),
    received_at         TEXT NOT NULL,
    acknowledged_at     TEXT,
    acknowledged_by     TEXT,
    cleared_at          TEXT,
    UNIQUE (meter_id, kind, raised_at)
) STRICT;
CREATE INDEX alarms_state ON alarms (state, id);

CREATE TABLE quarantine (
    id              INTEGER PRIMARY KEY,
    received_at     TEXT NOT NULL,
    topic           TEXT NOT NULL,
    payload         BLOB NOT NULL,
    digest          BLOB NOT NULL UNIQUE,
    reason          TEXT NOT NULL,
    detail          TEXT NOT NULL,
    dev_eui         TEXT,
    replayed_at     TEXT
) STRICT;
CREATE INDEX quarantine_reason ON quarantine (reason, id);

CREATE TABLE event_identities (
    event_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    PRIMARY KEY (event_id, event_type)
) STRICT, WITHOUT ROWID;
CREATE INDEX event_identities_received ON event_identities (received_at);

CREATE TABLE commands (
    id              BLOB PRIMARY KEY,
    meter_id        INTEGER NOT NULL REFERENCES meters (id),
    kind            TEXT NOT NULL,
    fport           INTEGER NOT NULL,
    payload         BLOB NOT NULL,
    confirmed       INTEGER NOT NULL,
    requested_by    TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN
        ('pending', 'queued', 'sent', 'acknowledged', 'nacked', 'completed', 'failed', 'expired')),
    attempts        INTEGER NOT NULL,
    error           TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL
) STRICT;
CREATE INDEX commands_meter ON commands (meter_id, created_at);

CREATE TABLE inspections (
    id              INTEGER PRIMARY KEY,
    meter_id        INTEGER NOT NULL REFERENCES meters (id),
    alarm_id        INTEGER REFERENCES alarms (id),
    visited_at      TEXT NOT NULL,
    inspector       TEXT NOT NULL,
    outcome         TEXT NOT NULL
        CHECK (outcome IN ('ok', 'repaired', 'replaced', 'tampered', 'no_access')),
    notes           TEXT NOT NULL,
    created_at      TEXT NOT NULL
) STRICT;
CREATE INDEX inspections_meter ON inspections (meter_id, visited_at);

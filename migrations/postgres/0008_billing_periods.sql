-- Closed billing periods (migrations/sqlite/0008_billing_periods.sql defines the same). Once a
-- period is past its grace ([billing] grace_days after it ends in the meter's billing time
-- zone) the scheduler freezes each meter's figure here: that row is the published figure, and
-- it never changes. One row per meter, period kind and first local date.
CREATE TABLE billing_periods (
    meter_id                BIGINT NOT NULL REFERENCES meters (id),
    kind                    TEXT NOT NULL CHECK (kind IN ('day', 'week', 'month')),
    -- The period's first date in its time zone.
    first_day               DATE NOT NULL,
    period_start            TIMESTAMPTZ NOT NULL,
    period_end              TIMESTAMPTZ NOT NULL,
    quality                 TEXT NOT NULL
                            CHECK (quality IN ('measured', 'estimated', 'incomplete', 'invalid')),
    readings                INTEGER NOT NULL,
    -- NULL: the meter had no such register in its readings.
    gas_quality             TEXT CHECK (gas_quality IN ('measured', 'estimated', 'incomplete', 'invalid')),
    gas_litres              BIGINT,
    gas_register_start      BIGINT,
    gas_register_end        BIGINT,
    energy_quality          TEXT CHECK (energy_quality IN ('measured', 'estimated', 'incomplete', 'invalid')),
    energy_wh               BIGINT,
    energy_register_start   BIGINT,
    energy_register_end     BIGINT,
    closed_at               TIMESTAMPTZ NOT NULL,
    -- Also a meter's closed periods by kind and date.
    PRIMARY KEY (meter_id, kind, first_day)
);
-- The closing's progress (the latest period closed, the last meter closed in it) and a
-- billing run's closed rows for a range of meters.
CREATE INDEX billing_periods_closing ON billing_periods (kind, first_day, meter_id);

-- A closed figure that a late reading changed: the published row keeps its figure and gains
-- revisions, numbered from 1; old_* is the figure before this revision (the published one or
-- the previous revision's).
CREATE TABLE billing_revisions (
    id                      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    meter_id                BIGINT NOT NULL,
    kind                    TEXT NOT NULL,
    first_day               DATE NOT NULL,
    revision                INTEGER NOT NULL CHECK (revision > 0),
    revised_at              TIMESTAMPTZ NOT NULL,
    reason                  TEXT NOT NULL CHECK (reason IN ('lateReading')),
    -- The earliest late reading that led to it.
    reading_time            TIMESTAMPTZ NOT NULL,
    old_quality             TEXT NOT NULL,
    old_gas_litres          BIGINT,
    old_energy_wh           BIGINT,
    quality                 TEXT NOT NULL
                            CHECK (quality IN ('measured', 'estimated', 'incomplete', 'invalid')),
    readings                INTEGER NOT NULL,
    gas_quality             TEXT CHECK (gas_quality IN ('measured', 'estimated', 'incomplete', 'invalid')),
    gas_litres              BIGINT,
    gas_register_start      BIGINT,
    gas_register_end        BIGINT,
    energy_quality          TEXT CHECK (energy_quality IN ('measured', 'estimated', 'incomplete', 'invalid')),
    energy_wh               BIGINT,
    energy_register_start   BIGINT,
    energy_register_end     BIGINT,
    FOREIGN KEY (meter_id, kind, first_day) REFERENCES billing_periods (meter_id, kind, first_day),
    -- Two scheduler instances cannot both add revision n; also a period's revisions in order.
    UNIQUE (meter_id, kind, first_day, revision)
);
-- A meter's revisions, in the order they were made (keyset pages by id).
CREATE INDEX billing_revisions_meter ON billing_revisions (meter_id, id);

-- Readings stored when their time was already past a period's grace: they may change a
-- closed figure. The scheduler recomputes the closed periods around each and removes it.
CREATE TABLE billing_late_readings (
    meter_id                BIGINT NOT NULL REFERENCES meters (id),
    reading_time            TIMESTAMPTZ NOT NULL,
    received_at             TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (meter_id, reading_time)
);

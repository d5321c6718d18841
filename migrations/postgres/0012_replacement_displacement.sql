-- A meter replaced at its supply point, or moved to another
-- (migrations/sqlite/0012_replacement_displacement.sql does the same).

-- The audit trail records a replacement (on the meter taken out and on the meter put in) and
-- a displacement (on the meter moved).
ALTER TABLE meter_audit DROP CONSTRAINT meter_audit_action_check;
ALTER TABLE meter_audit ADD CONSTRAINT meter_audit_action_check CHECK (action IN
    ('install', 'reinstall', 'change', 'retire', 'delete_readings', 'delete_alarms',
     'erase_customer', 'replace', 'displace'));

-- A meter moved from one supply point to another, step by step: its final reading, the
-- valve closed (gas) or the supply disconnected, its installation closed, an installation
-- opened at the new supply point, the supply restored. Each step is done by a command
-- (command_id, followed to its acknowledgement) or an operator's confirmation; the row is the
-- workflow's whole state, so that a restarted server carries on where it stopped.
CREATE TABLE displacements (
    id                      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    meter_id                BIGINT NOT NULL REFERENCES meters (id),
    from_supply_point_id    BIGINT NOT NULL REFERENCES supply_points (id),
    to_supply_point_id      BIGINT NOT NULL REFERENCES supply_points (id),
    -- A gas meter closes and opens its valve; an electricity meter is disconnected.
    gas                     BOOLEAN NOT NULL,
    step                    TEXT NOT NULL CHECK (step IN
        ('final_reading', 'disconnect', 'close_installation', 'open_installation',
         'reconnect', 'done')),
    -- The command the current step waits for; NULL when it waits for an operator.
    command_id              UUID,
    step_started_at         TIMESTAMPTZ NOT NULL,
    -- Past it, the step has timed out: an alarm is raised once (timed_out_at).
    step_deadline           TIMESTAMPTZ NOT NULL,
    -- How long each step may take, seconds.
    step_timeout_secs       BIGINT NOT NULL,
    timed_out_at            TIMESTAMPTZ,
    -- The register read by the final reading, gas litres or energy Wh.
    final_register          BIGINT,
    requested_by            TEXT NOT NULL,
    reason                  TEXT NOT NULL,
    created_at              TIMESTAMPTZ NOT NULL,
    updated_at              TIMESTAMPTZ NOT NULL
);
-- A meter is moved by one workflow at a time.
CREATE UNIQUE INDEX displacements_open_meter ON displacements (meter_id) WHERE step <> 'done';
-- A meter's displacements.
CREATE INDEX displacements_meter ON displacements (meter_id, id);
-- The workflows the scheduler advances, by deadline.
CREATE INDEX displacements_open ON displacements (step_deadline) WHERE step <> 'done';

-- Commands ChirpStack holds without a word (migrations/postgres/0006_commands.sql defines the
-- same). ChirpStack says nothing when it drops a command (a rejoin flushes the device queue, a
-- command on the wrong application's topic is refused): the meter's uplinks since a command
-- was handed over (or transmitted, for a confirmed one awaiting its ack) are counted, and
-- after a configured number it is taken as lost and re-sent or failed.
ALTER TABLE commands ADD COLUMN uplinks_waited INTEGER NOT NULL DEFAULT 0;

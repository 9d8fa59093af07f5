-- A run's recorded payload bytes (what MAX_RUN_BYTES bounds) and each task's
-- attempts in a row lost to the process stopping (what MAX_ABANDONED bounds)
-- are part of the projection: folding the events gives them, so runs written
-- before this migration get theirs from their events.

-- +goose Up
ALTER TABLE runs ADD COLUMN data_bytes INTEGER NOT NULL DEFAULT 0 CHECK (data_bytes >= 0);
ALTER TABLE tasks ADD COLUMN abandoned INTEGER NOT NULL DEFAULT 0 CHECK (abandoned >= 0);
UPDATE runs SET data_bytes = (SELECT COALESCE(SUM(LENGTH(CAST(data AS BLOB))), 0) FROM events WHERE events.run_id = runs.id);

-- +goose Down
ALTER TABLE tasks DROP COLUMN abandoned;
ALTER TABLE runs DROP COLUMN data_bytes;

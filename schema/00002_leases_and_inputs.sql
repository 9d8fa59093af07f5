-- External workers lease attempts; a task's input may be resolved from the
-- run's input and upstream outputs when it becomes ready.

-- +goose Up
ALTER TABLE tasks ADD COLUMN input TEXT;
ALTER TABLE tasks ADD COLUMN worker_id TEXT;
ALTER TABLE tasks ADD COLUMN lease_expires_at TEXT;
ALTER TABLE tasks ADD COLUMN lease_hash TEXT;

-- +goose Down
ALTER TABLE tasks DROP COLUMN lease_hash;
ALTER TABLE tasks DROP COLUMN lease_expires_at;
ALTER TABLE tasks DROP COLUMN worker_id;
ALTER TABLE tasks DROP COLUMN input;

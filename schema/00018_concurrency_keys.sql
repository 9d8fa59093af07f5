-- The value of a run's concurrency key (its definition's "concurrency.key"
-- rendered from its input when it was created), so that the engine rebuilds
-- the active runs and the lines of each key when it starts. The key never
-- changes once the run exists; runs written before this column have none.

-- +goose Up
ALTER TABLE runs ADD COLUMN concurrency_key TEXT CHECK (concurrency_key IS NULL OR length(concurrency_key) BETWEEN 1 AND 256);

-- +goose Down
ALTER TABLE runs DROP COLUMN concurrency_key;

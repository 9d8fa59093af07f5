-- Indexes for the tenant-scoped list and audit queries, and idempotency keys
-- for starting runs.

-- +goose Up
CREATE INDEX runs_tenant_state_created ON runs (tenant_id, state, created_at, id);
CREATE INDEX runs_tenant_workflow_created ON runs (tenant_id, workflow, created_at, id);
CREATE INDEX events_tenant_type ON events (tenant_id, type, id);
CREATE INDEX events_tenant_actor ON events (tenant_id, actor, id);
CREATE INDEX events_tenant_at ON events (tenant_id, at, id);

-- A retried POST with the same Idempotency-Key returns the run the first one
-- started. The key row is written in the same transaction as the run.
CREATE TABLE idempotency_keys (
    tenant_id    TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    run_id       TEXT NOT NULL REFERENCES runs (id),
    created_at   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, key)
) WITHOUT ROWID;

-- +goose Down
DROP TABLE idempotency_keys;
DROP INDEX events_tenant_at;
DROP INDEX events_tenant_actor;
DROP INDEX events_tenant_type;
DROP INDEX runs_tenant_workflow_created;
DROP INDEX runs_tenant_state_created;

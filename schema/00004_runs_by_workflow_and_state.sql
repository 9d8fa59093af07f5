-- Listing a tenant's runs filtered by both workflow and status follows an
-- index instead of checking the state row by row.

-- +goose Up
CREATE INDEX runs_tenant_workflow_state_created ON runs (tenant_id, workflow, state, created_at, id);

-- +goose Down
DROP INDEX runs_tenant_workflow_state_created;

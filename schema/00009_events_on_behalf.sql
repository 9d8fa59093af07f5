-- Whom the actor of an event acted for: the X-Actor a key may name ("on
-- behalf of"), or the worker id of an external worker's report. The actor
-- itself is the API key (key:<id>:<name>) that made the call. Events recorded
-- before this column stay as they were: NULL, and their hashes unchanged
-- (the chain hash covers on_behalf only when it is set).

-- +goose Up
ALTER TABLE events ADD COLUMN on_behalf TEXT CHECK (on_behalf IS NULL OR length(on_behalf) BETWEEN 1 AND 256);
CREATE INDEX events_tenant_on_behalf ON events (tenant_id, on_behalf, id) WHERE on_behalf IS NOT NULL;

-- +goose Down
DROP INDEX events_tenant_on_behalf;
ALTER TABLE events DROP COLUMN on_behalf;

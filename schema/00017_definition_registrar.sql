-- Who registered each definition version, whom they acted for, and the
-- decision of the policy that allowed it (JSON: decision_id, allow,
-- reason, policy_hash), as the events of a run record theirs. Versions
-- stored before these columns have none.

-- +goose Up
ALTER TABLE workflows ADD COLUMN created_by TEXT;
ALTER TABLE workflows ADD COLUMN on_behalf TEXT;
ALTER TABLE workflows ADD COLUMN policy TEXT CHECK (policy IS NULL OR json_valid(policy));

-- +goose Down
ALTER TABLE workflows DROP COLUMN policy;
ALTER TABLE workflows DROP COLUMN on_behalf;
ALTER TABLE workflows DROP COLUMN created_by;

-- What started a run other than a direct API call: a schedule's slot, a
-- webhook delivery, a NATS or Kafka message (origin_kind, origin_id: the
-- schedule or trigger, origin_slot: a schedule's slot time, origin_ref: the
-- delivery, message or record), and the alias of the definition name its
-- version was chosen by. Set by run.created, never changed; runs recorded
-- before these columns have none.

-- +goose Up
ALTER TABLE runs ADD COLUMN origin_kind TEXT CHECK (origin_kind IS NULL OR origin_kind IN ('schedule', 'webhook', 'nats', 'kafka'));
ALTER TABLE runs ADD COLUMN origin_id TEXT CHECK ((origin_id IS NULL) = (origin_kind IS NULL));
ALTER TABLE runs ADD COLUMN origin_slot TEXT CHECK (origin_slot IS NULL OR origin_kind IS NOT NULL);
ALTER TABLE runs ADD COLUMN origin_ref TEXT CHECK (origin_ref IS NULL OR origin_kind IS NOT NULL);
ALTER TABLE runs ADD COLUMN alias TEXT;
CREATE INDEX runs_tenant_origin_kind ON runs (tenant_id, origin_kind, created_at, id) WHERE origin_kind IS NOT NULL;
CREATE INDEX runs_tenant_origin_id ON runs (tenant_id, origin_id, created_at, id) WHERE origin_id IS NOT NULL;

-- +goose Down
DROP INDEX runs_tenant_origin_id;
DROP INDEX runs_tenant_origin_kind;
ALTER TABLE runs DROP COLUMN alias;
ALTER TABLE runs DROP COLUMN origin_ref;
ALTER TABLE runs DROP COLUMN origin_slot;
ALTER TABLE runs DROP COLUMN origin_id;
ALTER TABLE runs DROP COLUMN origin_kind;

-- Triggers: webhooks, NATS JetStream and Kafka consumers that start runs of a
-- tenant's workflow. (tenant_id, name) names one; id is never reused, so that
-- the idempotency keys of its runs (trigger:<id>:<ref>) never match those of
-- an earlier trigger of the same name. Every change is recorded in admin_log
-- in the same transaction (trigger.created, trigger.updated, trigger.deleted).
-- secret: a webhook's HMAC key (github, stripe) or the SHA-256 of its bearer
-- token; the API never returns it.

-- +goose Up
CREATE TABLE triggers (
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id),
    name       TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 64 AND name NOT GLOB '*[^A-Za-z0-9_.-]*' AND name NOT IN ('.', '..')),
    id         TEXT    NOT NULL UNIQUE CHECK (length(id) BETWEEN 1 AND 64),
    kind       TEXT    NOT NULL CHECK (kind IN ('webhook', 'nats', 'kafka')),
    workflow   TEXT    NOT NULL CHECK (length(workflow) BETWEEN 1 AND 129),
    config     TEXT    NOT NULL CHECK (json_valid(config) AND json_type(config) = 'object'),
    secret     TEXT    CHECK ((secret IS NOT NULL) = (kind = 'webhook')),
    state      TEXT    NOT NULL CHECK (state IN ('enabled', 'disabled')),
    -- Compare-and-set: every update names the version it read.
    version    INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, name)
) WITHOUT ROWID;

-- +goose Down
DROP TABLE triggers;

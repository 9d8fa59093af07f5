-- Access control: registered tenants, API keys stored as hashes of their
-- secrets, and the append-only, hash-chained log of administrative actions.

-- +goose Up
CREATE TABLE tenants (
    id         TEXT    NOT NULL PRIMARY KEY
               CHECK (length(id) BETWEEN 1 AND 64 AND id NOT GLOB '*[^A-Za-z0-9_.-]*' AND id NOT IN ('.', '..')),
    name       TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 256),
    state      TEXT    NOT NULL CHECK (state IN ('active', 'suspended')),
    -- allow_exec and, later, quotas: a JSON object so that settings grow
    -- without a migration each.
    settings   TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(settings) AND json_type(settings) = 'object'),
    -- Compare-and-set: every update names the version it read.
    version    INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL
) WITHOUT ROWID;

-- The tenant every short /v1 route acts on, and every tenant that already has
-- data, so that nothing stored before becomes unreachable. The tenant default
-- and any tenant that already registered an exec definition keep exec tasks
-- allowed (the server's ENABLE_EXEC still gates them); tenants created later
-- start without.
INSERT INTO tenants (id, name, state, settings, created_at, updated_at)
VALUES ('default', 'default', 'active', '{"allow_exec":true}',
        strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'), strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'));
INSERT INTO tenants (id, name, state, settings, created_at, updated_at)
SELECT t.tenant_id, t.tenant_id, 'active',
       json_object('allow_exec', json(CASE WHEN EXISTS (
           SELECT 1 FROM workflows w, json_each(w.definition, '$.tasks') task
           WHERE w.tenant_id = t.tenant_id AND json_extract(task.value, '$.type') = 'exec') THEN 'true' ELSE 'false' END)),
       strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'), strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')
FROM (SELECT tenant_id FROM workflows UNION SELECT tenant_id FROM runs) t
WHERE t.tenant_id <> 'default'
  AND length(t.tenant_id) BETWEEN 1 AND 64 AND t.tenant_id NOT GLOB '*[^A-Za-z0-9_.-]*' AND t.tenant_id NOT IN ('.', '..');

-- An API key is orch_<id>_<secret>; only the SHA-256 of the secret is kept.
-- System keys (role admin) belong to no tenant; every other key to one.
CREATE TABLE api_keys (
    id           TEXT NOT NULL PRIMARY KEY CHECK (length(id) BETWEEN 12 AND 64 AND id NOT GLOB '*[^a-z0-9]*'),
    tenant_id    TEXT REFERENCES tenants (id),
    name         TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 64 AND name NOT GLOB '*[^A-Za-z0-9_.-]*'),
    role         TEXT NOT NULL CHECK (role IN ('admin', 'owner', 'operator', 'viewer', 'worker')),
    -- A worker key may name the task types it may lease; NULL is every type.
    task_types   TEXT CHECK (task_types IS NULL OR (json_valid(task_types) AND json_type(task_types) = 'array')),
    secret_hash  TEXT NOT NULL CHECK (length(secret_hash) = 64 AND secret_hash NOT GLOB '*[^0-9a-f]*'),
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    revoked_at   TEXT,
    last_used_at TEXT,
    CHECK ((tenant_id IS NULL) = (role = 'admin')),
    CHECK (task_types IS NULL OR role = 'worker')
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at, id);

-- Administrative actions (tenant created or suspended, key created or
-- revoked, policy loaded). id numbers the log 1..n without gaps; hash chains
-- each row to the one before it.
CREATE TABLE admin_log (
    id        INTEGER PRIMARY KEY CHECK (id >= 1),
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    tenant_id TEXT,
    action    TEXT NOT NULL CHECK (action GLOB '[a-z]*.[a-z]*'),
    data      TEXT CHECK (data IS NULL OR json_valid(data)),
    hash      TEXT NOT NULL CHECK (length(hash) = 64)
);
CREATE INDEX admin_log_tenant ON admin_log (tenant_id, id);

-- The log is append-only: the database itself refuses to change it.
CREATE TRIGGER admin_log_no_update BEFORE UPDATE ON admin_log
BEGIN SELECT RAISE(ABORT, 'admin_log is append-only'); END;
CREATE TRIGGER admin_log_no_delete BEFORE DELETE ON admin_log
BEGIN SELECT RAISE(ABORT, 'admin_log is append-only'); END;

-- +goose Down
DROP TABLE admin_log;
DROP TABLE api_keys;
DROP TABLE tenants;

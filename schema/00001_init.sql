-- The event log is the source of truth; runs and tasks are projections of it,
-- written in the same transaction as the events that cause them.

-- +goose Up
CREATE TABLE workflows (
    tenant_id  TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    version    INTEGER NOT NULL CHECK (version >= 1),
    definition TEXT    NOT NULL CHECK (json_valid(definition)),
    hash       TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, name, version)
) WITHOUT ROWID;

-- A stored definition version never changes: runs pin it.
CREATE TRIGGER workflows_no_update BEFORE UPDATE ON workflows
BEGIN SELECT RAISE(ABORT, 'workflows are immutable'); END;
CREATE TRIGGER workflows_no_delete BEFORE DELETE ON workflows
BEGIN SELECT RAISE(ABORT, 'workflows are immutable'); END;

CREATE TABLE runs (
    id         TEXT    NOT NULL PRIMARY KEY,
    tenant_id  TEXT    NOT NULL,
    workflow   TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    state      TEXT    NOT NULL CHECK (state IN ('pending', 'running', 'paused', 'completed', 'failed', 'cancelled', 'timed_out')),
    input      TEXT,
    output     TEXT,
    error      TEXT,
    created_at TEXT    NOT NULL,
    started_at TEXT,
    ended_at   TEXT,
    deadline   TEXT,
    updated_at TEXT    NOT NULL,
    last_seq   INTEGER NOT NULL CHECK (last_seq >= 1),
    last_hash  TEXT    NOT NULL,
    CHECK ((ended_at IS NOT NULL) = (state IN ('completed', 'failed', 'cancelled', 'timed_out'))),
    FOREIGN KEY (tenant_id, workflow, version) REFERENCES workflows (tenant_id, name, version)
);
CREATE INDEX runs_active ON runs (state) WHERE state IN ('pending', 'running', 'paused');
CREATE INDEX runs_tenant_created ON runs (tenant_id, created_at, id);

CREATE TABLE tasks (
    run_id     TEXT    NOT NULL REFERENCES runs (id),
    task_id    TEXT    NOT NULL,
    tenant_id  TEXT    NOT NULL,
    pos        INTEGER NOT NULL CHECK (pos >= 0),
    type       TEXT    NOT NULL,
    state      TEXT    NOT NULL CHECK (state IN ('pending', 'ready', 'running', 'completed', 'failed', 'skipped', 'cancelled', 'timed_out')),
    attempt    INTEGER NOT NULL CHECK (attempt >= 0),
    charged    INTEGER NOT NULL,
    ready_at   TEXT,
    not_before TEXT,
    started_at TEXT,
    ended_at   TEXT,
    wake_at    TEXT,
    error      TEXT,
    output     TEXT,
    PRIMARY KEY (run_id, task_id),
    CHECK ((ended_at IS NOT NULL) = (state IN ('completed', 'failed', 'skipped', 'cancelled', 'timed_out')))
) WITHOUT ROWID;

CREATE TABLE events (
    id        INTEGER PRIMARY KEY,
    tenant_id TEXT    NOT NULL,
    run_id    TEXT    NOT NULL,
    seq       INTEGER NOT NULL CHECK (seq >= 1),
    type      TEXT    NOT NULL,
    task_id   TEXT,
    attempt   INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    data      TEXT,
    at        TEXT    NOT NULL,
    hash      TEXT    NOT NULL,
    UNIQUE (run_id, seq)
);
CREATE INDEX events_tenant ON events (tenant_id, id);

-- The log is append-only: the database itself refuses to change history.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;

-- +goose Down
DROP TABLE events;
DROP TABLE tasks;
DROP TABLE runs;
DROP TABLE workflows;

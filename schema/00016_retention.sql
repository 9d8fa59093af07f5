-- Retention: finished runs older than their tenant's retention are archived
-- to files and removed from the live tables. A removed run leaves a
-- tombstone (what it was, how many events, its final hash, the archive
-- holding it and the SHA-256 of its record there) and the skeleton of its
-- log (each event's id, seq and hash, without its data), so that verify,
-- the audit API and signed checkpoints still account for every event.
-- Tombstones and skeletons are append-only like events, and the only
-- events that can be deleted are those of a run with a tombstone: the
-- retention's one transaction writes the tombstone, copies the skeleton,
-- then deletes.

-- +goose Up
CREATE TABLE tombstones (
    run_id        TEXT    NOT NULL PRIMARY KEY,
    tenant_id     TEXT    NOT NULL,
    workflow      TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('completed', 'failed', 'cancelled', 'timed_out')),
    created_at    TEXT    NOT NULL,
    ended_at      TEXT    NOT NULL,
    events        INTEGER NOT NULL CHECK (events >= 1),
    final_hash    TEXT    NOT NULL,
    archive       TEXT    NOT NULL,
    record_sha256 TEXT    NOT NULL,
    removed_at    TEXT    NOT NULL
) WITHOUT ROWID;
CREATE INDEX tombstones_tenant_ended ON tombstones (tenant_id, ended_at, run_id);
CREATE TRIGGER tombstones_no_update BEFORE UPDATE ON tombstones
BEGIN SELECT RAISE(ABORT, 'tombstones are append-only'); END;
CREATE TRIGGER tombstones_no_delete BEFORE DELETE ON tombstones
BEGIN SELECT RAISE(ABORT, 'tombstones are append-only'); END;

CREATE TABLE archived_events (
    id        INTEGER PRIMARY KEY,
    tenant_id TEXT    NOT NULL,
    run_id    TEXT    NOT NULL REFERENCES tombstones (run_id),
    seq       INTEGER NOT NULL CHECK (seq >= 1),
    hash      TEXT    NOT NULL,
    UNIQUE (run_id, seq)
);
CREATE INDEX archived_events_tenant ON archived_events (tenant_id, id);
CREATE TRIGGER archived_events_no_update BEFORE UPDATE ON archived_events
BEGIN SELECT RAISE(ABORT, 'archived events are append-only'); END;
CREATE TRIGGER archived_events_no_delete BEFORE DELETE ON archived_events
BEGIN SELECT RAISE(ABORT, 'archived events are append-only'); END;

-- The log as signed checkpoints see it: every event ever appended, live or
-- archived.
CREATE VIEW log_skeleton AS
    SELECT id, tenant_id, run_id, seq, hash FROM events
    UNION ALL
    SELECT id, tenant_id, run_id, seq, hash FROM archived_events;

DROP TRIGGER events_no_delete;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
WHEN NOT EXISTS (SELECT 1 FROM tombstones WHERE run_id = OLD.run_id)
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;

-- +goose Down
DROP TRIGGER events_no_delete;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
DROP VIEW log_skeleton;
DROP TABLE archived_events;
DROP TABLE tombstones;

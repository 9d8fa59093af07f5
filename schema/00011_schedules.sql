-- Schedules: domain state with an append-only, hash-chained log of its own,
-- like a run. The schedules row is the projection of its events, written in
-- the same transaction; a slot that fires writes its run, the run's
-- idempotency key (derived from schedule and slot) and the schedule's event
-- and row in one commit.

-- +goose Up
CREATE TABLE schedules (
    tenant_id   TEXT    NOT NULL,
    id          TEXT    NOT NULL CHECK (length(id) BETWEEN 1 AND 64 AND id NOT GLOB '*[^A-Za-z0-9_.-]*'),
    state       TEXT    NOT NULL CHECK (state IN ('active', 'paused', 'deleted')),
    -- The spec as the engine encodes it (durations in nanoseconds).
    spec        TEXT    NOT NULL CHECK (json_valid(spec) AND json_type(spec) = 'object'),
    -- Changes by a caller: an update names the version it read.
    version     INTEGER NOT NULL CHECK (version >= 1),
    -- The head of the log: every write is a compare-and-set on seq.
    seq         INTEGER NOT NULL CHECK (seq >= 1),
    last_hash   TEXT    NOT NULL CHECK (length(last_hash) = 64),
    -- Slots up to cursor are decided (fired, skipped, buffered, missed).
    cursor      TEXT    NOT NULL,
    last_run_id TEXT,
    buffered    TEXT    CHECK (buffered IS NULL OR (json_valid(buffered) AND json_type(buffered) = 'array')),
    fired       INTEGER NOT NULL CHECK (fired >= 0),
    skipped     INTEGER NOT NULL CHECK (skipped >= 0),
    missed      INTEGER NOT NULL CHECK (missed >= 0),
    failed      INTEGER NOT NULL CHECK (failed >= 0),
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CHECK (state <> 'deleted' OR buffered IS NULL)
) WITHOUT ROWID;
CREATE INDEX schedules_active ON schedules (tenant_id, id) WHERE state = 'active';

CREATE TABLE schedule_events (
    tenant_id   TEXT    NOT NULL,
    schedule_id TEXT    NOT NULL,
    seq         INTEGER NOT NULL CHECK (seq >= 1),
    type        TEXT    NOT NULL CHECK (type IN ('schedule.created', 'schedule.updated', 'schedule.paused',
                'schedule.unpaused', 'schedule.deleted', 'schedule.slot_fired', 'schedule.slot_skipped',
                'schedule.slot_buffered', 'schedule.slots_missed', 'schedule.slot_failed', 'schedule.triggered',
                'schedule.backfilled')),
    actor       TEXT    NOT NULL,
    on_behalf   TEXT,
    data        TEXT    CHECK (data IS NULL OR json_valid(data)),
    at          TEXT    NOT NULL,
    hash        TEXT    NOT NULL CHECK (length(hash) = 64),
    PRIMARY KEY (tenant_id, schedule_id, seq)
) WITHOUT ROWID;
CREATE INDEX schedule_events_type ON schedule_events (tenant_id, schedule_id, type, seq);

-- The log is append-only: the database itself refuses to change it.
CREATE TRIGGER schedule_events_no_update BEFORE UPDATE ON schedule_events
BEGIN SELECT RAISE(ABORT, 'schedule_events is append-only'); END;
CREATE TRIGGER schedule_events_no_delete BEFORE DELETE ON schedule_events
BEGIN SELECT RAISE(ABORT, 'schedule_events is append-only'); END;

-- +goose Down
DROP TABLE schedule_events;
DROP TABLE schedules;

-- Signed checkpoints of each tenant's log. A run's hash chain shows an
-- accidental change, not a rewrite by someone who can write the file and
-- recompute the chain; a checkpoint signs, per tenant, how far the log went
-- (its highest event id and how many events and runs it held) and the last
-- event of every run that moved since the tenant's previous checkpoint, so
-- that a copy of the checkpoints kept elsewhere shows which run's history
-- was rewritten. Checkpoints chain to the previous one of their tenant.

-- +goose Up
CREATE TABLE checkpoints (
    id            INTEGER PRIMARY KEY,
    tenant_id     TEXT    NOT NULL,
    seq           INTEGER NOT NULL CHECK (seq >= 1),
    at            TEXT    NOT NULL,
    from_event_id INTEGER NOT NULL CHECK (from_event_id >= 0),
    head_event_id INTEGER NOT NULL CHECK (head_event_id > from_event_id),
    events        INTEGER NOT NULL CHECK (events >= 1),
    runs          INTEGER NOT NULL CHECK (runs >= 1),
    heads_digest  TEXT    NOT NULL,
    prev_digest   TEXT    NOT NULL,
    digest        TEXT    NOT NULL,
    public_key    TEXT    NOT NULL,
    signature     TEXT    NOT NULL,
    UNIQUE (tenant_id, seq),
    CHECK ((seq = 1) = (prev_digest = ''))
);

-- The last event, up to the checkpoint's head, of every run with events
-- since the previous checkpoint of its tenant.
CREATE TABLE checkpoint_heads (
    checkpoint_id INTEGER NOT NULL REFERENCES checkpoints (id),
    run_id        TEXT    NOT NULL,
    seq           INTEGER NOT NULL CHECK (seq >= 1),
    hash          TEXT    NOT NULL,
    PRIMARY KEY (checkpoint_id, run_id)
) WITHOUT ROWID;

CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER checkpoint_heads_no_update BEFORE UPDATE ON checkpoint_heads
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER checkpoint_heads_no_delete BEFORE DELETE ON checkpoint_heads
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;

-- +goose Down
DROP TABLE checkpoint_heads;
DROP TABLE checkpoints;

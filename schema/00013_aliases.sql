-- Aliases of a definition name: a name a start can use instead of a version
-- ("wf@live"), pointing at one version or splitting runs between two by
-- weight. spec holds the versions and weights, the sticky key template, the
-- automatic rollback policy and the last rollback (a JSON object, so that
-- they grow without a migration); revision is the compare-and-set every
-- change names. Every change is also an entry of the admin log, written in
-- the same transaction.

-- +goose Up
CREATE TABLE aliases (
    tenant_id  TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    alias      TEXT    NOT NULL
               CHECK (length(alias) BETWEEN 1 AND 64 AND alias NOT GLOB '*[^A-Za-z0-9_.-]*' AND alias GLOB '*[^0-9]*'),
    spec       TEXT    NOT NULL CHECK (json_valid(spec) AND json_type(spec) = 'object'),
    revision   INTEGER NOT NULL CHECK (revision >= 1),
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL,
    updated_by TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, name, alias)
) WITHOUT ROWID;

-- The last finished runs of each version started through an alias: what
-- automatic rollback counts again after a restart. Only aliased, finished
-- runs are in it, so starts by plain name pay nothing for it.
CREATE INDEX runs_alias_finished ON runs (tenant_id, workflow, alias, version, ended_at)
    WHERE alias IS NOT NULL AND ended_at IS NOT NULL;

-- +goose Down
DROP INDEX runs_alias_finished;
DROP TABLE aliases;

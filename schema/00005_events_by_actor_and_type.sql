-- "What did this actor do of this kind?" (actor and type together) follows an
-- index instead of checking the type row by row through the actor's events.

-- +goose Up
CREATE INDEX events_tenant_actor_type ON events (tenant_id, actor, type, id);

-- +goose Down
DROP INDEX events_tenant_actor_type;

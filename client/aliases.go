package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/orchestrator/orchestrator/api/wire"
)

// Versions and aliases of a definition name. A run names an alias in
// ExecuteRequest.Workflow as "name@alias" (or a version as "name@N").

// Types of versions and aliases, as the API sends them.
type (
	// Alias is an alias of a definition name.
	Alias = wire.Alias
	// AliasTarget is a version of an alias and its weight in percent.
	AliasTarget = wire.AliasTarget
	// SetAliasRequest creates or moves an alias.
	SetAliasRequest = wire.SetAliasRequest
	// RollbackPolicy is an alias's automatic rollback.
	RollbackPolicy = wire.RollbackPolicy
	// VersionsPage is a page of a definition's versions.
	VersionsPage = wire.VersionsPage
	// DefinitionDiff is what changed between two versions.
	DefinitionDiff = wire.DefinitionDiff
)

// ListVersions returns up to limit versions of a definition after version
// after (0, 0: the first page of 100), oldest first, without their JSON.
// Errors: 404 an unknown definition.
func (c *OrchestratorClient) ListVersions(ctx context.Context, name string, after, limit int) (*VersionsPage, error) {
	q := url.Values{}
	if after > 0 {
		q.Set("after", strconv.Itoa(after))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var page VersionsPage
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: c.tenantPath("definitions", seg(name), "versions"), query: q}, nil, &page); err != nil {
		return nil, err
	}
	return &page, nil
}

// DiffVersions compares two versions of a definition. Errors: 400 naming
// from or to (a version that does not exist).
func (c *OrchestratorClient) DiffVersions(ctx context.Context, name string, from, to int) (*DefinitionDiff, error) {
	q := url.Values{"from": {strconv.Itoa(from)}, "to": {strconv.Itoa(to)}}
	var d DefinitionDiff
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: c.tenantPath("definitions", seg(name), "diff"), query: q}, nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// SetAlias creates or moves an alias. Errors: 400 naming the field (weights,
// versions that do not exist, the alias name, the sticky key, the rollback
// policy), 404 an unknown definition, 409 a stale Revision.
func (c *OrchestratorClient) SetAlias(ctx context.Context, name, alias string, req SetAliasRequest) (*Alias, error) {
	var a Alias
	if _, err := c.doJSON(ctx, call{method: http.MethodPut, path: c.tenantPath("definitions", seg(name), "aliases", seg(alias))}, req, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// GetAlias reads an alias. Errors: 404.
func (c *OrchestratorClient) GetAlias(ctx context.Context, name, alias string) (*Alias, error) {
	var a Alias
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: c.tenantPath("definitions", seg(name), "aliases", seg(alias))}, nil, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// ListAliases returns the aliases of a definition. Errors: 404 an unknown
// definition.
func (c *OrchestratorClient) ListAliases(ctx context.Context, name string) ([]Alias, error) {
	var page wire.AliasesPage
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: c.tenantPath("definitions", seg(name), "aliases")}, nil, &page); err != nil {
		return nil, err
	}
	return page.Aliases, nil
}

// DeleteAlias deletes an alias (at revision rev, unless 0). Errors: 404,
// 409 a stale revision.
func (c *OrchestratorClient) DeleteAlias(ctx context.Context, name, alias string, rev int64) error {
	q := url.Values{}
	if rev > 0 {
		q.Set("revision", strconv.FormatInt(rev, 10))
	}
	_, err := c.doJSON(ctx, call{method: http.MethodDelete, path: c.tenantPath("definitions", seg(name), "aliases", seg(alias)), query: q}, nil, nil)
	return err
}

package client

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/orchestrator/orchestrator/api/wire"
)

// The operations API of a running server, for admin keys: backups and
// signed checkpoints.

// Backup has the server copy its live database into its backup directory
// and check the copy (POST /api/v1/admin/backup). Errors: 404 when the
// server takes no backups, 409 backup_in_progress. A backup may take
// minutes: give ctx, and the client, time for it.
func (c *OrchestratorClient) Backup(ctx context.Context) (*wire.BackupReport, error) {
	var rep wire.BackupReport
	if _, err := c.doJSON(ctx, call{method: http.MethodPost, path: "/api/v1/admin/backup", admin: true}, nil, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// Checkpoints returns the server's public key and each tenant's latest
// signed checkpoint (GET /api/v1/admin/checkpoints). Errors: 409
// checkpoints_off.
func (c *OrchestratorClient) Checkpoints(ctx context.Context) (*wire.Checkpoints, error) {
	var out wire.Checkpoints
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: "/api/v1/admin/checkpoints", admin: true}, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateCheckpoints has the server sign a round of checkpoints now (POST
// /api/v1/admin/checkpoints) and returns those it signed. Errors: 409
// checkpoints_off.
func (c *OrchestratorClient) CreateCheckpoints(ctx context.Context) (*wire.Checkpoints, error) {
	var out wire.Checkpoints
	if _, err := c.doJSON(ctx, call{method: http.MethodPost, path: "/api/v1/admin/checkpoints", admin: true}, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ExportCheckpoints copies every stored checkpoint, one JSON object a line
// as `orchestrator checkpoints verify` reads them, to w (GET
// /api/v1/admin/checkpoints/export) and returns the bytes copied. ctx
// bounds the copy; the client's timeout bounds the wait for it to begin.
func (c *OrchestratorClient) ExportCheckpoints(ctx context.Context, w io.Writer) (int64, error) {
	cl := call{method: http.MethodGet, path: "/api/v1/admin/checkpoints/export", admin: true, accept: "application/x-ndjson"}
	res, err := c.start(ctx, cl)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return 0, decodeError(res, cl)
	}
	n, err := io.Copy(w, res.Body)
	if err != nil {
		return n, fmt.Errorf("orchestrator: GET %s: %w", cl.path, err)
	}
	return n, nil
}

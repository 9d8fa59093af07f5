package client

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/orchestrator/orchestrator/api/wire"
)

// The external worker protocol: poll for a ready task of some types, keep
// its lease with heartbeats, report completion or failure with the lease
// token. A client of the tenant "default" uses the short routes
// (/v1/tasks/...), any other the tenant's (/api/v1/tenants/{tenantId}/tasks/...).

// taskPath is the worker route of the client's tenant followed by the given
// escaped parts.
func (c *OrchestratorClient) taskPath(parts ...string) string {
	p := "/v1/tasks"
	if c.tenant != DefaultTenant {
		p = "/api/v1/tenants/" + seg(c.tenant) + "/tasks"
	}
	for _, s := range parts {
		p += "/" + s
	}
	return p
}

// durationText writes a duration the server parses; 0 is left out.
func durationText(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// Poll leases the best ready task of req.Types, waiting up to req.Wait for
// one; it answers nil, nil when none came. The lease is durable before it
// is answered. The request is bounded by the longer of the client's timeout
// and req.Wait plus LongPollSlack. Errors: 400 naming the field.
func (c *OrchestratorClient) Poll(ctx context.Context, req PollRequest) (*wire.Lease, error) {
	in := wire.PollRequest{Types: req.Types, WorkerID: req.WorkerID, Lease: durationText(req.Lease), Wait: durationText(req.Wait)}
	timeout := c.timeout
	if timeout > 0 {
		timeout = max(timeout, req.Wait+LongPollSlack)
	}
	var lease wire.Lease
	res, err := c.doJSON(ctx, call{method: http.MethodPost, path: c.taskPath("poll"), timeout: timeout}, in, &lease)
	if err != nil {
		return nil, err
	}
	if res.StatusCode == http.StatusNoContent {
		return nil, nil
	}
	return &lease, nil
}

// Heartbeat extends the lease of an attempt (id is Lease.ID, token
// Lease.Token) by lease (0: the server's default) and returns the new
// expiry. Errors: 404 an unknown task; 409 lease_lost with the task's
// State when the token no longer holds the attempt.
func (c *OrchestratorClient) Heartbeat(ctx context.Context, id, token string, lease time.Duration) (*LeaseStatus, error) {
	in := wire.HeartbeatRequest{LeaseToken: token, Lease: durationText(lease)}
	return c.leaseCall(ctx, id, "heartbeat", in)
}

// Complete records an attempt's success with its output (nil: null).
// Repeating it with the same token after it was recorded answers again and
// records nothing. Errors: 413 output_too_large for an output over 1 MiB
// (nothing is recorded and the lease still holds: Fail the task); 404; 409
// lease_lost with the task's State.
func (c *OrchestratorClient) Complete(ctx context.Context, id, token string, output json.RawMessage) (*LeaseStatus, error) {
	in := wire.CompleteRequest{LeaseToken: token, Output: output}
	return c.leaseCall(ctx, id, "complete", in)
}

// Fail records an attempt's failure. retryable false (or a code in the
// task's non_retryable_errors) fails the task at once; otherwise its retry
// policy decides. Errors: 400 without a code; 404; 409 lease_lost.
func (c *OrchestratorClient) Fail(ctx context.Context, id, token string, terr wire.TaskError, retryable bool) (*LeaseStatus, error) {
	in := wire.FailRequest{LeaseToken: token, Error: &terr, Retryable: &retryable}
	return c.leaseCall(ctx, id, "fail", in)
}

func (c *OrchestratorClient) leaseCall(ctx context.Context, id, verb string, in any) (*LeaseStatus, error) {
	var st LeaseStatus
	if _, err := c.doJSON(ctx, call{method: http.MethodPost, path: c.taskPath(seg(id), verb)}, in, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

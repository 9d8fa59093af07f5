package wire

// Problem is an RFC 9457 problem document: the body of every answer outside
// 2xx, sent as application/problem+json. Code is stable: switch on it, never
// on Title or Detail.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	Code   string `json:"code"`
	// State is the current state of the run (invalid_transition) or of the
	// task (lease_lost) that refused the call.
	State string `json:"state,omitempty"`
	// Errors names each field or definition problem of a 400 (and of a 413
	// output_too_large).
	Errors []FieldError `json:"errors,omitempty"`
	// Permission is the permission a 403 forbidden found missing, e.g.
	// runs.start.
	Permission string `json:"permission,omitempty"`
}

// FieldError is one thing wrong with a request: the field it is in ("lease",
// "types[0]", "retry.max_attempts"), for a definition the task it belongs to
// (empty for the definition as a whole), and why.
type FieldError struct {
	Task    string `json:"task,omitempty"`
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Problem codes, with the status each comes with.
const (
	CodeInvalidJSON         = "invalid_json"           // 400: the body is not JSON
	CodeInvalidRequest      = "invalid_request"        // 400: Errors names the field, header or query parameter
	CodeInvalidDefinition   = "invalid_definition"     // 400: Errors lists every problem of the DAG
	CodeUnauthenticated     = "unauthenticated"        // 401 with WWW-Authenticate: Bearer: no key where one is needed, or a malformed, unknown, revoked or expired key
	CodeForbidden           = "forbidden"              // 403: Permission names what the key's role or the policy does not allow
	CodeTenantSuspended     = "tenant_suspended"       // 403: the tenant is suspended
	CodeNotFound            = "not_found"              // 404: unknown id, name or route
	CodeTenantNotFound      = "tenant_not_found"       // 404: no tenant has this id
	CodeMethodNotAllowed    = "method_not_allowed"     // 405
	CodeInvalidTransition   = "invalid_transition"     // 409: State is the run's (or task's) current state
	CodeConflict            = "conflict"               // 409: changed concurrently; try again
	CodeLeaseLost           = "lease_lost"             // 409: the lease token does not hold the attempt; State is the task's
	CodeBodyTooLarge        = "body_too_large"         // 413
	CodeOutputTooLarge      = "output_too_large"       // 413: a completion's output is too large; nothing was recorded, the lease holds
	CodeUnsupportedMedia    = "unsupported_media_type" // 415
	CodeIdempotencyMismatch = "idempotency_key_reused" // 422: the Idempotency-Key named a different request
	CodeInvalidPolicy       = "invalid_policy"         // 422: the policy files do not compile (the detail names file and line); the policy in force stays
	CodeTooManyStreams      = "too_many_streams"       // 429 with Retry-After: the server or the tenant has as many event streams open as it allows
	CodeInternal            = "internal"               // 500
	CodeUnavailable         = "unavailable"            // 503: shutting down
	CodeStorageUnavailable  = "storage_unavailable"    // 503 with Retry-After: the database cannot write now
)

// titles is the Title of each code's problems.
var titles = map[string]string{
	CodeInvalidJSON:         "Malformed JSON",
	CodeInvalidRequest:      "Invalid request",
	CodeInvalidDefinition:   "Invalid workflow definition",
	CodeUnauthenticated:     "Authentication required",
	CodeForbidden:           "Forbidden",
	CodeTenantSuspended:     "Tenant suspended",
	CodeNotFound:            "Not found",
	CodeTenantNotFound:      "Tenant not found",
	CodeMethodNotAllowed:    "Method not allowed",
	CodeInvalidTransition:   "State does not allow this",
	CodeConflict:            "Conflict",
	CodeLeaseLost:           "The lease does not hold this attempt",
	CodeBodyTooLarge:        "Request body too large",
	CodeOutputTooLarge:      "Task output too large",
	CodeUnsupportedMedia:    "Unsupported media type",
	CodeIdempotencyMismatch: "Idempotency key reused",
	CodeInvalidPolicy:       "Invalid policy",
	CodeTooManyStreams:      "Too many event streams",
	CodeInternal:            "Internal error",
	CodeUnavailable:         "Service unavailable",
	CodeStorageUnavailable:  "Storage unavailable",
}

// Codes lists every problem code.
func Codes() []string {
	return []string{CodeInvalidJSON, CodeInvalidRequest, CodeInvalidDefinition, CodeUnauthenticated, CodeForbidden,
		CodeTenantSuspended, CodeNotFound, CodeTenantNotFound, CodeMethodNotAllowed, CodeInvalidTransition, CodeConflict,
		CodeLeaseLost, CodeBodyTooLarge, CodeOutputTooLarge, CodeUnsupportedMedia, CodeIdempotencyMismatch,
		CodeInvalidPolicy, CodeTooManyStreams, CodeInternal, CodeUnavailable, CodeStorageUnavailable}
}

// Title returns the title of a code's problems, or "" for a code that is
// not one of Codes.
func Title(code string) string { return titles[code] }

// ProblemType returns the type URI of a code's problems.
func ProblemType(code string) string {
	b := []byte(code)
	for i, c := range b {
		if c == '_' {
			b[i] = '-'
		}
	}
	return "https://orchestrator.dev/problems/" + string(b)
}

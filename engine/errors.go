package engine

import (
	"errors"
	"time"
)

// ErrStorageUnavailable: the store cannot write now for the storage's sake
// (the disk is full, the file cannot be written): nothing of the change was
// written, and the same change may succeed later. The engine backs off
// before it loads a run whose commits fail so again; the API answers 503
// with Retry-After.
var ErrStorageUnavailable = errors.New("storage unavailable")

// Permanent marks a handler error as not worth retrying: the attempt fails
// the task at once, whatever attempts its retry policy has left (an HTTP 4xx,
// a refused target, a bad input).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// RetryAfter asks the engine to wait at least d before the next attempt, as
// an HTTP 429 or 503 with Retry-After does. The retry policy still decides
// whether there is a next attempt.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err: err, after: d}
}

type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfterOf returns the wait RetryAfter asked for.
func RetryAfterOf(err error) (time.Duration, bool) {
	var r *retryAfterError
	if errors.As(err, &r) {
		return r.after, true
	}
	return 0, false
}

// retryAfterOf returns the wait RetryAfter asked for, or 0.
func retryAfterOf(err error) time.Duration {
	d, _ := RetryAfterOf(err)
	return d
}

// DeferredOf returns the reason and wait of an error made by Deferred.
func DeferredOf(err error) (reason string, d time.Duration, ok bool) {
	var de *deferredError
	if errors.As(err, &de) {
		return de.reason, de.after, true
	}
	return "", 0, false
}

// Deferred reports that an attempt was not made at all and should be tried
// again after d: for example a circuit breaker is open. The engine records
// the attempt as failed with the given reason (e.g. ReasonCircuitOpen) and
// does not charge it to the retry budget.
func Deferred(reason string, d time.Duration, err error) error {
	return &deferredError{reason: reason, after: d, err: err}
}

type deferredError struct {
	reason string
	after  time.Duration
	err    error
}

func (e *deferredError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *deferredError) Unwrap() error { return e.err }

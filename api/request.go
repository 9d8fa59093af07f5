package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/julienschmidt/httprouter"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
)

// Reading a request: its JSON body, strictly, and its path, query and
// header parameters, each refused with a problem naming it.

// readBody reads a JSON request body, refusing a wrong media type (415), a
// body over the limit (413) before reading it whole, and a body that is not
// UTF-8 (400, naming the field that holds the first bad byte).
func (s *Server) readBody(r *http.Request) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		// curl -d sends application/x-www-form-urlencoded unless told
		// otherwise; the body is still parsed as JSON.
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json") && mt != "application/x-www-form-urlencoded") {
			return nil, newProblem(http.StatusUnsupportedMediaType, wire.CodeUnsupportedMedia,
				fmt.Sprintf("Content-Type %q: send application/json", ct))
		}
	}
	tooLarge := newProblem(http.StatusRequestEntityTooLarge, wire.CodeBodyTooLarge,
		fmt.Sprintf("request body is over the limit of %d bytes", s.MaxBodyBytes))
	if r.ContentLength > s.MaxBodyBytes {
		return nil, tooLarge
	}
	body, err := io.ReadAll(r.Body) // limitBody bounds it
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, tooLarge
	}
	if err != nil {
		return nil, newProblem(http.StatusBadRequest, wire.CodeInvalidRequest, "reading the request body: "+err.Error())
	}
	if !utf8.Valid(body) { // JSON text is UTF-8, and every answer echoing it must be
		return nil, invalidUTF8(body)
	}
	return body, nil
}

// decodeStrict decodes a JSON object into v, refusing unknown fields, wrong
// types and trailing data with a problem naming the field.
func decodeStrict(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return newProblem(http.StatusBadRequest, wire.CodeInvalidJSON, "the request body is empty; send a JSON object")
	}
	if err := validJSON(body); err != nil {
		return err
	}
	if err := checkKeys(body, v); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("unexpected data after the JSON object")
	}
	if err == nil {
		if _, err2 := dec.Token(); err2 != io.EOF {
			err = errors.New("unexpected data after the JSON object")
		}
	}
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return newProblem(http.StatusBadRequest, wire.CodeInvalidJSON, "the request body must be a JSON object")
		}
		return fieldProblem(field, fmt.Sprintf("must be %s, not %s", jsonKind(te.Type.Kind().String()), te.Value))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return fieldProblem(field, "unknown field")
	case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF):
		return newProblem(http.StatusBadRequest, wire.CodeInvalidJSON, "malformed JSON: "+err.Error())
	}
	if p := badValueField(body, reflect.TypeOf(v), ""); p != nil {
		return p // a value its own decoder refused (a time), which err does not place
	}
	return newProblem(http.StatusBadRequest, wire.CodeInvalidJSON, err.Error())
}

// validJSON refuses a body that is not JSON with invalid_json and the
// parser's reason.
func validJSON(body []byte) error {
	if json.Valid(body) {
		return nil
	}
	var x any
	return newProblem(http.StatusBadRequest, wire.CodeInvalidJSON, "malformed JSON: "+fmt.Sprint(json.Unmarshal(body, &x)))
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "int", "int64", "int32", "uint", "uint64":
		return "an integer"
	case "float64":
		return "a number"
	case "bool":
		return "a boolean"
	case "slice":
		return "an array"
	case "map", "struct":
		return "an object"
	}
	return goKind
}

// tenantOf returns the tenant a request acts on: the {tenantId} path
// parameter, or DefaultTenant on the short API.
func tenantOf(p httprouter.Params) (string, error) {
	t := p.ByName("tenantId")
	if t == "" {
		return DefaultTenant, nil
	}
	if !definition.ValidName(t) {
		return "", fieldProblem("tenantId", "must match [A-Za-z0-9_.-]{1,64} and not be . or ..")
	}
	return t, nil
}

// validActor refuses an X-Actor that is too long or holds control
// characters.
func validActor(a string) error {
	if len(a) > 128 {
		return fieldProblem("X-Actor", "must be at most 128 characters")
	}
	if !utf8.ValidString(a) {
		return fieldProblem("X-Actor", "must be valid UTF-8")
	}
	for _, c := range a {
		if c < 0x20 || c == 0x7f {
			return fieldProblem("X-Actor", "must not contain control characters")
		}
	}
	return nil
}

// intParam reads an optional integer query parameter within [lo, hi].
func intParam(q url.Values, name string, def, lo, hi int64) (int, error) {
	v := q.Get(name)
	if v == "" {
		return int(def), nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, fieldProblem(name, fmt.Sprintf("must be an integer in %d..%d, not %q", lo, hi, v))
	}
	return int(n), nil
}

func timeParam(q map[string][]string, name string) (time.Time, error) {
	v := ""
	if vs := q[name]; len(vs) > 0 {
		v = vs[0]
	}
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fieldProblem(name, fmt.Sprintf("must be an RFC 3339 time like 2026-01-02T15:04:05Z, not %q", v))
	}
	return t, nil
}

// parseDuration reads an optional duration field of a request.
func parseDuration(field, s string, def, max time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fieldProblem(field, fmt.Sprintf("must be a duration like \"30s\", not %q", s))
	}
	if d > max {
		return 0, fieldProblem(field, fmt.Sprintf("must be at most %s", max))
	}
	return d, nil
}

// onlyParams refuses query parameters the endpoint does not know, so that a
// misspelt filter is not silently ignored.
func onlyParams(q url.Values, known ...string) error {
	for k, vs := range q {
		if !slices.Contains(known, k) {
			if len(known) == 0 {
				return fieldProblem(k, "unknown query parameter; this endpoint takes none")
			}
			return fieldProblem(k, "unknown query parameter; known: "+strings.Join(known, ", "))
		}
		if len(vs) > 1 {
			// Only the first would be read: status=failed&status=running
			// would not answer what it seems to ask.
			return fieldProblem(k, fmt.Sprintf("given %d times: give each query parameter once", len(vs)))
		}
	}
	return nil
}

// checkQuery refuses a query string that does not parse: url.Values drops
// the pairs it cannot decode, so ?status=failed% would list every run.
func checkQuery(r *http.Request) error {
	if _, err := url.ParseQuery(r.URL.RawQuery); err == nil {
		return nil
	}
	for pair := range strings.SplitSeq(r.URL.RawQuery, "&") {
		key, value, _ := strings.Cut(pair, "=")
		name, kerr := url.QueryUnescape(key)
		if kerr != nil {
			name = key
		}
		if _, verr := url.QueryUnescape(value); kerr != nil || verr != nil || strings.Contains(pair, ";") {
			return fieldProblem(name, "the query string is not URL-encoded: a % not followed by two hex digits, or a ;")
		}
	}
	return fieldProblem("query", "the query string does not parse")
}

// eventTypeParam reads an optional event type filter, refusing unknown types
// so that a misspelt filter does not answer an empty page.
func eventTypeParam(q url.Values) (engine.EventType, error) {
	t := engine.EventType(q.Get("type"))
	if t == "" || slices.Contains(engine.EventTypes(), t) {
		return t, nil
	}
	return "", fieldProblem("type", fmt.Sprintf("unknown event type %q, e.g. task.completed, run.paused", t))
}

package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/textproto"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/orchestrator/orchestrator/engine/strictjson"
)

// TriggerMessage is what a trigger received: a webhook delivery or a stream
// message. Its body is JSON; headers are keyed by canonical name.
type TriggerMessage struct {
	Body    json.RawMessage     // the raw body; empty for none
	Headers map[string][]string // http.Header or message headers
	Query   map[string][]string // a webhook's query parameters; nil for streams
	// Ref identifies the message to its sender: a delivery id, a
	// Nats-Msg-Id or stream sequence, topic/partition/offset. It goes on
	// the run's origin and, unless empty, into its idempotency key.
	Ref string
}

// A template reference is a whole JSON string "${/body/POINTER}",
// "${/headers/NAME}" or "${/query/NAME}".
const (
	refBody    = "/body"
	refHeaders = "/headers/"
	refQuery   = "/query/"
)

// templateRef returns the reference a template string holds, if it is one.
func templateRef(s string) (string, bool) {
	if strings.HasPrefix(s, "${") && strings.HasSuffix(s, "}") {
		return s[2 : len(s)-1], true
	}
	return "", false
}

// validateTemplate checks an input template: JSON, bounded, and every
// reference well formed (no /query for a stream).
func validateTemplate(tpl json.RawMessage, kind TriggerKind) error {
	if len(tpl) == 0 {
		return nil
	}
	if len(tpl) > MaxTriggerTemplate {
		return &FieldError{Field: "input", Reason: fmt.Sprintf("%d bytes, at most %d", len(tpl), MaxTriggerTemplate)}
	}
	if err := strictjson.CheckDepth(tpl); err != nil {
		return &FieldError{Field: "input", Reason: err.Error()}
	}
	v, err := decodeNumbers(tpl)
	if err != nil {
		return &FieldError{Field: "input", Reason: "must be JSON: " + err.Error()}
	}
	_, err = fillTemplate(v, "input", func(path, ref string) (any, error) {
		if reason := checkRef(ref, kind); reason != "" {
			return nil, &FieldError{Field: path, Reason: fmt.Sprintf("${%s}: %s", ref, reason)}
		}
		return nil, nil
	})
	return err
}

func checkRef(ref string, kind TriggerKind) string {
	switch {
	case ref == refBody || strings.HasPrefix(ref, refBody+"/"):
		for _, tok := range strings.Split(ref[len(refBody):], "/")[1:] {
			for i := 0; i < len(tok); i++ {
				if tok[i] == '~' && (i+1 == len(tok) || (tok[i+1] != '0' && tok[i+1] != '1')) {
					return "a JSON pointer escapes ~ as ~0 and / as ~1"
				}
			}
		}
		return ""
	case strings.HasPrefix(ref, refHeaders):
		if !validHeaderName(ref[len(refHeaders):]) {
			return "not a header name"
		}
		return ""
	case strings.HasPrefix(ref, refQuery):
		if kind.Stream() {
			return "a stream message has no query parameters"
		}
		if ref[len(refQuery):] == "" {
			return "name the query parameter"
		}
		return ""
	}
	return "want /body[/POINTER], /headers/NAME or /query/NAME"
}

func decodeNumbers(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("data after the JSON value")
	}
	return v, nil
}

// BuildInput returns a run's input for msg under the trigger's template:
// the body itself without a template. A body that is not JSON, and a
// reference to something msg does not have, is a *FieldError naming it
// (body, or the template's field).
func (t *Trigger) BuildInput(msg *TriggerMessage) (json.RawMessage, error) {
	var body any
	hasBody := len(bytes.TrimSpace(msg.Body)) > 0
	if hasBody {
		if !json.Valid(msg.Body) {
			return nil, &FieldError{Field: "body", Reason: "must be JSON"}
		}
		if err := strictjson.CheckDepth(msg.Body); err != nil {
			return nil, &FieldError{Field: "body", Reason: err.Error()}
		}
		// JSON is UTF-8, and a run input repeats no key: the body becomes
		// the input (or part of it) as it is, so it must be one.
		if !utf8.Valid(msg.Body) {
			return nil, &FieldError{Field: "body", Reason: "must be JSON: it is not valid UTF-8"}
		}
		if k := strictjson.RepeatedKey(msg.Body); k != "" {
			return nil, &FieldError{Field: "body." + k, Reason: "given more than once"}
		}
	}
	if len(t.Config.Input) == 0 {
		if !hasBody {
			return nil, nil
		}
		return msg.Body, nil
	}
	if hasBody {
		var err error
		if body, err = decodeNumbers(msg.Body); err != nil {
			return nil, &FieldError{Field: "body", Reason: "must be JSON: " + err.Error()}
		}
	}
	tpl, err := decodeNumbers(t.Config.Input)
	if err != nil {
		return nil, fmt.Errorf("trigger %s: stored template: %w", t.Name, err)
	}
	out, err := fillTemplate(tpl, "input", func(path, ref string) (any, error) {
		v, ok := lookupRef(ref, hasBody, body, msg)
		if !ok {
			return nil, &FieldError{Field: path, Reason: fmt.Sprintf("${%s}: the message has no such field", ref)}
		}
		return v, nil
	})
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("trigger %s: encode input: %w", t.Name, err)
	}
	return b, nil
}

// fillTemplate replaces every string of v that is a reference by what get
// returns for it and its path (input.a.b[2]), in a stable order, and stops
// at get's first error.
func fillTemplate(v any, path string, get func(path, ref string) (any, error)) (any, error) {
	switch x := v.(type) {
	case string:
		if ref, ok := templateRef(x); ok {
			return get(path, ref)
		}
		return x, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			var err error
			if out[i], err = fillTemplate(e, fmt.Sprintf("%s[%d]", path, i), get); err != nil {
				return nil, err
			}
		}
		return out, nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make(map[string]any, len(x))
		for _, k := range keys {
			var err error
			if out[k], err = fillTemplate(x[k], path+"."+k, get); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return v, nil
}

func lookupRef(ref string, hasBody bool, body any, msg *TriggerMessage) (any, bool) {
	switch {
	case strings.HasPrefix(ref, refHeaders):
		vs := msg.Headers[textproto.CanonicalMIMEHeaderKey(ref[len(refHeaders):])]
		if len(vs) == 0 {
			return nil, false
		}
		return vs[0], true
	case strings.HasPrefix(ref, refQuery):
		vs := msg.Query[ref[len(refQuery):]]
		if len(vs) == 0 {
			return nil, false
		}
		return vs[0], true
	}
	if !hasBody {
		return nil, false
	}
	v := body
	for _, tok := range strings.Split(ref[len(refBody):], "/")[1:] {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch x := v.(type) {
		case map[string]any:
			e, ok := x[tok]
			if !ok {
				return nil, false
			}
			v = e
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(x) || (len(tok) > 1 && tok[0] == '0') {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
)

// openAPIMethods are the keys of an OpenAPI path item that are operations.
var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// workerVerbs are the values of :verb that taskVerb serves; the document has
// a path for each.
var workerVerbs = []string{"heartbeat", "complete", "fail"}

// openAPIDoc is the embedded document decoded into generic JSON values.
func openAPIDoc(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	return doc
}

// documentedPaths maps a route to the document's paths for it: httprouter's
// :param and *param become {param}; POST .../tasks/:id serves only the id "poll", so it
// is documented as .../tasks/poll; .../tasks/:id/:verb is documented once per
// verb.
func documentedPaths(method, path string) []string {
	segs := strings.Split(path, "/")
	n := len(segs)
	if method == http.MethodPost && n >= 2 && segs[n-2] == "tasks" && segs[n-1] == ":id" {
		segs[n-1] = "poll"
	}
	var expand []string
	for i, s := range segs {
		switch {
		case s == ":verb":
			expand = workerVerbs
			segs[i] = "%s"
		case strings.HasPrefix(s, ":"), strings.HasPrefix(s, "*"):
			segs[i] = "{" + s[1:] + "}"
		}
	}
	p := strings.Join(segs, "/")
	if expand == nil {
		return []string{p}
	}
	var out []string
	for _, v := range expand {
		out = append(out, fmt.Sprintf(p, v))
	}
	return out
}

// operations calls fn for every operation of the document.
func operations(doc map[string]any, fn func(path, method string, op map[string]any)) {
	paths, _ := doc["paths"].(map[string]any)
	keys := make([]string, 0, len(paths))
	for p := range paths {
		keys = append(keys, p)
	}
	sort.Strings(keys)
	for _, p := range keys {
		item, _ := paths[p].(map[string]any)
		for _, m := range openAPIMethods {
			if op, ok := item[m].(map[string]any); ok {
				fn(p, m, op)
			}
		}
	}
}

// resolve follows a local JSON pointer ("#/components/schemas/Run") in doc.
func resolve(doc any, ref string) (any, bool) {
	if !strings.HasPrefix(ref, "#/") {
		return nil, false
	}
	cur := doc
	for _, tok := range strings.Split(ref[2:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch v := cur.(type) {
		case map[string]any:
			next, ok := v[tok]
			if !ok {
				return nil, false
			}
			cur = next
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(v) {
				return nil, false
			}
			cur = v[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// walkRefs calls fn with the location and target of every $ref under v.
func walkRefs(v any, at string, fn func(at, ref string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "$ref" {
				fn(at, s)
				continue
			}
			walkRefs(x, at+"/"+k, fn)
		}
	case []any:
		for i, x := range v {
			walkRefs(x, at+"/"+strconv.Itoa(i), fn)
		}
	}
}

func TestOpenAPIDocument(t *testing.T) {
	is := is.New(t)
	doc := openAPIDoc(t)
	is.Equal(doc["openapi"], "3.1.0") // an OpenAPI 3.1.0 document
	info, ok := doc["info"].(map[string]any)
	is.True(ok) // info is an object
	title, _ := info["title"].(string)
	is.True(title != "") // info has a title
	version, _ := info["version"].(string)
	is.True(version != "") // info has a version
	paths, ok := doc["paths"].(map[string]any)
	is.True(ok)             // paths is an object
	is.True(len(paths) > 0) // paths is not empty
	components, ok := doc["components"].(map[string]any)
	is.True(ok) // components is an object
	schemas, ok := components["schemas"].(map[string]any)
	is.True(ok) // components has schemas
	for _, name := range []string{"Definition", "TaskDef", "RetryPolicy", "Run", "RunSummary", "Task", "RunDetails", "Progress",
		"Event", "EventData", "TaskError", "Problem", "ValidationProblem", "RunsPage", "EventsPage", "RunEventsPage",
		"RunMetrics", "TaskMetrics", "Lease", "PollRequest", "HeartbeatRequest", "CompleteRequest", "FailRequest",
		"ExecuteRequest", "StartRequest", "WorkflowView", "DefinitionsPage", "Validation"} {
		_, ok := schemas[name]
		is.True(ok) // every named component schema is present
		if !ok {
			t.Logf("missing schema %s", name)
		}
	}
}

func TestOpenAPIProblemCodes(t *testing.T) {
	is := is.New(t)
	doc := openAPIDoc(t)
	code, ok := resolve(doc, "#/components/schemas/ProblemCode")
	is.True(ok) // the ProblemCode schema exists
	var documented []string
	for _, c := range code.(map[string]any)["enum"].([]any) {
		documented = append(documented, c.(string))
	}
	for _, c := range wire.Codes() {
		is.True(slices.Contains(documented, c)) // every code of package wire is documented
		if !slices.Contains(documented, c) {
			t.Logf("problem code %q is not in ProblemCode", c)
		}
		is.True(wire.Title(c) != "") // and has a title
	}
	is.Equal(len(documented), len(wire.Codes())) // and no other code is
}

func TestOpenAPIRoutes(t *testing.T) {
	doc := openAPIDoc(t)
	paths := doc["paths"].(map[string]any)
	routed := map[string]bool{} // "METHOD path" the router serves, as documented paths
	for _, rt := range (&Server{}).routes() {
		for _, p := range documentedPaths(rt.method, rt.path) {
			key := rt.method + " " + p
			routed[key] = true
			item, _ := paths[p].(map[string]any)
			op, ok := item[strings.ToLower(rt.method)].(map[string]any)
			if !ok {
				t.Errorf("route %s %s is not documented as %s", rt.method, rt.path, key)
				continue
			}
			if got := op["x-permission"]; got != string(rt.perm) {
				t.Errorf("%s: x-permission %v, but the route needs %s", key, got, rt.perm)
			}
			_, has401 := op["responses"].(map[string]any)["401"]
			if has401 == (rt.perm == PermPublic) {
				t.Errorf("%s: a 401 is documented exactly when the route needs a key", key)
			}
		}
	}
	operations(doc, func(p, m string, _ map[string]any) {
		if key := strings.ToUpper(m) + " " + p; !routed[key] {
			t.Errorf("documented operation %s is not routed", key)
		}
	})
}

func TestOpenAPIRefs(t *testing.T) {
	is := is.New(t)
	doc := openAPIDoc(t)
	n := 0
	walkRefs(doc, "#", func(at, ref string) {
		n++
		if !strings.HasPrefix(ref, "#/components/") {
			t.Errorf("%s: $ref %q does not name a component", at, ref)
			return
		}
		if _, ok := resolve(doc, ref); !ok {
			t.Errorf("%s: $ref %q does not resolve", at, ref)
		}
	})
	is.True(n > 0) // the document uses components
}

func TestOpenAPIOperations(t *testing.T) {
	is := is.New(t)
	doc := openAPIDoc(t)
	ids := map[string]string{}
	count := 0
	operations(doc, func(p, m string, op map[string]any) {
		count++
		where := strings.ToUpper(m) + " " + p
		id, _ := op["operationId"].(string)
		if id == "" {
			t.Errorf("%s has no operationId", where)
		} else if other, dup := ids[id]; dup {
			t.Errorf("%s and %s share operationId %q", other, where, id)
		}
		ids[id] = where
		if s, _ := op["summary"].(string); s == "" {
			t.Errorf("%s has no summary", where)
		}
		responses, _ := op["responses"].(map[string]any)
		ok2xx := false
		for status := range responses {
			ok2xx = ok2xx || strings.HasPrefix(status, "2")
		}
		if !ok2xx {
			t.Errorf("%s has no 2xx response", where)
		}
		// Every {param} of the path is declared as a path parameter.
		declared := map[string]bool{}
		params, _ := op["parameters"].([]any)
		for _, x := range params {
			pm, _ := x.(map[string]any)
			if ref, ok := pm["$ref"].(string); ok {
				r, _ := resolve(doc, ref)
				pm, _ = r.(map[string]any)
			}
			if pm["in"] == "path" {
				declared[pm["name"].(string)] = true
			}
		}
		for _, seg := range strings.Split(p, "/") {
			if strings.HasPrefix(seg, "{") && !declared[strings.Trim(seg, "{}")] {
				t.Errorf("%s does not declare path parameter %s", where, seg)
			}
		}
	})
	is.True(count > 0) // the document has operations
}

func TestOpenAPIServed(t *testing.T) {
	is := is.New(t)
	// The route touches neither engine nor store, so none is needed.
	h := (&Server{}).Handler()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/openapi.json", nil)
	req.RemoteAddr = "127.0.0.1:40000" // the local admin: any caller with a key may read it
	h.ServeHTTP(rec, req)
	is.Equal(rec.Code, http.StatusOK)                              // GET /openapi.json answers 200
	is.Equal(rec.Header().Get("Content-Type"), "application/json") // as JSON
	is.Equal(rec.Body.Bytes(), openAPIDocument)                    // with the embedded document, byte for byte
}

// wireSchemas maps each component schema that describes a JSON body to the
// type of package wire that carries it; request bodies are marked.
var wireSchemas = []struct {
	schema  string
	typ     reflect.Type
	request bool
}{
	{"Run", reflect.TypeFor[wire.Run](), false},
	{"Task", reflect.TypeFor[wire.Task](), false},
	{"TaskError", reflect.TypeFor[wire.TaskError](), false},
	{"RunDetails", reflect.TypeFor[wire.RunDetails](), false},
	{"Progress", reflect.TypeFor[wire.Progress](), false},
	{"RunsPage", reflect.TypeFor[wire.RunsPage[wire.Run]](), false},
	{"RunMetrics", reflect.TypeFor[wire.RunMetrics](), false},
	{"TaskMetrics", reflect.TypeFor[wire.TaskMetrics](), false},
	{"Event", reflect.TypeFor[wire.Event](), false},
	{"EventData", reflect.TypeFor[wire.EventData](), false},
	{"RunEventsPage", reflect.TypeFor[wire.RunEventsPage[wire.Event]](), false},
	{"EventsPage", reflect.TypeFor[wire.TenantEventsPage[wire.Event]](), false},
	{"WorkflowView", reflect.TypeFor[wire.DefinitionVersion](), false},
	{"Registration", reflect.TypeFor[wire.Registration](), false},
	{"DefinitionsPage", reflect.TypeFor[wire.DefinitionsPage](), false},
	{"Validation", reflect.TypeFor[wire.Validation](), false},
	{"Problem", reflect.TypeFor[wire.Problem](), false},
	{"DefinitionProblem", reflect.TypeFor[wire.FieldError](), false},
	{"Lease", reflect.TypeFor[wire.Lease](), false},
	{"LeaseAnswer", reflect.TypeFor[wire.LeaseStatus](), false},
	{"Health", reflect.TypeFor[wire.Health](), false},
	{"StreamEnd", reflect.TypeFor[wire.StreamEnd](), false},
	{"StreamResync", reflect.TypeFor[wire.StreamResync](), false},
	{"Explanation", reflect.TypeFor[wire.Explanation](), false},
	{"ExplainedRun", reflect.TypeFor[wire.ExplainedRun](), false},
	{"WaitingTask", reflect.TypeFor[wire.WaitingTask](), false},
	{"Dependency", reflect.TypeFor[wire.Dependency](), false},
	{"ExecuteRequest", reflect.TypeFor[wire.ExecuteRequest](), true},
	{"ControlRequest", reflect.TypeFor[wire.ControlRequest](), true},
	{"PollRequest", reflect.TypeFor[wire.PollRequest](), true},
	{"HeartbeatRequest", reflect.TypeFor[wire.HeartbeatRequest](), true},
	{"CompleteRequest", reflect.TypeFor[wire.CompleteRequest](), true},
	{"FailRequest", reflect.TypeFor[wire.FailRequest](), true},
	{"Tenant", reflect.TypeFor[wire.Tenant](), false},
	{"TenantSettings", reflect.TypeFor[wire.TenantSettings](), false},
	{"TenantsPage", reflect.TypeFor[wire.TenantsPage](), false},
	{"APIKey", reflect.TypeFor[wire.APIKey](), false},
	{"CreatedKey", reflect.TypeFor[wire.CreatedKey](), false},
	{"KeysPage", reflect.TypeFor[wire.KeysPage](), false},
	{"AdminEvent", reflect.TypeFor[wire.AdminEvent](), false},
	{"AdminLogPage", reflect.TypeFor[wire.AdminLogPage](), false},
	{"PolicyInfo", reflect.TypeFor[wire.PolicyInfo](), false},
	{"PolicyDecision", reflect.TypeFor[wire.PolicyDecision](), false},
	{"CreateTenantRequest", reflect.TypeFor[wire.CreateTenantRequest](), true},
	{"UpdateTenantRequest", reflect.TypeFor[wire.UpdateTenantRequest](), true},
	{"SettingsChange", reflect.TypeFor[wire.SettingsChange](), true},
	{"CreateKeyRequest", reflect.TypeFor[wire.CreateKeyRequest](), true},
	{"Origin", reflect.TypeFor[wire.Origin](), false},
	{"RunCounts", reflect.TypeFor[wire.RunCounts](), false},
	{"BackupReport", reflect.TypeFor[wire.BackupReport](), false},
	{"DatabaseSummary", reflect.TypeFor[wire.DatabaseSummary](), false},
	{"CopyCheck", reflect.TypeFor[wire.CopyCheck](), false},
	{"RunProblem", reflect.TypeFor[wire.RunProblem](), false},
	{"Checkpoint", reflect.TypeFor[wire.Checkpoint](), false},
	{"RunHead", reflect.TypeFor[wire.RunHead](), false},
	{"Checkpoints", reflect.TypeFor[wire.Checkpoints](), false},
	{"ScheduleSpec", reflect.TypeFor[wire.ScheduleSpec](), false},
	{"CreateScheduleRequest", reflect.TypeFor[wire.CreateScheduleRequest](), true},
	{"UpdateScheduleRequest", reflect.TypeFor[wire.UpdateScheduleRequest](), true},
	{"Schedule", reflect.TypeFor[wire.Schedule](), false},
	{"FireTime", reflect.TypeFor[wire.FireTime](), false},
	{"SchedulesPage", reflect.TypeFor[wire.SchedulesPage](), false},
	{"ScheduleEvent", reflect.TypeFor[wire.ScheduleEvent](), false},
	{"ScheduleEventsPage", reflect.TypeFor[wire.ScheduleEventsPage](), false},
	{"BackfillRequest", reflect.TypeFor[wire.BackfillRequest](), true},
	{"BackfillSlot", reflect.TypeFor[wire.BackfillSlot](), false},
	{"Backfill", reflect.TypeFor[wire.Backfill](), false},
	{"Trigger", reflect.TypeFor[wire.Trigger](), false},
	{"TriggersPage", reflect.TypeFor[wire.TriggersPage](), false},
	{"TriggerStatus", reflect.TypeFor[wire.TriggerStatus](), false},
	{"Delivery", reflect.TypeFor[wire.Delivery](), false},
	{"WebhookConfig", reflect.TypeFor[wire.WebhookConfig](), true},
	{"NATSConfig", reflect.TypeFor[wire.NATSConfig](), true},
	{"KafkaConfig", reflect.TypeFor[wire.KafkaConfig](), true},
	{"CreateTriggerRequest", reflect.TypeFor[wire.CreateTriggerRequest](), true},
	{"UpdateTriggerRequest", reflect.TypeFor[wire.UpdateTriggerRequest](), true},
}

// jsonField is one member of a Go type's JSON object.
type jsonField struct {
	typ       reflect.Type
	omittable bool // omitempty or omitzero: absent from some answers
}

// jsonFields returns the members encoding/json writes for struct type t,
// embedded structs flattened.
func jsonFields(t reflect.Type) map[string]jsonField {
	out := map[string]jsonField{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for k, v := range jsonFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = jsonField{typ: f.Type, omittable: strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero")}
	}
	return out
}

// schemaObject returns the properties and required members of a schema,
// following $ref and merging allOf.
func schemaObject(doc map[string]any, s map[string]any) (map[string]any, []string) {
	if ref, ok := s["$ref"].(string); ok {
		r, _ := resolve(doc, ref)
		s, _ = r.(map[string]any)
	}
	props := map[string]any{}
	var required []string
	for _, part := range asList(s["allOf"]) {
		p, r := schemaObject(doc, part.(map[string]any))
		for k, v := range p {
			props[k] = v
		}
		required = append(required, r...)
	}
	if p, ok := s["properties"].(map[string]any); ok {
		for k, v := range p {
			props[k] = v
		}
	}
	for _, r := range asList(s["required"]) {
		required = append(required, r.(string))
	}
	return props, required
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// schemaType is the JSON type a property's schema names, following $ref;
// "" when it names none (any JSON).
func schemaType(doc map[string]any, s map[string]any) string {
	if ref, ok := s["$ref"].(string); ok {
		r, _ := resolve(doc, ref)
		s, _ = r.(map[string]any)
	}
	if t, ok := s["type"].(string); ok {
		return t
	}
	if len(asList(s["allOf"])) > 0 {
		return "object"
	}
	return ""
}

// goJSONType is the JSON type encoding/json writes for t.
func goJSONType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == reflect.TypeFor[time.Time]():
		return "string"
	case t == reflect.TypeFor[json.RawMessage]():
		return ""
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "integer"
	case reflect.Float64:
		return "number"
	case reflect.Bool:
		return "boolean"
	case reflect.Slice:
		return "array"
	case reflect.Struct, reflect.Map:
		return "object"
	}
	return t.Kind().String()
}

func TestOpenAPISchemasMatchWireTypes(t *testing.T) {
	doc := openAPIDoc(t)
	for _, ws := range wireSchemas {
		t.Run(ws.schema, func(t *testing.T) {
			s, ok := resolve(doc, "#/components/schemas/"+ws.schema)
			if !ok {
				t.Fatalf("no component schema %s", ws.schema)
			}
			props, required := schemaObject(doc, s.(map[string]any))
			fields := jsonFields(ws.typ)
			for name, f := range fields {
				p, ok := props[name].(map[string]any)
				if !ok {
					t.Errorf("%s.%s is not documented in %s", ws.typ, name, ws.schema)
					continue
				}
				if want, got := schemaType(doc, p), goJSONType(f.typ); want != "" && got != "" && want != got {
					t.Errorf("%s.%s: documented as %s, encoded as %s", ws.schema, name, want, got)
				}
				if !ws.request && !f.omittable && !slices.Contains(required, name) {
					t.Errorf("%s.%s is always sent but not required in %s", ws.typ, name, ws.schema)
				}
			}
			for name := range props {
				if _, ok := fields[name]; !ok {
					t.Errorf("%s documents %s, which %s does not have", ws.schema, name, ws.typ)
				}
			}
			if ws.request && s.(map[string]any)["additionalProperties"] != false {
				t.Errorf("request %s must say additionalProperties: false: the server refuses unknown fields", ws.schema)
			}
		})
	}
}

func TestOpenAPI_MergeRefusesTwoDescriptionsOfOnePath(t *testing.T) {
	is := is.New(t)
	base := []byte(`{"openapi":"3.1.0","tags":[],"paths":{"/a":{}},"components":{"schemas":{"A":{}}}}`)
	_, err := mergeOpenAPI(base, fstest.MapFS{"openapi/x.json": {Data: []byte(`{"paths":{"/a":{}}}`)}})
	is.True(err != nil && strings.Contains(err.Error(), "path /a is described twice")) // a path in base and a part
	_, err = mergeOpenAPI(base, fstest.MapFS{"openapi/x.json": {Data: []byte(`{"components":{"schemas":{"A":{}}}}`)}})
	is.True(err != nil && strings.Contains(err.Error(), "components.schemas.A")) // a schema in base and a part
	doc, err := mergeOpenAPI(base, fstest.MapFS{"openapi/x.json": {Data: []byte(`{"tags":[{"name":"x"}],"paths":{"/b":{}},"components":{"schemas":{"B":{}}}}`)}})
	is.NoErr(err)
	var got struct {
		Paths      map[string]any
		Components struct{ Schemas map[string]any }
		Tags       []map[string]string
	}
	is.NoErr(json.Unmarshal(doc, &got))
	is.Equal(len(got.Paths), 2)              // /a and /b
	is.Equal(len(got.Components.Schemas), 2) // A and B
	is.Equal(got.Tags[0]["name"], "x")       // the part's tag
}

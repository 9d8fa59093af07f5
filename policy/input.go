package policy

import (
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"

	"github.com/orchestrator/orchestrator/engine"
)

// The keys of the input document, made once: terms are immutable once built
// and evaluation only reads them, so every decision shares these.
var (
	termPrincipal = ast.StringTerm("principal")
	termKeyID     = ast.StringTerm("key_id")
	termName      = ast.StringTerm("name")
	termTenant    = ast.StringTerm("tenant")
	termRole      = ast.StringTerm("role")
	termAction    = ast.StringTerm("action")
	termOperation = ast.StringTerm("operation")
	termResource  = ast.StringTerm("resource")
	termWorkflow  = ast.StringTerm("workflow")
	termVersion   = ast.StringTerm("version")
	termRunID     = ast.StringTerm("run_id")
	termTaskType  = ast.StringTerm("task_type")
	termInputSize = ast.StringTerm("input_size")
	termNow       = ast.StringTerm("now")
	// noMetrics spares each evaluation the metrics it would otherwise make.
	noMetrics = metrics.NoOp()
)

// inputDoc is the input document of one decision, built directly as Rego
// values (going through JSON would cost more than the decision itself).
// Its three objects are kept in a pool and their values replaced for each
// decision: building them anew was a quarter of a decision's garbage, and
// garbage is what sets the decision's tail latency.
//
// A document is read by one evaluation at a time; nothing of it outlives
// Decide, whose results are copied out as Go values.
type inputDoc struct {
	term, principal, resource *ast.Term // the document and its two nested objects
	top, pr, res              ast.Object
}

var inputDocs = sync.Pool{New: func() any {
	d := &inputDoc{pr: ast.NewObject(), res: ast.NewObject()}
	d.principal, d.resource = ast.NewTerm(d.pr), ast.NewTerm(d.res)
	empty := ast.InternedTerm("")
	for _, k := range []*ast.Term{termKeyID, termName, termTenant, termRole} {
		d.pr.Insert(k, empty)
	}
	for _, k := range []*ast.Term{termWorkflow, termRunID, termTaskType} {
		d.res.Insert(k, empty)
	}
	d.res.Insert(termVersion, ast.InternedTerm(0))
	d.res.Insert(termInputSize, ast.InternedTerm(0))
	d.top = ast.NewObject(ast.Item(termPrincipal, d.principal), ast.Item(termResource, d.resource))
	for _, k := range []*ast.Term{termAction, termOperation, termTenant, termNow} {
		d.top.Insert(k, empty)
	}
	d.term = ast.NewTerm(d.top)
	return d
}}

// newInputDoc returns the input document of in at now, from the pool; the
// caller releases it when the decision is made.
func newInputDoc(in *Input, now time.Time) *inputDoc {
	d := inputDocs.Get().(*inputDoc)
	p := in.Principal
	if p == nil {
		p = &engine.Principal{}
	}
	r := &in.Resource
	// Insert replaces the value of a key an object has, in place.
	d.pr.Insert(termKeyID, terms.get(p.KeyID))
	d.pr.Insert(termName, terms.get(p.Name))
	d.pr.Insert(termTenant, terms.get(p.TenantID))
	d.pr.Insert(termRole, terms.get(string(p.Role)))
	d.res.Insert(termWorkflow, terms.get(r.Workflow))
	d.res.Insert(termVersion, ast.InternedTerm(r.Version))
	d.res.Insert(termRunID, str(r.RunID))
	d.res.Insert(termTaskType, terms.get(r.TaskType))
	d.res.Insert(termInputSize, ast.InternedTerm(r.InputSize))
	// The objects cache the hashes of their values: inserting the nested
	// objects again makes the document's hash follow theirs.
	d.top.Insert(termPrincipal, d.principal)
	d.top.Insert(termResource, d.resource)
	d.top.Insert(termAction, terms.get(in.Action))
	d.top.Insert(termOperation, terms.get(in.Operation))
	d.top.Insert(termTenant, terms.get(in.Tenant))
	d.top.Insert(termNow, ast.StringTerm(now.Format(time.RFC3339Nano)))
	return d
}

// release returns the document to the pool, dropping the strings of the
// decision so that the pool holds none of them.
func (d *inputDoc) release() {
	d.res.Insert(termRunID, ast.InternedTerm(""))
	d.top.Insert(termNow, ast.InternedTerm(""))
	inputDocs.Put(d)
}

// str is a string term, shared when it is empty.
func str(s string) *ast.Term {
	if s == "" {
		return ast.InternedTerm("")
	}
	return ast.StringTerm(s)
}

// Interning bounds: a string longer than maxInternLen is not kept, and the
// table starts over once it holds maxInterned strings, so that a stream of
// distinct names costs at most maxInterned*maxInternLen bytes.
const (
	maxInternLen = 128
	maxInterned  = 4096
)

// termTable shares the terms of the strings decisions repeat: actions,
// operations, roles, tenants, key names and ids, workflow names and task
// types come from small sets, and a term per decision for each was most of
// the input's garbage.
type termTable struct {
	mu sync.RWMutex
	m  map[string]*ast.Term
}

var terms termTable

// get returns the term of s, shared with earlier decisions when it can be.
func (tt *termTable) get(s string) *ast.Term {
	if s == "" || len(s) > maxInternLen {
		return str(s)
	}
	tt.mu.RLock()
	t, ok := tt.m[s]
	tt.mu.RUnlock()
	if ok {
		return t
	}
	t = ast.StringTerm(s)
	tt.mu.Lock()
	if len(tt.m) >= maxInterned || tt.m == nil {
		tt.m = make(map[string]*ast.Term, 64)
	}
	tt.m[s] = t
	tt.mu.Unlock()
	return t
}

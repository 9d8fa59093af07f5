// Package policy evaluates authorization policies written in Rego with the
// OPA engine, in process. A policy narrows what the role table allows: it is
// asked after the role check, with the caller, the action and the resource,
// and data.orchestrator.allow decides. Anything but allow == true denies:
// undefined, another value, an evaluation error.
package policy

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/orchestrator/orchestrator/engine"
)

// The documents a policy defines.
const (
	allowQuery  = "data.orchestrator.allow"
	reasonQuery = "data.orchestrator.reason"
	// Package is the Rego package a policy must declare, with a rule allow.
	Package = "orchestrator"
)

// unsafeBuiltins are refused at load: a decision is made on every request
// and must depend on its input alone, not wait on the network, and must not
// read the server's environment (opa.runtime shows it) into a reason.
var unsafeBuiltins = map[string]struct{}{
	"http.send":          {},
	"net.lookup_ip_addr": {},
	"opa.runtime":        {},
}

// slog keys.
const (
	logDecisionID = "decision_id"
	logAction     = "action"
	logTenant     = "tenant"
	logErr        = "err"
)

// Options configure Load.
type Options struct {
	Logger  *slog.Logger     // evaluation errors, with the decision id; default none
	NowFunc func() time.Time // the time of a decision whose Input has none; default time.Now
}

// Engine holds the policy in force. Decide is safe for concurrent use and
// never waits for a reload; a reload that fails leaves the policy in force as
// it was.
type Engine struct {
	path string
	log  *slog.Logger
	now  func() time.Time

	mu  sync.Mutex // serialises loads
	cur atomic.Pointer[prepared]
}

// prepared is one loaded policy: its modules and queries, compiled once.
// Decisions run the compiled queries with topdown directly: the rego
// package's prepared queries cost a third of a decision in set-up and in
// converting results to Go values, which a decision does not need.
type prepared struct {
	compiler *ast.Compiler
	store    storage.Store // empty: a policy reads its input alone
	// decide binds allow, and reasons, an array of the reason when allow
	// is not true (empty when it is: the reason is not evaluated then);
	// allow and reason bind one each, asked when decide fails.
	decide, allow, reason ast.Body
	info                  Info
}

// Query variables the compiled queries bind.
var (
	varAllow   = ast.Var("allow")
	varReason  = ast.Var("reason")
	varReasons = ast.Var("reasons")
)

// Info says which policy is in force.
type Info struct {
	Path     string    `json:"path"`
	Hash     string    `json:"hash"`  // SHA-256 of the files' names and contents
	Files    []string  `json:"files"` // relative to Path when it is a directory
	LoadedAt time.Time `json:"loaded_at"`
}

// Load reads and prepares the policy at path: a .rego file, or a directory
// whose .rego files (in every subdirectory; *_test.rego and hidden files
// left out) form one policy. An error names the file and line at fault.
func Load(ctx context.Context, path string, opts Options) (*Engine, error) {
	e := &Engine{path: path, log: opts.Logger, now: opts.NowFunc}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.now == nil {
		e.now = time.Now
	}
	if _, err := e.Reload(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// Info returns what is in force.
func (e *Engine) Info() Info { return e.cur.Load().info }

// Reload reads the files again and puts the new policy in force. When they do
// not load (a file gone, a parse or compile error, no allow rule) the error
// names the file and line and the policy in force stays.
func (e *Engine) Reload(ctx context.Context) (Info, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, err := prepare(ctx, e.path)
	if err != nil {
		return Info{}, err
	}
	p.info.LoadedAt = e.now().UTC()
	e.cur.Store(p)
	return p.info, nil
}

// source is one policy file.
type source struct {
	name string // as shown in errors: the path given, joined with the relative name
	rel  string // relative to the policy's root; hashed
	text []byte
}

func readSources(path string) ([]source, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if !st.IsDir() {
		text, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		return []source{{name: path, rel: filepath.Base(path), text: text}}, nil
	}
	var out []source
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if p != path && strings.HasPrefix(name, ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !strings.HasSuffix(name, ".rego") || strings.HasSuffix(name, "_test.rego") {
			return nil
		}
		text, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(path, p)
		if err != nil {
			return err
		}
		out = append(out, source{name: p, rel: filepath.ToSlash(rel), text: text})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("policy: %s: no .rego files", path)
	}
	slices.SortFunc(out, func(a, b source) int { return strings.Compare(a.rel, b.rel) })
	return out, nil
}

// hashSources is the policy's identity: the SHA-256 of every file's relative
// name and contents, in name order, each length-prefixed.
func hashSources(srcs []source) string {
	h := sha256.New()
	var n [8]byte
	for _, s := range srcs {
		for _, b := range [][]byte{[]byte(s.rel), s.text} {
			binary.BigEndian.PutUint64(n[:], uint64(len(b)))
			h.Write(n[:])
			h.Write(b)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func prepare(ctx context.Context, path string) (*prepared, error) {
	srcs, err := readSources(path)
	if err != nil {
		return nil, err
	}
	modules := make([]*ast.Module, 0, len(srcs))
	hasAllow := false
	for _, s := range srcs {
		m, err := ast.ParseModuleWithOpts(s.name, string(s.text), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		if m.Package.Path.String() == "data."+Package {
			for _, r := range m.Rules {
				hasAllow = hasAllow || r.Head.Ref().String() == "allow"
			}
		}
		modules = append(modules, m)
	}
	if !hasAllow {
		return nil, fmt.Errorf("policy: %s: no rule allow in package %s (want data.%s.allow)", path, Package, Package)
	}
	// Compiled here rather than by rego.New: its errors name the file and
	// line without wrapping, and both queries share the one compilation.
	byName := make(map[string]*ast.Module, len(modules))
	for i, m := range modules {
		byName[srcs[i].name] = m
	}
	c := ast.NewCompiler().WithUnsafeBuiltins(unsafeBuiltins)
	if c.Compile(byName); c.Failed() {
		return nil, fmt.Errorf("policy: %w", c.Errors)
	}
	p := &prepared{info: Info{Path: path, Hash: hashSources(srcs)}}
	for _, s := range srcs {
		p.info.Files = append(p.info.Files, s.rel)
	}
	p.compiler, p.store = c, inmem.New()
	qc := c.QueryCompiler().WithUnsafeBuiltins(unsafeBuiltins)
	for _, q := range []struct {
		query string
		dst   *ast.Body
	}{
		{fmt.Sprintf("%s = %s; %s = [r | %s != true; r = %s]", varAllow, allowQuery, varReasons, varAllow, reasonQuery), &p.decide},
		{fmt.Sprintf("%s = %s", varAllow, allowQuery), &p.allow},
		{fmt.Sprintf("%s = %s", varReason, reasonQuery), &p.reason},
	} {
		body, err := qc.Compile(ast.MustParseBody(q.query))
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		*q.dst = body
	}
	return p, nil
}

// Input is what a decision is about.
type Input struct {
	Principal *engine.Principal
	Action    string // the permission asked for, e.g. runs.control
	Operation string // what exactly, e.g. cancel; "" when the action says it all
	Tenant    string // the tenant acted on; "" for a system action
	Resource  Resource
	Now       time.Time // the time of the request; zero is now
}

// Resource is what a call acts on; fields that do not apply are zero.
type Resource struct {
	Workflow  string
	Version   int
	RunID     string
	TaskType  string
	InputSize int64 // bytes of the request's input
}

// Decision is the answer of the policy, recorded in the event a write causes.
type Decision struct {
	ID         string `json:"decision_id"` // names the decision in logs
	Allow      bool   `json:"allow"`
	Reason     string `json:"reason,omitempty"` // data.orchestrator.reason, or why the decision denied
	PolicyHash string `json:"policy_hash"`
	Err        error  `json:"-"` // the evaluation error that denied, if any
}

// Decide asks the policy in force whether in is allowed. It denies when
// allow is undefined or not true and when evaluation fails (logged with the
// decision's id). A nil Engine (no policy configured) allows everything.
func (e *Engine) Decide(ctx context.Context, in *Input) Decision {
	d := Decision{ID: rand.Text()}
	if e == nil {
		d.Allow = true
		return d
	}
	p := e.cur.Load()
	d.PolicyHash = p.info.Hash
	now := in.Now
	if now.IsZero() {
		now = e.now()
	}
	doc := newInputDoc(in, now.UTC())
	defer doc.release()
	input := doc.term
	// One cache of rule values for the queries of a decision: a reason
	// asked again reuses the rules the first query evaluated.
	vc := topdown.NewVirtualCache()
	rs, err := p.run(ctx, p.decide, input, now, vc)
	if err == nil && len(rs) == 1 {
		if rs[0][varAllow].Equal(ast.InternedTerm(true)) {
			d.Allow = true
			return d
		}
		if reasons, ok := rs[0][varReasons].Value.(*ast.Array); ok && reasons.Len() == 1 {
			d.Reason = reasonText(reasons.Elem(0))
		}
	} else {
		// The decision failed, or allow is undefined: ask allow alone, then
		// the reason alone, so that a reason that fails to evaluate does not
		// read as the policy failing. A failed evaluation may have left
		// values in the cache: start a new one.
		vc = topdown.NewVirtualCache()
		if rs, err = p.run(ctx, p.allow, input, now, vc); err != nil {
			d.Err = err
			d.Reason = "the policy failed to evaluate (decision " + d.ID + ")"
			e.log.Warn("policy evaluation failed", logDecisionID, d.ID, logAction, in.Action, logTenant, in.Tenant, logErr, err)
			return d
		}
		if len(rs) == 1 && rs[0][varAllow].Equal(ast.InternedTerm(true)) {
			d.Allow = true
			return d
		}
		if why, err := p.run(ctx, p.reason, input, now, vc); err != nil {
			e.log.Warn("policy reason failed", logDecisionID, d.ID, logErr, err)
		} else if len(why) == 1 {
			d.Reason = reasonText(why[0][varReason])
		}
	}
	if d.Reason == "" {
		if len(rs) == 0 {
			d.Reason = "the policy does not allow " + in.Action + " (" + allowQuery + " is undefined)"
		} else {
			d.Reason = "the policy does not allow " + in.Action
		}
	}
	return d
}

// reasonText is a value of data.orchestrator.reason as the reason of a
// denial: a string, or a set or array of strings sorted and joined by "; ".
// Anything else is no reason.
func reasonText(v *ast.Term) string {
	var parts []string
	add := func(t *ast.Term) {
		if s, ok := t.Value.(ast.String); ok {
			parts = append(parts, string(s))
		}
	}
	switch x := v.Value.(type) {
	case ast.String:
		return string(x)
	case *ast.Array:
		x.Foreach(add)
	case ast.Set:
		x.Foreach(add)
	default:
		return ""
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

// run evaluates one compiled query in a read transaction of the (empty)
// store and returns its results: none when it is undefined.
func (p *prepared) run(ctx context.Context, body ast.Body, input *ast.Term, now time.Time, vc topdown.VirtualCache) (topdown.QueryResultSet, error) {
	txn, err := p.store.NewTransaction(ctx)
	if err != nil {
		return nil, err
	}
	defer p.store.Abort(ctx, txn)
	return topdown.NewQuery(body).WithCompiler(p.compiler).WithStore(p.store).WithTransaction(txn).
		WithInput(input).WithTime(now).WithStrictBuiltinErrors(true).WithVirtualCache(vc).
		WithMetrics(noMetrics).Run(ctx)
}

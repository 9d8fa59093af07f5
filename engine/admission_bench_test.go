package engine

import (
	"context"
	"testing"
	"time"

	"github.com/orchestrator/orchestrator/engine/definition"
)

// BenchmarkAdmission measures what admission adds to one start and one end
// of a run, in memory: the tenant's quotas, the start bucket, the decision
// and the counts. Unlimited is the hot path of a tenant with no quotas; the
// other cases show the cost of each limit. The start itself (its commit)
// costs hundreds of microseconds.
func BenchmarkAdmission(b *testing.B) {
	_, plan, problems := definition.CompileJSON([]byte(`{"name":"wf","tasks":[{"id":"a","type":"noop"}]}`), definition.ValidateOptions{})
	_, keyed, _ := definition.CompileJSON([]byte(`{"name":"wf","concurrency":{"key":"${workflow.input.c}"},"tasks":[{"id":"a","type":"noop"}]}`), definition.ValidateOptions{})
	if len(problems) > 0 {
		b.Fatal(problems)
	}
	for _, bc := range []struct {
		name  string
		q     TenantQuotas
		plan  *definition.Plan
		input string
	}{
		{"Unlimited", TenantQuotas{}, plan, ""},
		{"ActiveCap", TenantQuotas{MaxActiveRuns: 1000, OnActiveLimit: OnActiveQueue}, plan, ""},
		{"StartRate", TenantQuotas{StartRate: 1e6, StartBurst: 1e6}, plan, ""},
		{"ConcurrencyKey", TenantQuotas{}, keyed, `{"c":"customer-1"}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := &Engine{defQuotas: TenantQuotas{}.Over(bc.q), now: time.Now, tslots: map[string]*tenantSlots{},
				kslots: map[keyID]*keySlots{}, kwait: map[keyID]*keySlots{}, admitWake: make(chan struct{}, 1)}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				q, err := e.quotasFor(ctx, "t")
				if err != nil {
					b.Fatal(err)
				}
				var key string
				if c := bc.plan.Concurrency; c != nil {
					if key, err = definition.RenderKey(c.Key, []byte(bc.input)); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := e.limits.take("t", q, e.now()); err != nil {
					b.Fatal(err)
				}
				rs := &runState{tenant: "t", id: "r", view: &RunView{plan: bc.plan}, plan: bc.plan, ckey: key, qidx: -1}
				rs.view.Run.Workflow = "wf"
				if a, err := e.admit(rs, q); err != nil || !a.start {
					b.Fatal("refused", err)
				}
				rs.view.Run.State = RunRunning
				e.runMoved(rs)
				rs.view.Run.State = RunCompleted
				e.runMoved(rs)
			}
		})
	}
}

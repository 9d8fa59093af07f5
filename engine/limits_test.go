package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/engine/definition"
)

// allocatedDuring returns the bytes the process allocated while f ran.
func allocatedDuring(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// repeatRefs is a task input string repeating ref k times.
func repeatRefs(ref string, k int) string { return strings.Repeat(ref, k) }

func TestLimits_ReferenceAmplification(t *testing.T) {
	ctx := context.Background()
	big := `{"s":"` + strings.Repeat("x", 1<<20-16) + `"}` // a 1 MiB run input

	t.Run("a template repeating a large reference stops at the limit instead of expanding in full", func(t *testing.T) {
		is := is.New(t)
		db := openTestStore(t)
		e := startEngine(t, db, nil)
		register(t, e, `{"name":"bomb","tasks":[{"id":"a","type":"noop","input":{"v":"`+repeatRefs("${workflow.input.s}", 800)+`"}}]}`)
		var run *engine.Run
		alloc := allocatedDuring(func() {
			var err error
			run, err = e.StartRun(ctx, engine.StartRequest{TenantID: tenant, Workflow: "bomb", Input: json.RawMessage(big)})
			is.NoErr(err) // start
			run, err = e.Wait(ctx, tenant, run.ID)
			is.NoErr(err) // wait
		})
		is.Equal(run.State, engine.RunFailed) // the run fails
		a := task(t, db, run.ID, "a")
		is.True(a.Error != nil)                               // with the task's error
		is.Equal(a.Error.Code, engine.CodeInputTooLarge)      // naming the size, not a reference problem
		is.True(alloc < 256<<20)                              // an 800 MiB expansion was never built (it took GiBs)
		is.True(strings.Contains(a.Error.Message, "input: ")) // the message says what was too large
		verify(t, db, run.ID)
	})

	t.Run("the same expansion through an upstream output stops at the limit", func(t *testing.T) {
		is := is.New(t)
		db := openTestStore(t)
		e := startEngine(t, db, nil)
		register(t, e, `{"name":"bomb2","tasks":[{"id":"up","type":"noop","input":"${workflow.input}"},
			{"id":"down","type":"noop","depends_on":["up"],"input":"`+repeatRefs("${up.output.s}", 800)+`"}]}`)
		var run *engine.Run
		alloc := allocatedDuring(func() {
			var err error
			run, err = e.StartRun(ctx, engine.StartRequest{TenantID: tenant, Workflow: "bomb2", Input: json.RawMessage(big)})
			is.NoErr(err) // start
			run, err = e.Wait(ctx, tenant, run.ID)
			is.NoErr(err) // wait
		})
		is.Equal(run.State, engine.RunFailed)                                      // the run fails
		is.Equal(task(t, db, run.ID, "down").Error.Code, engine.CodeInputTooLarge) // at the amplifying task
		is.True(alloc < 256<<20)                                                   // without building the expansion
	})

	t.Run("other runs go on while a template is being rendered", func(t *testing.T) {
		is := is.New(t)
		db := openTestStore(t)
		cfg := engine.Config{Store: db}
		e, err := engine.New(cfg)
		is.NoErr(err)
		rendering, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		e.SetResolveHook(func() {
			once.Do(func() { // the first rendering holds until released
				close(rendering)
				<-release
			})
		})
		is.NoErr(e.Start(ctx))
		t.Cleanup(func() { e.Stop(ctx) })
		register(t, e, `{"name":"slow","tasks":[{"id":"a","type":"noop","input":{"v":"${workflow.input.s}"}}]}`)
		register(t, e, string(chainDef("chain", 10, "noop")))
		slow, err := e.StartRun(ctx, engine.StartRequest{TenantID: tenant, Workflow: "slow", Input: json.RawMessage(`{"s":"x"}`)})
		is.NoErr(err)
		recv(t, rendering, "the rendering to begin")
		other := start(t, e, "chain")
		other, err = e.Wait(ctx, tenant, other.ID) // completes while the rendering holds
		is.NoErr(err)
		is.Equal(other.State, engine.RunCompleted) // no other run waits on a rendering
		close(release)
		slow, err = e.Wait(ctx, tenant, slow.ID)
		is.NoErr(err)
		is.Equal(slow.State, engine.RunCompleted) // and the held one finishes once it is done
	})

	t.Run("references within the limit still resolve, repeated ones included", func(t *testing.T) {
		is := is.New(t)
		db := openTestStore(t)
		e := startEngine(t, db, nil)
		register(t, e, `{"name":"fine","tasks":[{"id":"a","type":"noop","input":{"v":"`+repeatRefs("${workflow.input.s}-", 3)+`","w":"${workflow.input}"}}]}`)
		run, err := e.StartRun(ctx, engine.StartRequest{TenantID: tenant, Workflow: "fine", Input: json.RawMessage(`{"s":"ab"}`)})
		is.NoErr(err)
		run, err = e.Wait(ctx, tenant, run.ID)
		is.NoErr(err)
		is.Equal(run.State, engine.RunCompleted)                                              // completed
		is.Equal(string(task(t, db, run.ID, "a").Output), `{"v":"ab-ab-ab-","w":{"s":"ab"}}`) // text and whole values
	})
}

func TestLimits_RunBytes(t *testing.T) {
	ctx := context.Background()
	out := json.RawMessage(`"` + strings.Repeat("y", 300<<10) + `"`) // 300 KiB per task
	handlers := map[string]engine.Handler{"emit": engine.HandlerFunc(func(context.Context, *engine.Attempt) (json.RawMessage, error) {
		return out, nil
	})}

	t.Run("a run that would record more than MaxRunBytes fails, naming the setting", func(t *testing.T) {
		is := is.New(t)
		db := openTestStore(t)
		e := startEngineWith(t, db, engine.Config{MaxRunBytes: 1 << 20}, handlers)
		var tasks []string
		for i := 0; i < 10; i++ {
			tasks = append(tasks, fmt.Sprintf(`{"id":"t%d","type":"emit"}`, i))
		}
		register(t, e, `{"name":"wide","output":{"n":1},"max_parallel":1,"tasks":[`+strings.Join(tasks, ",")+`]}`)
		run := start(t, e, "wide")
		run, err := e.Wait(ctx, tenant, run.ID)
		is.NoErr(err)
		is.Equal(run.State, engine.RunFailed) // the run fails
		var tooLarge int
		_, tasksNow, err := db.LoadRun(ctx, tenant, run.ID)
		is.NoErr(err)
		for _, tk := range tasksNow {
			if tk.Error != nil && tk.Error.Code == engine.CodeRunTooLarge {
				tooLarge++
				is.True(strings.Contains(tk.Error.Message, "MAX_RUN_BYTES")) // the message names the setting
			}
		}
		is.True(tooLarge >= 1)               // some task's output did not fit
		is.True(run.DataBytes <= 1<<20+4096) // what the run recorded stays near its bound
		verify(t, db, run.ID)                // and data_bytes replays from the events
	})

	t.Run("a run output over MaxOutputBytes fails the run instead of being stored", func(t *testing.T) {
		is := is.New(t)
		db := openTestStore(t)
		e := startEngine(t, db, handlers)
		var tasks []string
		for i := 0; i < 5; i++ { // five sinks of 300 KiB: 1.5 MiB of run output
			tasks = append(tasks, fmt.Sprintf(`{"id":"t%d","type":"emit"}`, i))
		}
		register(t, e, `{"name":"sinks","tasks":[`+strings.Join(tasks, ",")+`]}`)
		run := start(t, e, "sinks")
		run, err := e.Wait(ctx, tenant, run.ID)
		is.NoErr(err)
		is.Equal(run.State, engine.RunFailed)                               // failed
		is.Equal(run.Error.Code, engine.CodeOutputTooLarge)                 // with the reason
		is.True(strings.Contains(run.Error.Message, "definition's output")) // and the way out
		is.Equal(len(run.Output), 0)                                        // nothing stored as output
	})
}

func TestLimits_JSONDepth(t *testing.T) {
	ctx := context.Background()
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }

	t.Run("a definition nested past the limit is invalid, naming the task and field", func(t *testing.T) {
		is := is.New(t)
		for _, n := range []int{100, 998, 5000} {
			_, _, problems := definition.CompileJSON([]byte(`{"name":"d","tasks":[{"id":"a","type":"noop","input":`+deep(n)+`}]}`), definition.ValidateOptions{})
			is.Equal(len(problems), 1)           // one problem
			is.Equal(problems[0].Task, "a")      // at the task
			is.Equal(problems[0].Field, "input") // and field
			is.True(strings.Contains(problems[0].Message, "levels deep"))
		}
		_, _, problems := definition.CompileJSON([]byte(`{"name":"d","output":`+deep(200)+`,"tasks":[{"id":"a","type":"noop"}]}`), definition.ValidateOptions{})
		is.Equal(len(problems), 1)            // the run output template too
		is.Equal(problems[0].Field, "output") // named
		_, _, problems = definition.CompileJSON([]byte(`{"name":"d","tasks":[{"id":"a","type":"noop","input":`+deep(40)+`}]}`), definition.ValidateOptions{})
		is.Equal(len(problems), 0) // nesting within the limit is fine
	})

	t.Run("a run input nested past the limit is refused, and an output is failed", func(t *testing.T) {
		is := is.New(t)
		db := openTestStore(t)
		deepOut := json.RawMessage(deep(500))
		e := startEngine(t, db, map[string]engine.Handler{"deep": engine.HandlerFunc(func(context.Context, *engine.Attempt) (json.RawMessage, error) {
			return deepOut, nil
		})})
		register(t, e, `{"name":"d","tasks":[{"id":"a","type":"deep"}]}`)
		_, err := e.StartRun(ctx, engine.StartRequest{TenantID: tenant, Workflow: "d", Input: json.RawMessage(deep(998))})
		var ve *definition.ValidationError
		is.True(errors.As(err, &ve))            // a validation error
		is.Equal(ve.Problems[0].Field, "input") // naming the input
		run := start(t, e, "d")
		run, err = e.Wait(ctx, tenant, run.ID)
		is.NoErr(err)
		is.Equal(run.State, engine.RunFailed)                           // the deep output fails the task
		is.Equal(task(t, db, run.ID, "a").Error.Code, "invalid_output") // as an invalid output
		verify(t, db, run.ID)
	})
}

func TestLimits_PlanCache(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	e := startEngineWith(t, db, engine.Config{MaxPlans: 8, MaxPlanBytes: 1 << 30}, nil)
	for v := 0; v < 30; v++ {
		def := fmt.Sprintf(`{"name":"many","description":"v%d","tasks":[{"id":"a","type":"noop"}]}`, v)
		register(t, e, def)
		run := start(t, e, "many")
		_, err := e.Wait(ctx, tenant, run.ID)
		is.NoErr(err) // each version runs
	}
	n, _ := e.PlanCacheStats()
	is.True(n <= 8) // the cache holds at most MaxPlans plans

	e2 := startEngineWith(t, db, engine.Config{MaxPlanBytes: 16 << 10}, nil)
	var tasks []string
	for i := 0; i < 300; i++ {
		tasks = append(tasks, fmt.Sprintf(`{"id":"t%d","type":"noop"}`, i))
	}
	register(t, e2, `{"name":"big","tasks":[`+strings.Join(tasks, ",")+`]}`) // ~8 KiB, counted larger than the bound
	for i := 0; i < 3; i++ {
		run := start(t, e2, "big")
		_, err := e2.Wait(ctx, tenant, run.ID)
		is.NoErr(err) // a plan too large to cache still runs
	}
	_, size := e2.PlanCacheStats()
	is.True(size <= 16<<10) // and the cache stays within its bytes
}

func TestLimits_OutputUTF8(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	db := openTestStore(t)
	e := startEngine(t, db, map[string]engine.Handler{"raw": engine.HandlerFunc(func(context.Context, *engine.Attempt) (json.RawMessage, error) {
		return json.RawMessage("{\"body\":\"\xff\xfe\"}"), nil
	})})
	register(t, e, `{"name":"utf","tasks":[{"id":"a","type":"raw"}]}`)
	run := start(t, e, "utf")
	run, err := e.Wait(ctx, tenant, run.ID)
	is.NoErr(err)
	is.Equal(run.State, engine.RunFailed) // an output that is not UTF-8 is not stored
	a := task(t, db, run.ID, "a")
	is.Equal(a.Error.Code, "invalid_output")            // it fails the attempt
	is.True(strings.Contains(a.Error.Message, "UTF-8")) // saying why
	is.Equal(len(a.Output), 0)                          // and records no output
}

package api

import (
	"encoding/json"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/engine"
)

// fill sets every exported field of the value v points to, recursively, to
// a value that is not its zero, so that an encoding leaves nothing out.
func fill(v reflect.Value, n *int) {
	*n++
	switch {
	case v.Type() == reflect.TypeFor[time.Time]():
		v.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, 5, *n*1000, time.UTC)))
		return
	case v.Type() == reflect.TypeFor[json.RawMessage]():
		v.SetBytes([]byte(`{"k":` + strconv.Itoa(*n) + `}`))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("s" + strconv.Itoa(*n))
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Float64:
		v.SetFloat(float64(*n) + 0.5)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range v.Len() {
			fill(v.Index(i), n)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), n)
			}
		}
	}
}

func filled[T any]() *T {
	v := new(T)
	n := 0
	fill(reflect.ValueOf(v).Elem(), &n)
	return v
}

// sameJSON reports whether a and b encode to the same JSON value.
func sameJSON(t *testing.T, a, b any) bool {
	t.Helper()
	var x, y any
	for _, p := range []struct {
		v   any
		out *any
	}{{a, &x}, {b, &y}} {
		data, err := json.Marshal(p.v)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, p.out); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(x, y) {
		t.Logf("engine: %v\nwire:   %v", x, y)
		return false
	}
	return true
}

// TestWireConversions holds the API's answers to what they were when the
// API encoded the engine's values directly: every field, under its name,
// set or left out alike.
func TestWireConversions(t *testing.T) {
	is := is.New(t)
	run := filled[engine.Run]()
	is.True(sameJSON(t, run, wireRun(run)))                     // a run, every field set
	is.True(sameJSON(t, &engine.Run{}, wireRun(&engine.Run{}))) // and empty
	task := filled[engine.Task]()
	is.True(sameJSON(t, task, wireTask(task)))                     // a task
	is.True(sameJSON(t, &engine.Task{}, wireTask(&engine.Task{}))) // and empty
	ev := filled[engine.Event]()
	is.True(sameJSON(t, ev, wireEvent(ev)))                           // an event
	is.True(sameJSON(t, &engine.Event{}, wireEvent(&engine.Event{}))) // and empty
	lease := filled[engine.Lease]()
	is.True(sameJSON(t, lease, wireLease(lease)))                     // a lease
	is.True(sameJSON(t, &engine.Lease{}, wireLease(&engine.Lease{}))) // and empty
	m := filled[engine.RunMetrics]()
	is.True(sameJSON(t, m, wireRunMetrics(m)))                                       // run metrics
	is.True(sameJSON(t, &engine.RunMetrics{}, wireRunMetrics(&engine.RunMetrics{}))) // and empty
}

// TestWireEventData holds wire.EventData to every member the engine writes
// into an event's data.
func TestWireEventData(t *testing.T) {
	is := is.New(t)
	data, err := json.Marshal(filled[engine.EventData]())
	is.NoErr(err) // encode the engine's event data
	var d wire.EventData
	is.NoErr(decodeStrict(data, &d)) // wire.EventData has every member
	again, err := json.Marshal(&d)
	is.NoErr(err)
	is.Equal(string(again), string(data)) // and writes each back unchanged
}

// TestWireVocabulary holds the states and event types of package wire to
// the engine's.
func TestWireVocabulary(t *testing.T) {
	is := is.New(t)
	var runStates []wire.RunState
	for _, s := range engine.RunStates() {
		runStates = append(runStates, wire.RunState(s))
		is.Equal(wire.RunState(s).Terminal(), s.Terminal()) // terminal alike
	}
	is.Equal(runStates, wire.RunStates()) // the same run states, in order
	var taskStates []wire.TaskState
	for _, s := range engine.TaskStates() {
		taskStates = append(taskStates, wire.TaskState(s))
		is.Equal(wire.TaskState(s).Terminal(), s.Terminal()) // terminal alike
	}
	is.Equal(taskStates, wire.TaskStates()) // the same task states, in order
	var types []wire.EventType
	for _, e := range engine.EventTypes() {
		types = append(types, wire.EventType(e))
	}
	is.Equal(types, wire.EventTypes()) // the same event types, in order
}

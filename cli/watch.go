package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/orchestrator/orchestrator/api/wire"
	"github.com/orchestrator/orchestrator/client"
	"github.com/orchestrator/orchestrator/engine"
)

func init() {
	commands["workflows watch"] = command{"RUN_ID", 1,
		"Follow a run live: a progress bar and the state of each task, updated in place on a terminal, one line per event otherwise (-o json: each event as JSON). Ends when the run is terminal; exit 1 unless it completed.", watchCmd}
	commands["workflows explain"] = command{"RUN_ID", 1,
		"Why a run and each of its tasks that is not running waits: dependencies, backoff, sleep, paused, breaker open, no worker, max_parallel, quota.", explainCmd}
}

// maxWatchedTasks bounds the task lines of the live view.
const maxWatchedTasks = 20

// errRunEnded is a watched run that ended other than completed.
var errRunEnded = errors.New("run did not complete")

// watchView is the state the live view shows, folded from the stream.
type watchView struct {
	run   wire.Run
	order []string // task ids, in the run's topological order
	state map[string]wire.TaskState
}

func (v *watchView) done() int {
	n := 0
	for _, s := range v.state {
		if s.Terminal() {
			n++
		}
	}
	return n
}

// apply folds one event of the run's history into the view, by the
// engine's state machines.
func (v *watchView) apply(e *wire.Event) {
	v.run.LastSeq = e.Seq
	ev := engine.EventType(e.Type)
	if e.TaskID != "" {
		// The state an event leads to, whatever the view had before.
		if s, _ := engine.TaskEventAllowed(ev, engine.TaskState(v.state[e.TaskID])); s != "" {
			v.state[e.TaskID] = wire.TaskState(s)
		}
		return
	}
	if s, _ := engine.RunEventAllowed(ev, engine.RunState(v.run.State)); s != "" {
		v.run.State = wire.RunState(s)
	}
}

// isTerminal reports whether w is a terminal, where the view updates in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func watchCmd(e *env) func([]string) error {
	return func(args []string) error {
		c, err := e.client()
		if err != nil {
			return err
		}
		d, err := c.GetWorkflow(e.ctx, args[0])
		if err != nil {
			return err
		}
		v := &watchView{run: d.Run, state: map[string]wire.TaskState{}}
		for _, t := range d.Tasks {
			v.order = append(v.order, t.TaskID)
			v.state[t.TaskID] = t.State
		}
		tty := e.output == "table" && isTerminal(e.stdout)
		drawn := 0 // lines of the last frame, redrawn in place on a terminal
		if e.output == "table" {
			drawn = v.draw(e.stdout, tty, 0, nil)
		}
		enc := json.NewEncoder(e.stdout)
		err = c.FollowWorkflow(e.ctx, args[0], d.LastSeq, func(ev client.StreamEvent) error {
			switch {
			case ev.End != nil:
				v.run.State = ev.End.State
				if e.output == "json" {
					enc.Encode(map[string]any{"end": ev.End})
				} else {
					drawn = v.draw(e.stdout, tty, drawn, nil)
					fmt.Fprintf(e.stdout, "run %s ended: %s\n", v.run.ID, v.run.State)
				}
				return client.ErrStop
			case ev.Event != nil:
				v.apply(ev.Event)
				if e.output == "json" {
					return enc.Encode(ev.Event)
				}
				drawn = v.draw(e.stdout, tty, drawn, ev.Event)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if v.run.State != "completed" {
			return fmt.Errorf("%w: %s", errRunEnded, v.run.State)
		}
		return nil
	}
}

// draw shows the view: on a terminal the whole frame in place of the last
// one (prev lines), otherwise one line for the event ev (or the header
// when ev is nil). It returns the lines drawn.
func (v *watchView) draw(w io.Writer, tty bool, prev int, ev *wire.Event) int {
	total, done := len(v.order), v.done()
	bar := progressBar(done, total, 30)
	if !tty {
		if ev == nil {
			fmt.Fprintf(w, "run %s of %s v%d: %s %s %d/%d tasks done\n", v.run.ID, v.run.Workflow, v.run.Version, v.run.State, bar, done, total)
			return 0
		}
		what := ev.TaskID
		if ev.Attempt > 0 {
			what += fmt.Sprintf(" attempt %d", ev.Attempt)
		}
		fmt.Fprintf(w, "%s  %4d  %-20s %-24s %s %d/%d\n", ev.At.Local().Format("15:04:05.000"), ev.Seq, ev.Type, what, bar, done, total)
		return 0
	}
	var b strings.Builder
	if prev > 0 {
		fmt.Fprintf(&b, "\033[%dA", prev) // back to the top of the last frame
	}
	lines := 0
	line := func(format string, a ...any) {
		b.WriteString("\r\033[K")
		fmt.Fprintf(&b, format, a...)
		b.WriteByte('\n')
		lines++
	}
	line("run %s of %s v%d: %s", v.run.ID, v.run.Workflow, v.run.Version, v.run.State)
	line("%s %d/%d tasks done", bar, done, total)
	// Unfinished tasks first, in order, then finished ones, up to the bound.
	shown := 0
	for _, finished := range []bool{false, true} {
		for _, id := range v.order {
			if v.state[id].Terminal() != finished || shown == maxWatchedTasks {
				continue
			}
			line("  %-32s %s", id, v.state[id])
			shown++
		}
	}
	if total > shown {
		line("  ... and %d more", total-shown)
	}
	for ; lines < prev; lines++ { // a shorter frame clears what is left of the last
		b.WriteString("\r\033[K\n")
	}
	io.WriteString(w, b.String())
	return lines
}

// progressBar draws done out of total as a bar of width characters.
func progressBar(done, total, width int) string {
	n := 0
	if total > 0 {
		n = done * width / total
	}
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

func explainCmd(e *env) func([]string) error {
	return func(args []string) error {
		c, err := e.client()
		if err != nil {
			return err
		}
		x, err := c.ExplainWorkflow(e.ctx, args[0])
		if err != nil {
			return err
		}
		return e.print(x, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "run %s: %s", x.Run.ID, x.Run.State)
			if x.Run.Reason != "" {
				fmt.Fprintf(w, " (%s: %s)", x.Run.Reason, x.Run.Detail)
			}
			if x.Stalled {
				fmt.Fprint(w, "; STALLED: it cannot progress without outside help")
			}
			fmt.Fprintln(w)
			if len(x.Waiting) == 0 {
				fmt.Fprintln(w, "no task waits")
				return
			}
			fmt.Fprintln(w, "TASK\tSTATE\tREASON\tUNTIL\tDETAIL")
			for _, t := range x.Waiting {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.Task, t.State, t.Reason, ts(t.Until), t.Detail)
			}
		})
	}
}

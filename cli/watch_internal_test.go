package cli

import (
	"fmt"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/api/wire"
)

func TestWatchView_RedrawsInPlaceOnATerminal(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	v := &watchView{run: wire.Run{ID: "r1", Workflow: "w", Version: 1, State: "running"}, state: map[string]wire.TaskState{}}
	for i := range 30 {
		id := fmt.Sprintf("t%02d", i)
		v.order = append(v.order, id)
		v.state[id] = "pending"
	}
	var b strings.Builder
	n := v.draw(&b, true, 0, nil)
	first := b.String()
	is.Equal(n, 2+maxWatchedTasks+1)                    // header, bar, the bounded task lines, "... and N more"
	is.True(!strings.Contains(first, "\033[22A"))       // the first frame moves nowhere
	is.True(strings.Contains(first, "... and 10 more")) // the rest is counted
	is.True(strings.Contains(first, "0/30 tasks done"))

	v.apply(&wire.Event{Seq: 5, Type: "task.completed", TaskID: "t00"})
	v.apply(&wire.Event{Seq: 6, Type: "run.paused"})
	b.Reset()
	v.draw(&b, true, n, nil)
	frame := b.String()
	is.True(strings.HasPrefix(frame, fmt.Sprintf("\033[%dA", n))) // back up over the last frame
	is.True(strings.Contains(frame, "1/30 tasks done"))           // then the new progress
	is.True(strings.Contains(frame, ": paused"))                  // and the run's state
	is.True(strings.Contains(frame, "\r\033[K"))                  // each line cleared before it is written
}

func TestProgressBar(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	is.Equal(progressBar(0, 4, 8), "[........]")
	is.Equal(progressBar(2, 4, 8), "[####....]")
	is.Equal(progressBar(4, 4, 8), "[########]")
	is.Equal(progressBar(0, 0, 4), "[....]") // no tasks: an empty bar, no division by zero
}

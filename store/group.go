package store

import "sync"

// group runs goroutines and waits for them. Unlike a sync.WaitGroup, Go may
// be called while another goroutine waits: a Commit after Close starts one
// while Close waits. The zero value is ready to use.
type group struct {
	mu   sync.Mutex    // protects the fields below
	n    int           // goroutines running
	idle chan struct{} // closed when n drops to 0; nil before the first Go
}

// Go runs f on a new goroutine that Wait waits for.
func (g *group) Go(f func()) {
	g.mu.Lock()
	if g.n == 0 {
		g.idle = make(chan struct{})
	}
	g.n++
	g.mu.Unlock()
	go func() {
		defer g.done()
		f()
	}()
}

func (g *group) done() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n--; g.n == 0 {
		close(g.idle)
	}
}

// Wait returns once no goroutine of the group runs.
func (g *group) Wait() {
	for {
		g.mu.Lock()
		idle, n := g.idle, g.n
		g.mu.Unlock()
		if n == 0 {
			return
		}
		<-idle
	}
}

package engine

import "container/heap"

// fairQueue holds the runs that have a task to dispatch in process, grouped
// by tenant. Tenants take turns, one task each (round robin), and inside a
// tenant runs are ordered as runHeap orders them: priority, then the older
// run, then topological position. One tenant's backlog therefore delays
// another tenant's next task by at most one turn of every other tenant,
// whatever the backlog's size. Push, fix, remove and dispatch cost
// O(log runs of the tenant); choosing the tenant is O(1) amortized.
//
// Protected by Engine.mu.
type fairQueue struct {
	tenants map[string]*tenantQueue // tenants with runs in the queue, or in the ring
	ring    []*tenantQueue          // turn order; ring[0] has the turn
	runs    int                     // runs in the queue, all tenants
}

// tenantQueue is one tenant's dispatchable runs and its place in the turns.
type tenantQueue struct {
	id     string
	runs   runHeap
	inRing bool
}

// Len is the number of runs with a task to dispatch.
func (q *fairQueue) Len() int { return q.runs }

// push adds a run that is not in the queue.
func (q *fairQueue) push(rs *runState) {
	if q.tenants == nil {
		q.tenants = map[string]*tenantQueue{}
	}
	tq := q.tenants[rs.tenant]
	if tq == nil {
		tq = &tenantQueue{id: rs.tenant}
		q.tenants[rs.tenant] = tq
	}
	heap.Push(&tq.runs, rs)
	q.runs++
	if !tq.inRing {
		// A tenant joining the turns goes behind the tenants already waiting.
		tq.inRing = true
		q.ring = append(q.ring, tq)
	}
}

// fix moves a run within its tenant after its best task changed.
func (q *fairQueue) fix(rs *runState) { heap.Fix(&q.tenants[rs.tenant].runs, rs.heapIdx) }

// remove takes a run out of the queue. A tenant left without runs keeps its
// place in the ring until its turn comes (head drops it), so that removing
// costs no search of the ring.
func (q *fairQueue) remove(rs *runState) {
	heap.Remove(&q.tenants[rs.tenant].runs, rs.heapIdx)
	q.runs--
}

// head returns the run whose best task dispatches next, nil when there is
// none. It drops tenants without runs from the front of the ring.
func (q *fairQueue) head() *runState {
	for len(q.ring) > 0 {
		tq := q.ring[0]
		if tq.runs.Len() > 0 {
			return tq.runs[0]
		}
		q.popRing()
		delete(q.tenants, tq.id)
	}
	return nil
}

// served ends the turn of the tenant at the head of the ring, which
// dispatched a task: it goes behind the others.
func (q *fairQueue) served() {
	tq := q.ring[0]
	if len(q.ring) > 1 {
		q.popRing()
		tq.inRing = true
		q.ring = append(q.ring, tq)
	}
}

// popRing removes the ring's first tenant.
func (q *fairQueue) popRing() {
	q.ring[0].inRing = false
	q.ring[0] = nil
	q.ring = q.ring[1:]
	if len(q.ring) == 0 {
		q.ring = nil // let the backing array go
	}
}

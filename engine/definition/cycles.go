package definition

import (
	"fmt"
	"slices"
	"strings"
)

// findCycles finds the strongly connected components of more than one task
// (Tarjan's algorithm, iterative so that a long chain cannot exhaust the stack)
// and returns one cycle through each. A cycle starts at the task of the
// component with the smallest label and follows depends_on edges: in
// [a b c], a depends on b, b on c and c on a. It is a shortest such cycle,
// preferring smaller labels. Cycles are sorted by their first label.
func findCycles(adj [][]int, labels []string) [][]int {
	n := len(adj)
	order := make([]int, n) // 1 + visit order; 0 = not visited
	low := make([]int, n)
	onStack := make([]bool, n)
	comp := make([]int, n) // 1 + index into comps for tasks in a cycle; 0 otherwise
	var stack []int
	type frame struct{ v, next int }
	var calls []frame
	var comps [][]int
	visited := 0
	visit := func(v int) {
		visited++
		order[v], low[v] = visited, visited
		stack = append(stack, v)
		onStack[v] = true
		calls = append(calls, frame{v: v})
	}
	for s := range n {
		if order[s] != 0 {
			continue
		}
		visit(s)
		for len(calls) > 0 {
			f := &calls[len(calls)-1]
			v := f.v
			if f.next < len(adj[v]) {
				w := adj[v][f.next]
				f.next++
				if order[w] == 0 {
					visit(w)
				} else if onStack[w] {
					low[v] = min(low[v], order[w])
				}
				continue
			}
			calls = calls[:len(calls)-1]
			if len(calls) > 0 {
				parent := calls[len(calls)-1].v
				low[parent] = min(low[parent], low[v])
			}
			if low[v] != order[v] {
				continue
			}
			top := len(stack) - 1
			for stack[top] != v {
				top--
			}
			members := stack[top:]
			stack = stack[:top]
			for _, w := range members {
				onStack[w] = false
			}
			if len(members) > 1 {
				comps = append(comps, slices.Clone(members))
				for _, w := range members {
					comp[w] = len(comps)
				}
			}
		}
	}

	less := func(a, b int) int {
		if c := strings.Compare(labels[a], labels[b]); c != 0 {
			return c
		}
		return a - b
	}
	prev := make([]int, n)
	for i := range prev {
		prev[i] = -1
	}
	cycles := make([][]int, 0, len(comps))
	for ci, members := range comps {
		start := slices.MinFunc(members, less)
		cycles = append(cycles, shortestCycle(start, ci+1, adj, comp, prev, less))
	}
	slices.SortFunc(cycles, func(a, b []int) int { return less(a[0], b[0]) })
	return cycles
}

// shortestCycle finds by breadth-first search a shortest cycle from start back
// to it within component c, trying neighbours in the order of less. prev is
// scratch space of -1s, left as it was found.
func shortestCycle(start, c int, adj [][]int, comp, prev []int, less func(a, b int) int) []int {
	queue := []int{start}
	prev[start] = start
	defer func() {
		for _, v := range queue {
			prev[v] = -1
		}
	}()
	var next []int
	for h := 0; h < len(queue); h++ {
		u := queue[h]
		next = next[:0]
		for _, w := range adj[u] {
			if comp[w] == c {
				next = append(next, w)
			}
		}
		slices.SortFunc(next, less)
		for _, w := range next {
			if w == start {
				var path []int
				for v := u; v != start; v = prev[v] {
					path = append(path, v)
				}
				path = append(path, start)
				slices.Reverse(path)
				return path
			}
			if prev[w] == -1 {
				prev[w] = u
				queue = append(queue, w)
			}
		}
	}
	return []int{start} // unreachable: start lies on a cycle of its component
}

// cycleMessage spells a cycle as "cycle: a -> b -> c -> a", eliding the middle of a long one.
func cycleMessage(cycle []int, labels []string) string {
	var b strings.Builder
	b.WriteString("cycle: ")
	head, tail := len(cycle), 0
	if len(cycle) > maxCycleShown {
		head, tail = maxCycleShown/2, maxCycleShown/2
	}
	for i := 0; i < head; i++ {
		b.WriteString(labels[cycle[i]])
		b.WriteString(" -> ")
	}
	if tail > 0 {
		fmt.Fprintf(&b, "(%d more) -> ", len(cycle)-head-tail)
		for _, v := range cycle[len(cycle)-tail:] {
			b.WriteString(labels[v])
			b.WriteString(" -> ")
		}
	}
	b.WriteString(labels[cycle[0]])
	return b.String()
}

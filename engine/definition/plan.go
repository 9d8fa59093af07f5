package definition

import (
	"slices"
	"strings"
	"time"
)

// buildPlan orders a valid, acyclic definition into topological levels by
// Kahn's algorithm: a root is at level 0, any other task one level past its
// deepest dependency. Tasks are ordered by (level, id). It returns nil if the
// graph has a cycle.
func buildPlan(def *Definition, adj [][]int, facts []taskFacts, timeout time.Duration) *Plan {
	n := len(def.Tasks)
	children := make([][]int, n)
	pending := make([]int, n) // dependencies not yet placed
	for i, deps := range adj {
		pending[i] = len(deps)
		for _, j := range deps {
			children[j] = append(children[j], i)
		}
	}
	level := make([]int, n)
	queue := make([]int, 0, n)
	for i := range n {
		if pending[i] == 0 {
			queue = append(queue, i)
		}
	}
	maxLevel := 0
	for h := 0; h < len(queue); h++ {
		u := queue[h]
		maxLevel = max(maxLevel, level[u])
		for _, c := range children[u] {
			level[c] = max(level[c], level[u]+1)
			if pending[c]--; pending[c] == 0 {
				queue = append(queue, c)
			}
		}
	}
	if len(queue) != n {
		return nil
	}

	byLevel := make([][]int, maxLevel+1)
	for i := range n {
		byLevel[level[i]] = append(byLevel[level[i]], i)
	}
	order := make([]int, 0, n) // position -> task index
	levels := make([][]string, len(byLevel))
	for l, members := range byLevel {
		slices.SortFunc(members, func(a, b int) int { return strings.Compare(def.Tasks[a].ID, def.Tasks[b].ID) })
		ids := make([]string, len(members))
		for k, i := range members {
			ids[k] = def.Tasks[i].ID
		}
		levels[l] = ids
		order = append(order, members...)
	}
	pos := make([]int, n)
	for p, i := range order {
		pos[i] = p
	}
	positions := func(idx []int) []int {
		if len(idx) == 0 {
			return nil
		}
		out := make([]int, len(idx))
		for k, i := range idx {
			out[k] = pos[i]
		}
		slices.Sort(out)
		return out
	}

	plan := &Plan{
		Def:         def,
		Tasks:       make([]PlanTask, n),
		Index:       make(map[string]int, n),
		Levels:      levels,
		Timeout:     timeout,
		MaxParallel: def.MaxParallel,
	}
	for p, i := range order {
		t := &def.Tasks[i]
		plan.Tasks[p] = PlanTask{
			ID:       t.ID,
			Type:     t.Type,
			Pos:      p,
			Level:    level[i],
			Priority: t.Priority,
			Deps:     positions(adj[i]),
			Children: positions(children[i]),
			Timeout:  facts[i].timeout,
			Retry:    facts[i].retry,
			Input:    t.Input,
			Config:   t.Config,
			Sleep:    facts[i].sleep,
		}
		plan.Index[t.ID] = p
	}
	return plan
}

package definition

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/orchestrator/orchestrator/engine/strictjson"
)

// Concurrency keys: a definition may bound how many of its runs are active
// at once per value of a key rendered from the run's input,
//
//	"concurrency": {"key": "${workflow.input.customer}", "max": 1, "strategy": "queue"}
//
// The engine renders the key when a run starts and keeps at most Max runs
// per (tenant, workflow name, key value) running or paused; Strategy says
// what happens to a run that finds them all taken.

// Concurrency strategies.
const (
	// StrategyQueue: the new run waits, pending, until a run of its key
	// ends; waiting runs start in the order they were created.
	StrategyQueue = "queue"
	// StrategyCancelInProgress: the oldest active run of the key is
	// cancelled and the new run starts in its place.
	StrategyCancelInProgress = "cancel_in_progress"
	// StrategyCancelNewest: the new run is refused.
	StrategyCancelNewest = "cancel_newest"
)

// Limits of a concurrency key.
const (
	MaxConcurrencyKeyBytes = 256    // the key template, and the key once rendered
	MaxConcurrencyMax      = 10_000 // the largest max
)

// explicitZeroMax marks a max written as 0, which is refused, apart from
// one left out, which is 1.
const explicitZeroMax = math.MinInt

// Concurrency is a definition's concurrency key. In a Plan, Max and
// Strategy have their defaults (1, queue) filled in.
type Concurrency struct {
	Key      string `json:"key"`
	Max      int    `json:"max,omitempty"`      // active runs per key value, 1..MaxConcurrencyMax; default 1
	Strategy string `json:"strategy,omitempty"` // queue (default), cancel_in_progress, cancel_newest
}

// concurrency decodes the definition's concurrency object.
func (p *parser) concurrency(raw json.RawMessage) *Concurrency {
	kind := strictjson.Kind(raw)
	if kind == "null" {
		return nil
	}
	var members []strictjson.Member
	var err error
	if kind == "object" {
		members, err = strictjson.Members(raw)
	}
	if kind != "object" || err != nil {
		p.fail(rankDefinition, "", "concurrency", "must be a JSON object {\"key\", \"max\", \"strategy\"}, got "+kind)
		return nil
	}
	c := &Concurrency{}
	seen := make(map[string]bool, len(members))
	for _, m := range members {
		field := "concurrency." + truncate(m.Key)
		if seen[m.Key] {
			p.problems.add(rankDefinition, "", field, "duplicate field")
			continue
		}
		seen[m.Key] = true
		switch m.Key {
		case "key":
			c.Key = p.str(rankDefinition, "", field, m.Value)
		case "max":
			c.Max = p.integer(rankDefinition, "", field, m.Value)
			if c.Max == 0 && strictjson.Kind(m.Value) == "number" {
				c.Max = explicitZeroMax // Compile says why it is wrong
			}
		case "strategy":
			c.Strategy = p.str(rankDefinition, "", field, m.Value)
		default:
			p.problems.add(rankDefinition, "", field, "unknown field "+quote(m.Key))
		}
	}
	return c
}

// checkConcurrency reports what is wrong with a concurrency key and returns
// it with its defaults filled in.
func checkConcurrency(c *Concurrency, add func(field, msg string)) *Concurrency {
	if c == nil {
		return nil
	}
	out := *c
	switch {
	case c.Key == "":
		add("concurrency.key", `required: a template of the run's input, e.g. "${workflow.input.customer}"`)
	case len(c.Key) > MaxConcurrencyKeyBytes:
		add("concurrency.key", fmt.Sprintf("is %d bytes, over the limit of %d", len(c.Key), MaxConcurrencyKeyBytes))
	default:
		err := splitRefs(c.Key, func(string) error { return nil }, func(r ref) error {
			if r.root != "workflow" {
				return fmt.Errorf("reference ${%s}: a concurrency key may only reference ${workflow.input...}: it is decided when the run starts, before any task ran", r.text)
			}
			return nil
		})
		var form *refFormError
		if errors.As(err, &form) {
			err = fmt.Errorf("reference ${%s}: a concurrency key may only reference ${workflow.input...}", form.text)
		}
		if err != nil {
			add("concurrency.key", err.Error())
		}
	}
	switch {
	case c.Max == 0:
		out.Max = 1
	case c.Max < 1 || c.Max > MaxConcurrencyMax:
		m := c.Max
		if m == explicitZeroMax {
			m = 0
		}
		add("concurrency.max", fmt.Sprintf("must be between 1 and %d (active runs per key value), got %d", MaxConcurrencyMax, m))
	}
	switch c.Strategy {
	case "":
		out.Strategy = StrategyQueue
	case StrategyQueue, StrategyCancelInProgress, StrategyCancelNewest:
	default:
		add("concurrency.strategy", fmt.Sprintf("must be %s, %s or %s, got %s", StrategyQueue, StrategyCancelInProgress, StrategyCancelNewest, quote(c.Strategy)))
	}
	return &out
}

// RenderKey renders a concurrency key template from a run's input: the
// text with each reference replaced by its value (strings as they are,
// anything else as JSON). A reference that does not resolve, a key over
// MaxConcurrencyKeyBytes and an empty key are errors naming the reference
// or the bound.
func RenderKey(tmpl string, input json.RawMessage) (string, error) {
	var key string
	if !strings.Contains(tmpl, "${") {
		key = tmpl
	} else {
		doc, err := json.Marshal(tmpl)
		if err != nil {
			return "", err
		}
		out, err := Render(doc, &Source{Input: input}, 4*MaxConcurrencyKeyBytes)
		if errors.Is(err, ErrTooLarge) {
			// Rendering stops early, at a bound of its own: the limit that
			// matters to the caller is the key's.
			return "", fmt.Errorf("concurrency key %s renders over the limit of %d bytes: %w", tmpl, MaxConcurrencyKeyBytes, ErrTooLarge)
		}
		if err != nil {
			return "", fmt.Errorf("concurrency key %s: %w", tmpl, err)
		}
		if strictjson.Kind(out) == "string" {
			if err := json.Unmarshal(out, &key); err != nil {
				return "", err
			}
		} else {
			key = string(out)
		}
	}
	switch {
	case key == "":
		return "", fmt.Errorf("concurrency key %s renders empty", tmpl)
	case len(key) > MaxConcurrencyKeyBytes:
		return "", fmt.Errorf("concurrency key %s renders %d bytes, over the limit of %d", tmpl, len(key), MaxConcurrencyKeyBytes)
	}
	return key, nil
}

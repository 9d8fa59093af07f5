package main

import (
	"context"
	"log/slog"

	"github.com/VictoriaMetrics/metrics"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/store"
	"github.com/orchestrator/orchestrator/triggers"
	"github.com/orchestrator/orchestrator/triggers/kafkatrigger"
	"github.com/orchestrator/orchestrator/triggers/natstrigger"
)

// startTriggers wires webhooks and stream triggers: engine.Triggers over the
// store, and the manager that runs a consumer per enabled NATS or Kafka
// trigger, told of every change at once.
//
// Webhook HMAC secrets are sealed with a key derived from the checkpoint
// key file (CHECKPOINT_KEY_FILE, created when absent), so that a copy of the
// database alone does not give them away.
func startTriggers(ctx context.Context, c *config, db *store.DB, eng *engine.Engine, set *metrics.Set, log *slog.Logger) (*engine.Triggers, *triggers.Manager, error) {
	key, _, err := loadOrCreateKey(checkpointKeyPath(c))
	if err != nil {
		return nil, nil, err
	}
	sealer, err := engine.NewSealer(key.Seed())
	if err != nil {
		return nil, nil, err
	}
	trig := &engine.Triggers{Store: db, Engine: eng, Sealer: sealer}
	m := &triggers.Manager{Triggers: trig, Logger: log, Metrics: set, Consumers: map[engine.TriggerKind]triggers.Consumer{
		engine.TriggerNATS:  &natstrigger.Consumer{},
		engine.TriggerKafka: &kafkatrigger.Consumer{},
	}}
	trig.StatusFunc, trig.ChangedFunc = m.Status, m.Nudge
	if err := m.Start(ctx); err != nil {
		return nil, nil, err
	}
	return trig, m, nil
}

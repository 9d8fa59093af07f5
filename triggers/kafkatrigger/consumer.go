// Package kafkatrigger consumes a Kafka topic for a trigger: a member of
// the trigger's consumer group, a run per record, and the group's offset
// committed only once the runs of every record before it are durable. A
// record delivered again after a crash (its run durable, the commit lost)
// returns the run it started: the run's idempotency key is the trigger's
// and the record's topic/partition/offset.
package kafkatrigger

import (
	"context"
	"errors"
	"fmt"
	"net/textproto"
	"os"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/triggers"
)

// DefaultBatch is how many records a poll takes, and fires at once.
const DefaultBatch = 64

// KeyHeader is the header a record's key is seen as by the input template
// (${/headers/Kafka-Key}).
const KeyHeader = "Kafka-Key"

// Consumer consumes Kafka triggers. The zero value works.
type Consumer struct {
	Batch int // default DefaultBatch
	// Opts are added to the client's options (tests: shorter timeouts).
	Opts []kgo.Opt
}

var _ triggers.Consumer = (*Consumer)(nil)

// Ref is what a record is known by on its run's origin and idempotency key.
func Ref(topic string, partition int32, offset int64) string {
	return fmt.Sprintf("%s/%d/%d", topic, partition, offset)
}

// errRetry: a record's run could not be recorded now; the consumer starts
// again from the last committed offset.
var errRetry = errors.New("a run could not be recorded; consuming again from the committed offset")

// Consume implements triggers.Consumer.
func (c *Consumer) Consume(ctx context.Context, t *engine.Trigger, s *triggers.Sink) error {
	cfg := t.Config.Kafka
	if cfg == nil {
		return errors.New("kafka trigger without kafka config")
	}
	batch := c.Batch
	if batch <= 0 {
		batch = DefaultBatch
	}
	// A static member (KIP-345) named by the host: a server started again
	// after a crash takes its partitions back at once instead of waiting
	// for the dead member's session to time out.
	host, _ := os.Hostname()
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...), kgo.ConsumerGroup(t.GroupName()), kgo.ConsumeTopics(cfg.Topic),
		kgo.InstanceID("orchestrator-" + host),
		kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.ClientID("orchestrator"), kgo.FetchMaxWait(time.Second),
	}, c.Opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	// A poll blocks rebalances until AllowRebalance; a plain Close would
	// wait for one to leave the group.
	defer cl.CloseAllowingRebalance()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = cl.Ping(pctx)
	cancel()
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	s.SetConnected(true)
	lag := map[int32]int64{}
	for {
		fetches := cl.PollRecords(ctx, batch)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		var ferr error
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) && ferr == nil {
				ferr = fmt.Errorf("fetch %s/%d: %w", topic, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		recs := fetches.Records()
		outs := make([]triggers.Outcome, len(recs))
		var wg sync.WaitGroup
		for i, r := range recs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				outs[i] = fire(ctx, r, s)
			}()
		}
		wg.Wait()
		for _, o := range outs {
			if o == triggers.Retry {
				return errRetry
			}
		}
		if len(recs) > 0 {
			if err := cl.CommitRecords(ctx, recs...); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("commit: %w", err)
			}
		}
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if n := len(p.Records); n > 0 {
				lag[p.Partition] = max(0, p.HighWatermark-p.Records[n-1].Offset-1)
			}
		})
		var total int64
		for _, n := range lag {
			total += n
		}
		s.SetLag(total)
		cl.AllowRebalance()
	}
}

// fire starts the run of one record; the caller commits once every record
// of the poll is Ack or Reject.
func fire(ctx context.Context, r *kgo.Record, s *triggers.Sink) triggers.Outcome {
	hdr := map[string][]string{}
	for _, h := range r.Headers {
		k := textproto.CanonicalMIMEHeaderKey(h.Key)
		hdr[k] = append(hdr[k], string(h.Value))
	}
	if r.Key != nil {
		hdr[KeyHeader] = []string{string(r.Key)}
	}
	_, out, _ := s.Fire(ctx, &engine.TriggerMessage{Body: r.Value, Headers: hdr, Ref: Ref(r.Topic, r.Partition, r.Offset)})
	return out
}

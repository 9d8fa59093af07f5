// Package natstrigger consumes a NATS JetStream stream for a trigger: a
// durable pull consumer, a run per message, each message acknowledged only
// once its run is durable. A message redelivered after a crash (the run was
// durable, the ack lost) returns the run it started: the run's idempotency
// key is the trigger's and the message's Nats-Msg-Id, else its stream
// sequence.
package natstrigger

import (
	"context"
	"errors"
	"fmt"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orchestrator/orchestrator/engine"
	"github.com/orchestrator/orchestrator/triggers"
)

// Defaults of a Consumer.
const (
	DefaultBatch = 64          // messages fetched, and fired at once
	fetchWait    = time.Second // a fetch waits this long for messages
	retryDelay   = time.Second // before a message whose run could not be recorded is redelivered
)

// Consumer consumes NATS triggers. The zero value works.
type Consumer struct {
	Batch int // default DefaultBatch
}

var _ triggers.Consumer = (*Consumer)(nil)

// Ref is what a message is known by on its run's origin and idempotency
// key: msgid:<Nats-Msg-Id> when it has one, else seq:<stream>:<sequence>.
func Ref(msgID, stream string, seq uint64) string {
	if msgID != "" {
		return "msgid:" + msgID
	}
	return "seq:" + stream + ":" + strconv.FormatUint(seq, 10)
}

// Consume implements triggers.Consumer: it connects, makes (or takes up)
// the durable consumer and fires every message until ctx is done or the
// connection closes.
func (c *Consumer) Consume(ctx context.Context, t *engine.Trigger, s *triggers.Sink) error {
	cfg := t.Config.NATS
	if cfg == nil {
		return errors.New("nats trigger without nats config")
	}
	batch, ackWait := c.Batch, cfg.AckWaitDuration()
	if batch <= 0 {
		batch = DefaultBatch
	}
	closed := make(chan struct{})
	var once sync.Once
	nc, err := nats.Connect(strings.Join(cfg.Servers, ","), nats.Name("orchestrator trigger "+t.TenantID+"/"+t.Name),
		nats.NoReconnect(), nats.Timeout(5*time.Second),
		nats.ClosedHandler(func(*nats.Conn) { once.Do(func() { close(closed) }) }))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	stream, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", cfg.Stream, err)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: t.DurableName(), FilterSubject: cfg.Subject, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: ackWait, MaxAckPending: 4 * batch, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("consumer %s: %w", t.DurableName(), err)
	}
	s.SetConnected(true)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-closed:
			return errors.New("connection closed")
		default:
		}
		msgs, err := cons.Fetch(batch, jetstream.FetchMaxWait(fetchWait))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("fetch: %w", err)
		}
		var wg sync.WaitGroup
		for m := range msgs.Messages() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				fire(ctx, cfg.Stream, m, s)
			}()
		}
		wg.Wait()
		if err := msgs.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			return fmt.Errorf("fetch: %w", err)
		}
		if info, err := cons.Info(ctx); err == nil {
			s.SetLag(int64(info.NumPending))
		}
	}
}

// fire starts the run of one message and acknowledges it once the run is
// durable; a message that can never start one is terminated, one whose run
// could not be recorded now is redelivered.
func fire(ctx context.Context, stream string, m jetstream.Msg, s *triggers.Sink) {
	var seq uint64
	if meta, err := m.Metadata(); err == nil {
		seq = meta.Sequence.Stream
	}
	hdr := map[string][]string{}
	for k, v := range m.Headers() {
		hdr[textproto.CanonicalMIMEHeaderKey(k)] = v
	}
	msg := &engine.TriggerMessage{Body: m.Data(), Headers: hdr,
		Ref: Ref(m.Headers().Get(jetstream.MsgIDHeader), stream, seq)}
	_, out, err := s.Fire(ctx, msg)
	switch out {
	case triggers.Ack:
		m.Ack()
	case triggers.Reject:
		m.TermWithReason(truncate(err.Error(), 256))
	default:
		m.NakWithDelay(retryDelay)
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

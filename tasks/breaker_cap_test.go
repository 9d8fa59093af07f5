package tasks

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"
	"github.com/matryer/is"
)

func TestBreakers_Bounded(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	set := metrics.NewSet()
	bs := newBreakers("http_host", BreakerConfig{Failures: 1, OpenFor: DefaultBreakerOpenFor}, set)
	open := bs.get("down.example:443")
	done, err := open.cb.Allow()
	is.NoErr(err)
	done(errHostFailed) // one failure opens it
	for i := 0; i < maxBreakers+10; i++ {
		bs.get(fmt.Sprintf("host-%d.example:443", i))
	}
	is.True(len(bs.byHost) <= maxBreakers)                  // bounded
	is.Equal(bs.state("down.example:443").String(), "open") // an open breaker is kept
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	is.True(strings.Count(buf.String(), "orchestrator_circuit_breaker_state") <= maxBreakers) // and so are the gauges
}

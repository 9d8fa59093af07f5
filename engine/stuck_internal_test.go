package engine

import (
	"testing"
	"time"

	"github.com/matryer/is"
)

func TestStuckCheckInterval(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	is.Equal(stuckCheckInterval(2*time.Minute), 30*time.Second) // a quarter of STUCK_AFTER
	is.Equal(stuckCheckInterval(10*time.Second), 2500*time.Millisecond)
	is.Equal(stuckCheckInterval(4*time.Minute), time.Minute)    // a quarter, up to a minute
	is.Equal(stuckCheckInterval(time.Hour), time.Minute)        // and no more however long STUCK_AFTER is
	is.Equal(stuckCheckInterval(24*time.Hour), time.Minute)     // (the default is an hour)
	is.Equal(stuckCheckInterval(2*time.Second), time.Second)    // at least a second
	is.Equal(stuckCheckInterval(time.Millisecond), time.Second) // even for a tiny one
	for _, d := range []time.Duration{4 * time.Second, 10 * time.Second, time.Minute, time.Hour} {
		is.True(stuckCheckInterval(d) <= d/4) // from 4s up, a run is never checked more than STUCK_AFTER/4 late
	}
}

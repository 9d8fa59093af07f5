package policy

import (
	"strconv"
	"strings"
	"testing"
)

// TestTermTable_Bounded checks that interning shares the term of a repeated
// string and holds at most maxInterned strings of at most maxInternLen
// bytes, whatever stream of strings it is given.
func TestTermTable_Bounded(t *testing.T) {
	var tt termTable
	if a, b := tt.get("runs.start"), tt.get("runs.start"); a != b {
		t.Errorf("a repeated string got two terms")
	}
	long := strings.Repeat("x", maxInternLen+1)
	if tt.get(long) == tt.get(long) {
		t.Errorf("a string longer than %d bytes was kept", maxInternLen)
	}
	for i := range 3 * maxInterned {
		s := "name-" + strconv.Itoa(i)
		if got := tt.get(s).Value.String(); got != strconv.Quote(s) {
			t.Fatalf("term of %q is %s", s, got)
		}
		if n := len(tt.m); n > maxInterned {
			t.Fatalf("the table holds %d strings, limit %d", n, maxInterned)
		}
	}
	if _, ok := tt.m[long]; ok {
		t.Errorf("the table holds a string of %d bytes", len(long))
	}
}

package tasks

import "testing"

// README: "link-local and cloud metadata addresses are refused unless an
// address rule allows them". Alibaba Cloud's instance metadata service
// (credentials of the instance's RAM role) is 100.100.100.200, outside
// 169.254.0.0/16, and the default guard lets it through.
func TestReviewGuardRefusesAlibabaMetadata(t *testing.T) {
	g, err := newGuard(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"100.100.100.200:80", "[::ffff:100.100.100.200]:80"} {
		if err := g.check("100.100.100.200", addr); err == nil {
			t.Errorf("connection to %s (Alibaba Cloud metadata) allowed by the default rules", addr)
		}
	}
}

package tasks

import (
	"strings"
	"testing"

	"github.com/matryer/is"
)

func TestParseRules(t *testing.T) {
	t.Parallel()

	t.Run("it reads and normalizes every kind of rule", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		rules, err := ParseRules(" 10.0.0.0/8, 10.1.2.3/16 ,169.254.169.254,FD00:EC2::254,Api.Example.COM.,*.internal.example,,  ")
		is.NoErr(err)                                                                                                                       // valid
		is.Equal(rules, []string{"10.0.0.0/8", "10.1.0.0/16", "169.254.169.254", "fd00:ec2::254", "api.example.com", "*.internal.example"}) // normalized, blanks skipped
	})

	t.Run("an empty list is no rules", func(t *testing.T) {
		t.Parallel()
		is := is.New(t)
		rules, err := ParseRules("")
		is.NoErr(err)           // valid
		is.Equal(len(rules), 0) // none
	})

	for _, bad := range []string{"10.0.0.0/33", "10.0.0", "not a host", "*.", "exa_mple..com", "-bad.com", "http://example.com", "a*.example.com", "fe80::1%eth0"} {
		t.Run("it refuses "+bad, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			_, err := ParseRules("10.0.0.0/8," + bad)
			is.True(err != nil)                                                         // refused
			is.True(strings.Contains(err.Error(), strings.TrimSpace(bad)) || bad == "") // naming the entry
		})
	}
}

func FuzzParseRules(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "*.example.com,api.example.com", "::ffff:10.0.0.0/104", "169.254.169.254", ", ,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rules, err := ParseRules(s)
		if err != nil {
			return
		}
		again, err := ParseRules(strings.Join(rules, ","))
		if err != nil {
			t.Fatalf("normalized rules %q do not parse: %v", rules, err)
		}
		if strings.Join(again, ",") != strings.Join(rules, ",") {
			t.Fatalf("normalizing %q twice: %q, then %q", s, rules, again)
		}
	})
}

func TestGuard_Check(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		allow, deny []string
		host, addr  string
		refused     string // part of the reason; "" = allowed
	}{
		{"public addresses are allowed by default", nil, nil, "example.com", "93.184.215.14:443", ""},
		{"loopback is allowed by default", nil, nil, "localhost", "127.0.0.1:80", ""},
		{"the metadata address is refused by default", nil, nil, "169.254.169.254", "169.254.169.254:80", "169.254.0.0/16"},
		{"a name resolving to link-local is refused", nil, nil, "rebind.example", "169.254.10.1:80", "169.254.0.0/16"},
		{"IPv6 link-local is refused", nil, nil, "x", "[fe80::1%eth0]:80", "fe80::/10"},
		{"AWS IPv6 metadata is refused", nil, nil, "x", "[fd00:ec2::254]:80", "fd00:ec2::254"},
		{"IPv4-mapped metadata is refused", nil, nil, "x", "[::ffff:169.254.169.254]:80", "169.254.0.0/16"},
		{"a deny CIDR refuses", nil, []string{"10.0.0.0/8"}, "db.internal", "10.1.2.3:5432", `deny rule "10.0.0.0/8"`},
		{"a deny name refuses that name", nil, []string{"db.internal"}, "db.internal", "10.1.2.3:5432", `deny rule "db.internal"`},
		{"a deny wildcard refuses names under it", nil, []string{"*.internal"}, "a.b.internal", "10.1.2.3:80", `deny rule "*.internal"`},
		{"a deny wildcard leaves the bare name", nil, []string{"*.internal"}, "internal", "10.1.2.3:80", ""},
		{"deny wins over allow", []string{"10.0.0.0/8"}, []string{"10.0.0.5"}, "x", "10.0.0.5:80", "deny rule"},
		{"an allow list refuses what it does not match", []string{"api.example.com"}, nil, "other.example.com", "93.184.215.14:443", "matches no allow rule"},
		{"an allow list allows what it matches", []string{"api.example.com"}, nil, "api.example.com", "93.184.215.14:443", ""},
		{"an allow address overrides the link-local default", []string{"169.254.169.254"}, nil, "169.254.169.254", "169.254.169.254:80", ""},
		{"an allow name does not override the link-local default", []string{"*.example.com"}, nil, "evil.example.com", "169.254.169.254:80", "refused by default"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			g, err := newGuard(c.allow, c.deny)
			is.NoErr(err) // rules
			err = g.check(c.host, c.addr)
			if c.refused == "" {
				is.NoErr(err) // allowed
				return
			}
			is.True(err != nil)                               // refused
			is.True(strings.Contains(err.Error(), c.refused)) // by the rule named
		})
	}
}

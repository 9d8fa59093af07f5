package tasks

import (
	"net/netip"
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
		{"Alibaba Cloud metadata is refused", nil, nil, "x", "100.100.100.200:80", "100.100.100.200"},
		{"IPv4-mapped Alibaba Cloud metadata is refused", nil, nil, "x", "[::ffff:100.100.100.200]:80", "100.100.100.200"},
		{"NAT64 metadata is refused", nil, nil, "x", "[64:ff9b::a9fe:a9fe]:80", "NAT64 for 169.254.169.254"},

		{"0.0.0.0 is refused by default", nil, nil, "0.0.0.0", "0.0.0.0:80", "unspecified 0.0.0.0/8"},
		{"any 0.0.0.0/8 address is refused by default", nil, nil, "x", "0.1.2.3:80", "unspecified 0.0.0.0/8"},
		{"IPv4-mapped 0.0.0.0 is refused by default", nil, nil, "x", "[::ffff:0.0.0.0]:80", "unspecified 0.0.0.0/8"},
		{":: is refused by default", nil, nil, "::", "[::]:80", "unspecified ::"},
		{"an allow rule naming 0.0.0.0 lets it through", []string{"0.0.0.0"}, nil, "0.0.0.0", "0.0.0.0:80", ""},

		{"a loopback deny refuses 0.0.0.0", nil, []string{"127.0.0.0/8"}, "0.0.0.0", "0.0.0.0:80", `deny rule "127.0.0.0/8" (HTTP_TASK_DENY); 0.0.0.0 means this host, which the rule covers as 127.0.0.1`},
		{"a loopback deny refuses IPv4-mapped 0.0.0.0", nil, []string{"127.0.0.0/8"}, "x", "[::ffff:0.0.0.0]:80", `deny rule "127.0.0.0/8"`},
		{"a loopback deny refuses IPv4-mapped loopback", nil, []string{"127.0.0.0/8"}, "x", "[::ffff:127.0.0.1]:80", `deny rule "127.0.0.0/8"`},
		{"a loopback deny refuses ::1", nil, []string{"127.0.0.0/8"}, "::1", "[::1]:80", `deny rule "127.0.0.0/8" (HTTP_TASK_DENY); ::1 is loopback`},
		{"a loopback deny refuses ::", nil, []string{"127.0.0.0/8"}, "::", "[::]:80", `deny rule "127.0.0.0/8" (HTTP_TASK_DENY); :: means this host`},
		{"a loopback deny refuses NAT64 loopback", nil, []string{"127.0.0.0/8"}, "x", "[64:ff9b::7f00:1]:80", `deny rule "127.0.0.0/8" (HTTP_TASK_DENY); 64:ff9b::7f00:1 is NAT64 for 127.0.0.1`},
		{"a deny of ::1 refuses IPv4 loopback", nil, []string{"::1"}, "localhost", "127.0.0.1:80", `deny rule "::1" (HTTP_TASK_DENY); 127.0.0.1 is loopback`},
		{"a deny of ::1 refuses 0.0.0.0", nil, []string{"::1"}, "x", "0.0.0.0:80", `deny rule "::1"`},
		{"a deny of one loopback address leaves the others", nil, []string{"127.0.0.2"}, "x", "127.0.0.1:80", ""},
		{"a deny of 0.0.0.0/8 does not refuse loopback", nil, []string{"0.0.0.0/8"}, "x", "127.0.0.1:80", ""},
		{"a deny of a private range refuses its IPv4-mapped form", nil, []string{"10.0.0.0/8"}, "x", "[::ffff:10.1.2.3]:80", `deny rule "10.0.0.0/8"`},

		{"an allow of 127.0.0.1 allows it", []string{"127.0.0.1"}, nil, "x", "127.0.0.1:80", ""},
		{"an allow of 127.0.0.1 allows its IPv4-mapped form", []string{"127.0.0.1"}, nil, "x", "[::ffff:127.0.0.1]:80", ""},
		{"an allow of 127.0.0.1 does not allow another address", []string{"127.0.0.1"}, nil, "x", "10.0.0.1:80", "matches no allow rule"},
		{"an allow of 127.0.0.1 does not allow a mapped other address", []string{"127.0.0.1"}, nil, "x", "[::ffff:10.0.0.1]:80", "matches no allow rule"},
		{"an allow of 127.0.0.1 does not allow 0.0.0.0", []string{"127.0.0.1"}, nil, "x", "0.0.0.0:80", "matches no allow rule"},
		{"an allow of 127.0.0.1 does not allow ::", []string{"127.0.0.1"}, nil, "x", "[::]:80", "matches no allow rule"},
		{"an allow of 127.0.0.1 does not allow ::1", []string{"127.0.0.1"}, nil, "x", "[::1]:80", "matches no allow rule"},
		{"an allow of 127.0.0.1 does not allow NAT64 forms", []string{"127.0.0.1"}, nil, "x", "[64:ff9b::7f00:1]:80", "matches no allow rule"},
		{"an allow of mapped 127.0.0.1 is an allow of 127.0.0.1", []string{"::ffff:127.0.0.1"}, nil, "x", "10.0.0.1:80", "matches no allow rule"},
		{"an allow of 127.0.0.1 does not override the unspecified default", []string{"127.0.0.1", "*.example.com"}, nil, "a.example.com", "0.0.0.0:80", "refused by default"},
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
			is.True(err != nil) // refused
			if !strings.Contains(err.Error(), c.refused) {
				t.Errorf("refused with %q, want it to say %q", err, c.refused) // by the rule named
			}
		})
	}
}

func TestAliases(t *testing.T) {
	t.Parallel()
	cases := []struct {
		addr string
		want []string // the addresses deny rules see, the first the one allow rules see
	}{
		{"93.184.215.14", []string{"93.184.215.14"}},
		{"2001:db8::1", []string{"2001:db8::1"}},
		{"::ffff:10.1.2.3", []string{"10.1.2.3"}},
		{"fe80::1%eth0", []string{"fe80::1"}},
		{"127.0.0.1", []string{"127.0.0.1", "::1"}},
		{"127.3.4.5", []string{"127.3.4.5", "127.0.0.1", "::1"}},
		{"::ffff:127.0.0.1", []string{"127.0.0.1", "::1"}},
		{"::1", []string{"::1", "127.0.0.1"}},
		{"0.0.0.0", []string{"0.0.0.0", "127.0.0.1", "::1"}},
		{"0.1.2.3", []string{"0.1.2.3", "127.0.0.1", "::1"}},
		{"::ffff:0.0.0.0", []string{"0.0.0.0", "127.0.0.1", "::1"}},
		{"::", []string{"::", "127.0.0.1", "::1"}},
		{"64:ff9b::7f00:1", []string{"64:ff9b::7f00:1", "127.0.0.1", "::1"}},
		{"64:ff9b::a9fe:a9fe", []string{"64:ff9b::a9fe:a9fe", "169.254.169.254"}},
		{"64:ff9b::0:0", []string{"64:ff9b::", "0.0.0.0", "127.0.0.1", "::1"}},
	}
	for _, c := range cases {
		t.Run(c.addr, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			var got []string
			for _, a := range aliases(netip.MustParseAddr(c.addr)) {
				got = append(got, a.addr.String())
			}
			is.Equal(got, c.want) // the addresses a connection reaches
		})
	}
}

package tasks

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// defaultRefused are the targets the http task refuses unless an address rule
// of HTTP_TASK_ALLOW names them: the unspecified addresses, which mean "this
// host" when dialled (0.0.0.0/8, ::); link-local addresses, where clouds
// serve instance metadata and credentials (169.254.169.254); AWS's IPv6
// metadata address; and Alibaba Cloud's metadata address.
var defaultRefused = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified 0.0.0.0/8 (this host)"},
	{netip.MustParsePrefix("::/128"), "unspecified :: (this host)"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local 169.254.0.0/16 (cloud metadata)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local fe80::/10"},
	{netip.MustParsePrefix("fd00:ec2::254/128"), "AWS metadata fd00:ec2::254"},
	{netip.MustParsePrefix("100.100.100.200/32"), "Alibaba Cloud metadata 100.100.100.200"},
}

// Addresses that reach another address than the one written.
var (
	// thisNetwork is 0.0.0.0/8: connecting to 0.0.0.0 reaches this host.
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	// nat64 is the well-known NAT64 prefix (RFC 6052): on a network with a
	// NAT64 gateway, 64:ff9b::7f00:1 is a connection to 127.0.0.1.
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	loopback4 = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	loopback6 = netip.IPv6Loopback()
)

// alias is an address a connection may reach, and why (empty for the
// address dialled itself).
type alias struct {
	addr netip.Addr
	why  string
}

// aliases returns the addresses a connection to ip reaches, for deny rules
// and the default refusals: ip itself with any zone dropped and an
// IPv4-mapped address unmapped; the IPv4 address inside a NAT64 address; and
// for every loopback or unspecified address of either family (127.0.0.0/8,
// ::1, 0.0.0.0/8, ::) also 127.0.0.1 and ::1, since they all reach this host.
// Allow rules see only the first, so that they allow no more than they name.
func aliases(ip netip.Addr) []alias {
	ip = ip.WithZone("").Unmap()
	out := []alias{{addr: ip}}
	if nat64.Contains(ip) {
		b := ip.As16()
		v4 := netip.AddrFrom4([4]byte(b[12:]))
		out = append(out, alias{addr: v4, why: ip.String() + " is NAT64 for " + v4.String()})
	}
	for _, a := range out {
		var why string
		switch {
		case a.addr.IsUnspecified() || thisNetwork.Contains(a.addr):
			why = a.addr.String() + " means this host"
		case a.addr.IsLoopback():
			why = a.addr.String() + " is loopback"
		default:
			continue
		}
		for _, lo := range []netip.Addr{loopback4, loopback6} {
			if lo != a.addr {
				out = append(out, alias{addr: lo, why: why})
			}
		}
		break
	}
	return out
}

// reason says which rule refused a connection, and through which alias of
// the address dialled.
func (a alias) reason(rule string) string {
	if a.why == "" {
		return rule
	}
	return fmt.Sprintf("%s; %s, which the rule covers as %s", rule, a.why, a.addr)
}

// rule is one entry of an allow or deny list: an address range or a host name.
type rule struct {
	text   string       // normalized, for messages
	prefix netip.Prefix // valid for address rules
	name   string       // host name rules: the name, or the suffix after "*."
	wild   bool         // "*.example.com": any name under the suffix
}

// ParseRules reads a comma-separated list of targets, as HTTP_TASK_ALLOW and
// HTTP_TASK_DENY hold them: CIDRs (10.0.0.0/8, fd00::/8), single addresses
// (169.254.169.254), host names (api.example.com) and wildcard names
// (*.example.com, any name under example.com but not example.com itself).
// Blank entries are skipped; it returns the entries normalized (lowercase
// names, masked prefixes), or an error naming the first invalid one.
func ParseRules(s string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		r, err := parseRule(part)
		if err != nil {
			return nil, err
		}
		out = append(out, r.text)
	}
	return out, nil
}

func parseRule(s string) (rule, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return rule{}, fmt.Errorf("target rule %q: not a valid CIDR", s)
		}
		if p.Addr().Zone() != "" {
			return rule{}, fmt.Errorf("target rule %q: an address rule cannot have a zone", s)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		p = p.Masked()
		return rule{text: p.String(), prefix: p}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return rule{}, fmt.Errorf("target rule %q: an address rule cannot have a zone", s)
		}
		a = a.Unmap()
		p := netip.PrefixFrom(a, a.BitLen())
		return rule{text: a.String(), prefix: p}, nil
	}
	name := normalizeHost(s)
	wild := strings.HasPrefix(name, "*.")
	if wild {
		name = name[2:]
	}
	if !validHostName(name) {
		return rule{}, fmt.Errorf("target rule %q: not a CIDR, an IP address or a host name", s)
	}
	text := name
	if wild {
		text = "*." + name
	}
	return rule{text: text, name: name, wild: wild}, nil
}

// validHostName reports whether s is a DNS name: dot-separated labels of
// letters, digits, '-' and '_', not ending in an all-digit label (which would
// be a malformed address).
func validHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	last := labels[len(labels)-1]
	return strings.Trim(last, "0123456789") != ""
}

// normalizeHost lowercases a host name and drops a trailing dot.
func normalizeHost(s string) string {
	return strings.TrimSuffix(strings.ToLower(s), ".")
}

// match reports whether the rule covers a connection to ip for host.
func (r *rule) match(host string, ip netip.Addr) bool {
	if r.prefix.IsValid() {
		return r.prefix.Contains(ip)
	}
	if r.wild {
		return strings.HasSuffix(host, "."+r.name)
	}
	return host == r.name
}

// guard decides which targets the http task may connect to. It is immutable.
type guard struct {
	allow, deny []rule
}

func newGuard(allow, deny []string) (*guard, error) {
	g := &guard{}
	for _, s := range allow {
		r, err := parseRule(s)
		if err != nil {
			return nil, fmt.Errorf("allow: %w", err)
		}
		g.allow = append(g.allow, r)
	}
	for _, s := range deny {
		r, err := parseRule(s)
		if err != nil {
			return nil, fmt.Errorf("deny: %w", err)
		}
		g.deny = append(g.deny, r)
	}
	return g, nil
}

// refusedError is a connection the guard did not allow.
type refusedError struct {
	addr string // ip:port
	host string // the host name the request named
	why  string // the rule
}

func (e *refusedError) Error() string {
	if e.host != "" && e.host != hostOf(e.addr) {
		return fmt.Sprintf("refused to connect to %s (host %q): %s", e.addr, e.host, e.why)
	}
	return fmt.Sprintf("refused to connect to %s: %s", e.addr, e.why)
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

// check decides a connection to addr (a resolved ip:port) made for host (the
// request's host name, normalized). Deny rules win, and they see every alias
// of the address (so a deny of 127.0.0.0/8 also refuses ::1, 0.0.0.0, ::,
// ::ffff:127.0.0.1 and 64:ff9b::7f00:1); when there are allow rules, only
// what they match is allowed, the address dialled taken as it is (unmapped);
// the default refusals (unspecified, link-local and metadata addresses, and
// their aliases) give way only to an allow rule naming the address (a
// host-name rule does not, so that a name resolving or rebinding to
// 169.254.169.254 cannot reach the metadata service).
func (g *guard) check(host, addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return &refusedError{addr: addr, host: host, why: "not an IP address"}
	}
	forms := aliases(ap.Addr())
	ip := forms[0].addr
	for i := range g.deny {
		for _, a := range forms {
			if g.deny[i].match(host, a.addr) {
				return &refusedError{addr: addr, host: host, why: a.reason(fmt.Sprintf("matches deny rule %q (HTTP_TASK_DENY)", g.deny[i].text))}
			}
		}
	}
	allowed, named := len(g.allow) == 0, false
	for i := range g.allow {
		if g.allow[i].match(host, ip) {
			allowed = true
			named = named || g.allow[i].prefix.IsValid()
		}
	}
	if !allowed {
		return &refusedError{addr: addr, host: host, why: "matches no allow rule (HTTP_TASK_ALLOW=" + truncate(g.allowList()) + ")"}
	}
	if named {
		return nil
	}
	for _, d := range defaultRefused {
		for _, a := range forms {
			if d.prefix.Contains(a.addr) {
				return &refusedError{addr: addr, host: host, why: a.reason(fmt.Sprintf("%s is refused by default; allow the address explicitly with HTTP_TASK_ALLOW=%s", d.why, ip))}
			}
		}
	}
	return nil
}

func (g *guard) allowList() string {
	texts := make([]string, len(g.allow))
	for i := range g.allow {
		texts[i] = g.allow[i].text
	}
	return strings.Join(texts, ",")
}

// dialContext dials like base, checking each resolved address with check
// before connecting, so that redirects and DNS answers that change between
// lookups (rebinding) meet the same rules as the first request.
func (g *guard) dialContext(base *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host := normalizeHost(hostOf(addr))
		d := *base
		d.Control = func(_, address string, _ syscall.RawConn) error {
			return g.check(host, address)
		}
		return d.DialContext(ctx, network, addr)
	}
}

// newDialer is the dialer of the default transport.
func newDialer() *net.Dialer {
	return &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
}

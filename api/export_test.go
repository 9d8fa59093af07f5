package api

// RouteRule is a route of the route table as the tests outside the package
// see it.
type RouteRule struct {
	Method, Path string
	Perm         Permission
}

// RouteTable returns the routes Handler serves, from the table itself, so
// that a test walking it covers a route added later.
func RouteTable() []RouteRule {
	var out []RouteRule
	for _, rt := range (&Server{}).routes() {
		out = append(out, RouteRule{rt.method, rt.path, rt.perm})
	}
	return out
}

// SetTenantReplayMax bounds the events a resumed tenant stream reads to
// catch up, for the tests of its resync; call it before Handler.
func (s *Server) SetTenantReplayMax(n int) { s.replayMax = n }

package gateway

// RoutePatterns returns the patterns g registered, in registration order,
// for the external tests.
func RoutePatterns(g *Gateway) []string { return g.mux.Patterns() }

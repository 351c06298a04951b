package gateway

import "slices"

// RoutePatterns returns the patterns g registered, in registration order,
// for the external tests.
func RoutePatterns(g *Gateway) []string { return slices.Clone(g.mux.patterns) }

package gateway

import (
	"net/http"
)

// APIVersion is the version of FIT-Connect's Submission API that the
// gateway implements, as GET /v1/info reports it. It names the interface a
// client can rely on, not the build of Amtsbote: a client written for
// Submission API 1.1.3 compares against it like against FIT-Connect's own
// service. It changes when the implemented API version changes.
var APIVersion = Version{Major: 1, Minor: 1, Patch: 3}

// Version is FIT-Connect's semantic version object.
type Version struct {
	Major int `json:"major"`
	Minor int `json:"minor"`
	Patch int `json:"patch"`
}

// handleInfo answers GET /v1/info.
func (g *Gateway) handleInfo(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Version Version `json:"version"`
	}{APIVersion})
}

// handleJWKS publishes Amtsbote's public signing key(s): they verify access
// tokens, route signatures and Amtsbote's own security event tokens.
func (g *Gateway) handleJWKS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(g.jwks)
}

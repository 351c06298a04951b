package httpapi

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// WriteJSON answers with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		problem.Write(w, problem.Internal())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// RequireContentType checks the request's media type against want.
func RequireContentType(r *http.Request, want ...string) error {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil {
		for _, w := range want {
			if strings.EqualFold(mt, w) {
				return nil
			}
		}
	}
	return problem.UnsupportedMediaType(ct, want...)
}

// PageOf reads limit (1..500, default 100) and offset (≥ 0) from the query.
func PageOf(r *http.Request) (store.Page, error) {
	var p store.Page
	q := r.URL.Query()
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > store.MaxPageLimit {
			return p, problem.InvalidRequest("limit", fmt.Sprintf("limit %q must be an integer from 1 to %d", s, store.MaxPageLimit))
		}
		p.Limit = n
	}
	if s := q.Get("offset"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return p, problem.InvalidRequest("offset", fmt.Sprintf("offset %q must be a non-negative integer", s))
		}
		p.Offset = n
	}
	return p.Normalize(), nil
}

// CanonicalUUID returns s as a lower-case canonical UUID, or false when s
// is not a UUID in its 36-character form.
func CanonicalUUID(s string) (string, bool) {
	if len(s) != 36 {
		return "", false
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return "", false
	}
	return u.String(), true
}

// PathUUID reads and checks a UUID path parameter.
func PathUUID(r *http.Request, name string) (string, error) {
	raw := r.PathValue(name)
	id, ok := CanonicalUUID(raw)
	if !ok {
		return "", problem.InvalidRequest(name, fmt.Sprintf("%s %q is not a UUID", name, raw))
	}
	return id, nil
}

// QueryParam returns the one value of query parameter name and whether it
// is present; a repeated parameter is a problem.
func QueryParam(q url.Values, name string) (string, bool, error) {
	vs, ok := q[name]
	switch {
	case !ok:
		return "", false, nil
	case len(vs) > 1:
		return "", true, problem.InvalidRequest(name, fmt.Sprintf("%s is given %d times; give it once", name, len(vs)))
	}
	return vs[0], true, nil
}

// Version is FIT-Connect's semantic version object, as the info
// endpoints answer it.
type Version struct {
	Major int `json:"major"`
	Minor int `json:"minor"`
	Patch int `json:"patch"`
}

package httpapi

import (
	"encoding/json"
	"fmt"
	"math"
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

// RequireContentType checks the request's media type against want, and
// that its body comes without a content coding (RequireIdentity).
func RequireContentType(r *http.Request, want ...string) error {
	if err := RequireIdentity(r); err != nil {
		return err
	}
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

// RequireIdentity refuses a body sent with a content coding (gzip, br,
// …): none is supported, and such a body read as it is would fail as
// malformed, or pass as a body it is not (RFC 9110 8.4, 15.5.16).
func RequireIdentity(r *http.Request) error {
	for _, v := range r.Header.Values("Content-Encoding") {
		for coding := range strings.SplitSeq(v, ",") {
			if c := strings.TrimSpace(coding); c != "" && !strings.EqualFold(c, "identity") {
				return problem.New(problem.TypeUnsupportedMediaType, "Unsupported media type", http.StatusUnsupportedMediaType, "Content-Encoding",
					fmt.Sprintf("content coding %q is not supported; send the body without one", c))
			}
		}
	}
	return nil
}

// MaxQueryParams bounds the parameters of a query string, as Go's own
// parser does.
const MaxQueryParams = 10000

// Query parses the request's query string. Where Go's parser would drop a
// parameter silently (a raw ';', a bad '%' escape, more than
// MaxQueryParams parameters), it answers a 400 naming the parameter and
// what is wrong with it.
func Query(r *http.Request) (url.Values, error) {
	raw := r.URL.RawQuery
	if n := strings.Count(raw, "&") + 1; n > MaxQueryParams {
		return nil, problem.InvalidRequest("query", fmt.Sprintf("the query has %d parameters; at most %d are allowed", n, MaxQueryParams))
	}
	q := make(url.Values)
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		name := k
		if un, err := url.QueryUnescape(k); err == nil {
			name = un
		}
		if strings.Contains(pair, ";") {
			n, _, _ := strings.Cut(name, ";")
			return nil, problem.InvalidRequest(queryField(n), fmt.Sprintf("query parameter %q contains a raw ';': separate parameters with '&' and escape ';' as %%3B", n))
		}
		key, err := url.QueryUnescape(k)
		if err != nil {
			return nil, problem.InvalidRequest("query", fmt.Sprintf("query parameter name %q is not URL-encoded: %v", k, err))
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			return nil, problem.InvalidRequest(queryField(key), fmt.Sprintf("query parameter %s is not URL-encoded: %v", key, err))
		}
		q[key] = append(q[key], val)
	}
	return q, nil
}

// queryField names a parameter as a problem's field, or the query when
// the name is empty.
func queryField(name string) string {
	if name == "" {
		return "query"
	}
	return name
}

// PageOf reads limit (1..500, default 100) and offset (≥ 0) from the query.
func PageOf(r *http.Request) (store.Page, error) {
	q, err := Query(r)
	if err != nil {
		return store.Page{}, err
	}
	return PageFrom(q)
}

// PageFrom is PageOf of a query Query has already read. A parameter
// given twice is a problem; one given empty takes its default. Both are
// int32 in FIT-Connect's specifications.
func PageFrom(q url.Values) (store.Page, error) {
	var p store.Page
	s, _, err := QueryParam(q, "limit")
	if err != nil {
		return p, err
	}
	if s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > store.MaxPageLimit {
			return p, problem.InvalidRequest("limit", fmt.Sprintf("limit %q must be an integer from 1 to %d", s, store.MaxPageLimit))
		}
		p.Limit = n
	}
	if s, _, err = QueryParam(q, "offset"); err != nil {
		return p, err
	}
	if s != "" {
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil || n < 0 {
			return p, problem.InvalidRequest("offset", fmt.Sprintf("offset %q must be an integer from 0 to %d", s, math.MaxInt32))
		}
		p.Offset = int(n)
	}
	return p.Normalize(), nil
}

// CanonicalUUID returns s as a lower-case canonical UUID, or false when s
// is not a UUID in the forms FIT-Connect allows: 36 characters with
// hyphens or 32 hex digits without.
func CanonicalUUID(s string) (string, bool) {
	if len(s) != 36 && len(s) != 32 {
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

// Package problem implements RFC 7807 problem details as FIT-Connect uses
// them: every error answer of the HTTP APIs is application/problem+json
// with a type URI, a title, the status, a detail naming what was wrong and,
// as Amtsbote's extension, the offending field.
//
// Type URIs that FIT-Connect defines live under FITConnectBase; the types
// Amtsbote adds live under Base. Clients must treat unknown types by their
// status, as RFC 7807 and FIT-Connect's documentation require.
package problem

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// ContentType is the media type of a serialized Problem.
const ContentType = "application/problem+json"

// FITConnectBase is the prefix of the problem types FIT-Connect's
// Submission API defines.
const FITConnectBase = "https://schema.fitko.de/fit-connect/submission-api/problems/"

// Base is the prefix of the problem types Amtsbote defines itself.
const Base = "https://schema.amtsbote.de/problems/"

// Problem is one problem details object. It implements error so that
// domain code can return it and HTTP handlers can write it unchanged.
type Problem struct {
	// Type is a URI identifying the kind of problem.
	Type string
	// Title is a short summary of the kind of problem; it does not vary
	// between occurrences.
	Title string
	// Status is the HTTP status code.
	Status int
	// Detail explains this occurrence, naming the offending field or value.
	Detail string
	// Instance is a URI reference identifying this occurrence; optional.
	Instance string
	// Field names the offending field as a JSON path ("services[0].regions[1]"),
	// a query or path parameter, or a header; optional.
	Field string
	// Extra holds further members, serialized at the top level. Members
	// that collide with the ones above are ignored.
	Extra map[string]any
}

// Error returns the title, the detail and the field.
func (p *Problem) Error() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%d %s", p.Status, p.Title)
	if p.Detail != "" {
		b.WriteString(": ")
		b.WriteString(p.Detail)
	}
	if p.Field != "" {
		fmt.Fprintf(&b, " (field %s)", p.Field)
	}
	return b.String()
}

// Is reports whether target is a *Problem of the same type and status, so
// errors.Is(err, problem.NotFound("")) style checks compare kinds, not details.
func (p *Problem) Is(target error) bool {
	t, ok := target.(*Problem)
	return ok && t.Type == p.Type && t.Status == p.Status
}

// WithField returns a copy of p naming field, in Field and in the detail.
func (p *Problem) WithField(field string) *Problem {
	c := p.clone()
	// The detail names the new field, not the one it named before.
	if c.Field != "" {
		c.Detail = strings.TrimPrefix(c.Detail, c.Field+": ")
	}
	c.Field = field
	c.Detail = withField(field, c.Detail)
	return c
}

// With returns a copy of p with the extension member key set to v.
func (p *Problem) With(key string, v any) *Problem {
	c := p.clone()
	if c.Extra == nil {
		c.Extra = make(map[string]any, 1)
	}
	c.Extra[key] = v
	return c
}

func (p *Problem) clone() *Problem {
	c := *p
	if p.Extra != nil {
		c.Extra = make(map[string]any, len(p.Extra)+1)
		for k, v := range p.Extra {
			c.Extra[k] = v
		}
	}
	return &c
}

var reserved = map[string]bool{"type": true, "title": true, "status": true, "detail": true, "instance": true, "field": true}

// MarshalJSON writes the standard members, then Extra.
func (p *Problem) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, 6+len(p.Extra))
	for k, v := range p.Extra {
		if !reserved[k] {
			m[k] = v
		}
	}
	m["type"] = p.Type
	m["title"] = p.Title
	m["status"] = p.Status
	if p.Detail != "" {
		m["detail"] = p.Detail
	}
	if p.Instance != "" {
		m["instance"] = p.Instance
	}
	if p.Field != "" {
		m["field"] = p.Field
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads the standard members and keeps the rest in Extra.
func (p *Problem) UnmarshalJSON(data []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("decode problem: %w", err)
	}
	*p = Problem{}
	fields := map[string]any{
		"type": &p.Type, "title": &p.Title, "status": &p.Status,
		"detail": &p.Detail, "instance": &p.Instance, "field": &p.Field,
	}
	for k, raw := range m {
		if dst, ok := fields[k]; ok {
			if err := json.Unmarshal(raw, dst); err != nil {
				return fmt.Errorf("decode problem member %s: %w", k, err)
			}
			continue
		}
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("decode problem member %s: %w", k, err)
		}
		if p.Extra == nil {
			p.Extra = make(map[string]any)
		}
		p.Extra[k] = v
	}
	return nil
}

// As returns the *Problem in err's chain, if any.
func As(err error) (*Problem, bool) {
	if err == nil {
		return nil, false
	}
	var p *Problem
	if errors.As(err, &p) {
		return p, true
	}
	return nil, false
}

// Write sends p as the response: Content-Type application/problem+json,
// status p.Status (500 when unset), and the JSON body.
func Write(w http.ResponseWriter, p *Problem) { WriteAs(w, p, ContentType) }

// WriteAs sends p as Write does, under another Content-Type: for the
// answers a published specification types otherwise (RFC 6749's token
// errors, FIT-Connect's Routing API 429), the body still a problem.
func WriteAs(w http.ResponseWriter, p *Problem, contentType string) {
	status := p.Status
	if status < 100 || status > 599 {
		p = p.clone()
		p.Status = http.StatusInternalServerError
		status = p.Status
	}
	body, err := json.Marshal(p)
	if err != nil {
		// Extra held something unserializable; the standard members still go out.
		c := p.clone()
		c.Extra = nil
		body, _ = json.Marshal(c)
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

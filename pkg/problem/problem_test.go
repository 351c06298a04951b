package problem_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/amtsbote/amtsbote/pkg/problem"
)

func TestMarshalJSON(t *testing.T) {
	tests := []struct {
		name string
		p    *problem.Problem
		want map[string]any
	}{
		{
			name: "standard members only",
			p:    problem.Invalid("services[0].regions[1]", "region DE1 has 1 digits"),
			want: map[string]any{
				"type": problem.TypeInvalidValue, "title": "Invalid value", "status": float64(400),
				"detail": "services[0].regions[1]: region DE1 has 1 digits", "field": "services[0].regions[1]",
			},
		},
		{
			name: "detail names the field",
			p:    problem.Invalid("callback.url", "must be https"),
			want: map[string]any{
				"type": problem.TypeInvalidValue, "title": "Invalid value", "status": float64(400),
				"detail": "callback.url: must be https", "field": "callback.url",
			},
		},
		{
			name: "extra members at the top level, reserved ones ignored",
			p: problem.InvalidRequest("grant_type", "missing").
				With("error", "invalid_request").With("status", 999).With("type", "x"),
			want: map[string]any{
				"type": problem.TypeInvalidRequest, "title": "Invalid request", "status": float64(400),
				"detail": "grant_type: missing", "field": "grant_type", "error": "invalid_request",
			},
		},
		{
			name: "empty optional members left out",
			p:    &problem.Problem{Type: "about:blank", Title: "x", Status: 418},
			want: map[string]any{"type": "about:blank", "title": "x", "status": float64(418)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.p)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	in := problem.Conflict("destinationId", "destination 1 exists").With("error", "x").With("n", float64(3))
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out problem.Problem
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*in, out) {
		t.Errorf("got %+v, want %+v", out, *in)
	}
}

func TestWithDoesNotAlias(t *testing.T) {
	base := problem.Forbidden("no")
	a := base.With("k", 1)
	b := a.With("k", 2)
	if base.Extra != nil || a.Extra["k"] != 1 || b.Extra["k"] != 2 {
		t.Errorf("With changed a shared value: base %v a %v b %v", base.Extra, a.Extra, b.Extra)
	}
	if f := a.WithField("scope"); a.Field != "" || f.Field != "scope" || f.Detail != "scope: no" {
		t.Errorf("WithField changed the original")
	}
}

func TestErrorsIsAndAs(t *testing.T) {
	err := fmt.Errorf("read destination: %w", problem.DestinationNotFound("abc"))
	if !errors.Is(err, problem.DestinationNotFound("other")) {
		t.Error("errors.Is does not match the same problem type")
	}
	if errors.Is(err, problem.NotFound("", "")) {
		t.Error("errors.Is matches another problem type")
	}
	p, ok := problem.As(err)
	if !ok || p.Field != "destinationId" || !strings.Contains(p.Error(), "abc") {
		t.Errorf("As = %v, %v", p, ok)
	}
	if _, ok := problem.As(errors.New("plain")); ok {
		t.Error("As found a problem in a plain error")
	}
}

func TestWrite(t *testing.T) {
	tests := []struct {
		name       string
		p          *problem.Problem
		wantStatus int
	}{
		{"413", problem.BodyTooLarge(1024), http.StatusRequestEntityTooLarge},
		{"408", problem.RequestTimeout("the body did not arrive"), http.StatusRequestTimeout},
		{"415", problem.UnsupportedMediaType("text/plain", "application/json"), http.StatusUnsupportedMediaType},
		{"status unset becomes 500", &problem.Problem{Type: "about:blank", Title: "x"}, http.StatusInternalServerError},
		{"unserializable extra still writes", problem.Internal().With("f", func() {}), http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			rec.Header().Set("Content-Length", "5")
			problem.Write(rec, tt.p)
			if rec.Code != tt.wantStatus {
				t.Errorf("status %d, want %d", rec.Code, tt.wantStatus)
			}
			if ct := rec.Header().Get("Content-Type"); ct != problem.ContentType {
				t.Errorf("Content-Type %q", ct)
			}
			var got problem.Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if got.Status != tt.wantStatus || got.Type == "" || got.Title == "" {
				t.Errorf("body %+v", got)
			}
		})
	}
}

func TestConstructorsAreComplete(t *testing.T) {
	all := []*problem.Problem{
		problem.InvalidRequest("f", "d"), problem.MalformedJSON("f", "d"), problem.UnknownField("f"),
		problem.Invalid("f", "d"), problem.InvalidKey("f", "d"), problem.Unauthorized("d"),
		problem.Forbidden("d"), problem.NotFound("f", "d"), problem.DestinationNotFound("id"),
		problem.KeyNotFound("id", "kid"), problem.SubmissionNotFound("id"), problem.MethodNotAllowed("PUT", "GET"),
		problem.Conflict("f", "d"), problem.BodyTooLarge(1), problem.HeaderTooLarge(1), problem.RequestTimeout("d"), problem.UnsupportedMediaType("", "application/json"),
		problem.Unprocessable("f", "d"), problem.TooManyRequests("d"), problem.Internal(), problem.Unavailable("d"),
	}
	seen := map[string]bool{}
	for _, p := range all {
		if !strings.HasPrefix(p.Type, problem.Base) && !strings.HasPrefix(p.Type, problem.FITConnectBase) {
			t.Errorf("%s: type outside the known bases", p.Type)
		}
		if p.Title == "" || p.Detail == "" || p.Status < 400 {
			t.Errorf("%s: incomplete %+v", p.Type, p)
		}
		if seen[p.Type] {
			t.Errorf("%s used twice", p.Type)
		}
		seen[p.Type] = true
	}
}

// TestDecodeJSON names the member a decoded body lacks, unless the body is
// broken: then it is malformed, wherever it broke.
func TestDecodeJSON(t *testing.T) {
	var v struct {
		Name string `json:"name"`
	}
	for _, tt := range []struct {
		body, typ, field string
	}{
		{`{"name":"x","extra":1}`, problem.TypeUnknownField, "extra"},
		{`{"x":`, problem.TypeMalformedJSON, "body"},
		{`{"x":1,"name":`, problem.TypeMalformedJSON, "body"},
		{`{"name":1}`, problem.TypeMalformedJSON, "name"},
		{``, problem.TypeMalformedJSON, "body"},
	} {
		err := problem.DecodeJSON([]byte(tt.body), &v, true)
		var p *problem.Problem
		if !errors.As(err, &p) || p.Type != tt.typ || p.Field != tt.field {
			t.Errorf("%s: %v, want %s at %s", tt.body, err, tt.typ, tt.field)
		}
	}
}

// TestWithFieldRenames: a detail names the field once, the new one.
func TestWithFieldRenames(t *testing.T) {
	p := problem.Unauthorized("client authentication failed").WithField("client_id")
	if p.Field != "client_id" || p.Detail != "client_id: client authentication failed" {
		t.Errorf("field %q detail %q", p.Field, p.Detail)
	}
	if q := problem.InvalidRequest("limit", "limit must be a number").WithField("offset"); q.Detail != "offset: limit must be a number" {
		t.Errorf("detail %q", q.Detail)
	}
}

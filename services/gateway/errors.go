package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// writeError answers with the problem err carries. Errors that are not
// problems become a 500 and are logged here, once; their text never
// reaches the client.
func (g *Gateway) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *authError
	var se *scopeError
	switch {
	case errors.As(err, &ae):
		challenge := `Bearer realm="` + quoteSafe(g.publicURL) + `"`
		if ae.code != "" {
			challenge += `, error="` + ae.code + `", error_description="` + quoteSafe(ae.p.Detail) + `"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
	case errors.As(err, &se):
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+quoteSafe(g.publicURL)+`", error="insufficient_scope", scope="`+quoteSafe(se.scope)+`"`)
	}
	p, ok := problem.As(err)
	if !ok {
		switch {
		case errors.Is(err, store.ErrNotFound):
			p = problem.NotFound("", "the requested resource does not exist")
		case errors.Is(err, store.ErrConflict):
			p = problem.Conflict("", "the request conflicts with an existing record")
		case errors.Is(err, http.ErrAbortHandler):
			panic(err)
		default:
			g.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "route", routeOf(r), "err", err)
			p = problem.Internal()
		}
	}
	problem.Write(w, p)
}

// keyProblem turns a key rule violation of the JWK at field into a problem
// naming the member; other errors pass through.
func keyProblem(field string, err error) error {
	var re *jose.RuleError
	if errors.As(err, &re) {
		return problem.InvalidKey(joinField(field, re.Field), re.Reason)
	}
	if errors.Is(err, jose.ErrKeyRule) {
		return problem.InvalidKey(field, err.Error())
	}
	return err
}

func joinField(parent, child string) string {
	switch {
	case parent == "":
		return child
	case child == "" || child == "jwk":
		return parent
	}
	return parent + "." + child
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		problem.Write(w, problem.Internal())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// requireContentType checks the request's media type against want.
func requireContentType(r *http.Request, want ...string) error {
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

// readBody reads the whole body within the gateway's limit.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, problem.BodyTooLarge(mbe.Limit)
		}
		return nil, problem.InvalidRequest("body", fmt.Sprintf("reading the request body: %v", err))
	}
	return body, nil
}

// decodeJSONRequest checks the content type and reads the body into v
// (see decodeJSON).
func (g *Gateway) decodeJSONRequest(w http.ResponseWriter, r *http.Request, v any, strict bool) error {
	if err := requireContentType(r, "application/json"); err != nil {
		return err
	}
	body, err := g.readBody(w, r)
	if err != nil {
		return err
	}
	return decodeJSON(body, v, strict)
}

// decodeJSON reads exactly one JSON value into v. With strict, members
// that v's type does not declare (matched exactly, not case-insensitively)
// are refused with a problem naming their path; json.RawMessage values are
// not looked into. Every failure is a *problem.Problem.
func decodeJSON(body []byte, v any, strict bool) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return problem.MalformedJSON("body", "the request body is empty; a JSON object is required")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		return jsonProblem(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		off := dec.InputOffset()
		return problem.MalformedJSON("body", fmt.Sprintf("unexpected data after the JSON value at byte %d", off))
	}
	if _, ok := generic.(map[string]any); !ok {
		return problem.MalformedJSON("body", fmt.Sprintf("the request body must be a JSON object, not %s", jsonKind(generic)))
	}
	if strict {
		if field := unknownMember(generic, reflect.TypeOf(v), ""); field != "" {
			return problem.UnknownField(field)
		}
	}
	if err := json.Unmarshal(body, v); err != nil {
		return jsonProblem(err)
	}
	return nil
}

func jsonProblem(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return problem.MalformedJSON("body", fmt.Sprintf("invalid JSON at byte %d: %s", se.Offset, se.Error()))
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "body"
		}
		return problem.MalformedJSON(field, fmt.Sprintf("%s must be %s, not JSON %s", field, goKind(te.Type), te.Value))
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return problem.MalformedJSON("body", "the JSON value ends early")
	}
	return problem.MalformedJSON("body", err.Error())
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	}
	return "an object"
}

func goKind(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return t.String()
}

var rawMessageType = reflect.TypeOf(json.RawMessage(nil))

// unknownMember returns the path of the first member of v (decoded JSON)
// that type t does not declare, or "".
func unknownMember(v any, t reflect.Type, path string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == rawMessageType {
		return ""
	}
	switch val := v.(type) {
	case map[string]any:
		if t.Kind() == reflect.Map {
			for k, e := range val {
				if f := unknownMember(e, t.Elem(), joinField(path, k)); f != "" {
					return f
				}
			}
			return ""
		}
		if t.Kind() != reflect.Struct {
			return ""
		}
		fields := jsonFields(t)
		for _, k := range sortedKeys(val) {
			ft, ok := fields[k]
			if !ok {
				return joinField(path, k)
			}
			if f := unknownMember(val[k], ft, joinField(path, k)); f != "" {
				return f
			}
		}
	case []any:
		if t.Kind() != reflect.Slice && t.Kind() != reflect.Array {
			return ""
		}
		for i, e := range val {
			if f := unknownMember(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); f != "" {
				return f
			}
		}
	}
	return ""
}

// jsonFields maps the JSON member names of struct t, including those of
// embedded structs, to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	m := make(map[string]reflect.Type, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				for k, v := range jsonFields(et) {
					if _, ok := m[k]; !ok {
						m[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f.Type
	}
	return m
}

func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

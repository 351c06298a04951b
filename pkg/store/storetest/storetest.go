// Package storetest is the conformance suite every store.Store
// implementation passes: the same tests, run against SQLite and PostgreSQL,
// so the two behave alike down to paging, ordering, error kinds, audit
// records and the exact round trip of every field.
//
// Fixtures keep times in UTC at microsecond precision, which is what the
// stores keep (PostgreSQL's timestamptz resolution): a store truncates finer
// times and returns UTC.
package storetest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/pkg/store"
)

// Run runs the suite. open must return a new, empty store each time it is
// called; Run closes that store when the subtest ends. Anything else open
// sets up (a schema, a directory) it cleans up itself with t.Cleanup.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	groups := []struct {
		name  string
		tests []test
	}{
		{"Destinations", destinationTests},
		{"DestinationCache", cacheTests},
		{"Keys", keyTests},
		{"Clients", clientTests},
		{"AuditLog", auditTests},
		{"Submissions", submissionTests},
		{"Overdue", overdueTests},
		{"Events", eventTests},
		{"Idempotency", idempotencyTests},
		{"Backlogs", backlogTests},
		{"Installation", installationTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, tc := range g.tests {
				t.Run(tc.name, func(t *testing.T) {
					s := open(t)
					t.Cleanup(func() {
						if err := s.Close(); err != nil {
							t.Errorf("close: %v", err)
						}
					})
					tc.run(t, s)
				})
			}
		})
	}
}

// test is one case of the suite, run against a fresh store.
type test struct {
	name string
	run  func(t *testing.T, s store.Store)
}

// t0 is the fixtures' reference time: UTC, microsecond precision.
var t0 = time.Date(2025, 3, 14, 9, 26, 53, 589793000, time.UTC)

// at returns t0 plus d, as a pointer when a fixture needs one.
func at(d time.Duration) time.Time { return t0.Add(d) }

func ptr[T any](v T) *T { return &v }

// equal fails the test when got and want differ in any field, naming the
// fields that differ.
func equal[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if d := diff("", reflect.ValueOf(got), reflect.ValueOf(want)); len(d) > 0 {
		t.Fatalf("%s differs:\n%s", what, strings.Join(d, "\n"))
	}
}

// diff lists the paths at which g and w differ. Pointers are followed, so a
// message shows the times and not their addresses.
func diff(path string, g, w reflect.Value) []string {
	if !g.IsValid() || !w.IsValid() {
		if g.IsValid() != w.IsValid() {
			return []string{fmt.Sprintf("%s: got %v, want %v", path, g, w)}
		}
		return nil
	}
	switch g.Kind() {
	case reflect.Pointer:
		if g.IsNil() || w.IsNil() {
			if g.IsNil() != w.IsNil() {
				return []string{fmt.Sprintf("%s: got %s, want %s", path, show(g), show(w))}
			}
			return nil
		}
		return diff(path, g.Elem(), w.Elem())
	case reflect.Struct:
		if g.Type() == reflect.TypeFor[time.Time]() {
			break
		}
		var d []string
		for i := range g.NumField() {
			d = append(d, diff(path+"."+g.Type().Field(i).Name, g.Field(i), w.Field(i))...)
		}
		return d
	case reflect.Slice:
		if g.Type().Elem().Kind() == reflect.Uint8 {
			break // []byte and json.RawMessage read best as text
		}
		if g.IsNil() != w.IsNil() || g.Len() != w.Len() {
			return []string{fmt.Sprintf("%s: got %s, want %s", path, show(g), show(w))}
		}
		var d []string
		for i := range g.Len() {
			d = append(d, diff(fmt.Sprintf("%s[%d]", path, i), g.Index(i), w.Index(i))...)
		}
		return d
	}
	if !reflect.DeepEqual(g.Interface(), w.Interface()) {
		return []string{fmt.Sprintf("%s: got %s, want %s", path, show(g), show(w))}
	}
	return nil
}

// show renders v for a failure message.
func show(v reflect.Value) string {
	switch {
	case v.Kind() == reflect.Pointer && v.IsNil():
		return "nil"
	case v.Kind() == reflect.Pointer:
		return "&" + show(v.Elem())
	case v.Kind() == reflect.Slice && v.IsNil():
		return "nil"
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8:
		return fmt.Sprintf("%q", v.Bytes())
	}
	return fmt.Sprintf("%+v", v.Interface())
}

// sameJSON fails the test when got and want are not the same JSON value.
func sameJSON(t *testing.T, what string, got, want json.RawMessage) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: got invalid JSON %q: %v", what, got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("%s: want invalid JSON %q: %v", what, want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("%s:\n got: %s\nwant: %s", what, got, want)
	}
}

// checkNow fails the test unless ts is a time the store set between start
// and now: UTC, microsecond precision.
func checkNow(t *testing.T, what string, ts, start time.Time) {
	t.Helper()
	if ts.Location() != time.UTC {
		t.Errorf("%s: location %v, want UTC", what, ts.Location())
	}
	if !ts.Equal(ts.Truncate(time.Microsecond)) {
		t.Errorf("%s: %v finer than a microsecond", what, ts)
	}
	if ts.Before(start.Truncate(time.Microsecond)) || ts.After(time.Now()) {
		t.Errorf("%s: %v not between %v and now", what, ts, start)
	}
}

// must fails the test on err.
func must(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

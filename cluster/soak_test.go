package main

import (
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"
)

func compactSET(t *testing.T, claims any) string {
	t.Helper()
	raw, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"PS512"}`)) + "." + enc(raw) + ".c2ln"
}

func TestSetClaims(t *testing.T) {
	tok := compactSET(t, map[string]any{"jti": "j1", "events": map[string]any{"https://schema.fitko.de/fit-connect/events/accept-submission": map[string]any{}}})
	jti, types, err := setClaims(tok + "\n")
	if err != nil || jti != "j1" || len(types) != 1 || types[0] != "https://schema.fitko.de/fit-connect/events/accept-submission" {
		t.Errorf("%q %v %v", jti, types, err)
	}
	for _, bad := range []string{"", "a.b", "a.!!!.c", "a." + base64.RawURLEncoding.EncodeToString([]byte("[1]")) + ".c"} {
		if _, _, err := setClaims(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestTally counts duplicates, accepted cases and the times by failover
// window from made-up EVENTS.
func TestTally(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 18, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	r := soakReport{
		Failovers: []failover{{Killed: at(100), Restarted: at(130)}},
		Late:      lateTally{Accepted: 1, Cases: []string{"late"}},
	}
	cases := map[string]*caseEvents{
		"quiet":    {submits: 1, accepts: 1, submitted: at(10), accepted: at(11)},
		"killed":   {submits: 1, accepts: 1, submitted: at(100), accepted: at(104)},
		"settling": {submits: 1, accepts: 1, submitted: at(144), accepted: at(146)},
		"after":    {submits: 1, accepts: 1, submitted: at(145), accepted: at(145.5)},
		"twice":    {submits: 1, accepts: 2, submitted: at(20), accepted: at(23)},
		"open":     {submits: 1},
		"late":     {submits: 1, accepts: 1, submitted: at(50), accepted: at(400)},
	}
	r.tally(cases, 1, 15*time.Second)
	if r.StreamCases != 7 || r.StreamAccepted != 6 {
		t.Errorf("%d cases, %d accepted; want 7 and 6", r.StreamCases, r.StreamAccepted)
	}
	if r.Duplicated != 2 {
		t.Errorf("duplicated %d; want 2 (a second accept, a repeated jti)", r.Duplicated)
	}
	if d := r.DuringFailover; d.Count != 2 || d.Max != 4 {
		t.Errorf("during failover %+v; want the killed and the settling case", d)
	}
	if o := r.OutsideFailover; o.Count != 3 || o.Max != 3 {
		t.Errorf("outside %+v; want quiet, after and twice, without the late one", o)
	}
}

func TestLatencyOf(t *testing.T) {
	var s []float64
	for i := 100; i >= 1; i-- {
		s = append(s, float64(i))
	}
	l := latencyOf(s)
	if l.Count != 100 || l.P50 != 51 || l.P99 != 100 || l.Max != 100 {
		t.Errorf("%+v", l)
	}
	if (latencyOf(nil) != latency{}) {
		t.Error("empty: not zero")
	}
}

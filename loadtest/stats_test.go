package main

import (
	"errors"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestOperationNamesRequestsWithoutIDs(t *testing.T) {
	const id = "2f59b8c6-3206-4734-aa21-a7b2a4d92f7a"
	for _, tt := range []struct{ method, path, want string }{
		{"POST", "/token", "POST token"},
		{"GET", "/v1/routes", "GET routes"},
		{"POST", "/v1/submissions", "POST submissions"},
		{"GET", "/v1/submissions", "GET submissions"},
		{"PUT", "/v1/submissions/" + id, "PUT submission"},
		{"PUT", "/v1/submissions/" + id + "/attachments/" + id, "PUT attachment"},
		{"GET", "/v1/destinations/" + id, "GET destination"},
		{"GET", "/v1/destinations/" + id + "/keys/k1", "GET key"},
		{"POST", "/v1/cases/" + id + "/events", "POST case events"},
		{"GET", "/v1/cases/" + id, "GET other"},
		{"GET", "/admin/v1/destinations", "GET other"},
	} {
		req, err := http.NewRequest(tt.method, "http://localhost"+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := operation(req); got != tt.want {
			t.Errorf("%s %s: %q, want %q", tt.method, tt.path, got, tt.want)
		}
	}
}

func TestPercentilesOf(t *testing.T) {
	if got := percentilesOf(nil); got != (percentiles{}) {
		t.Errorf("no latencies: %+v", got)
	}
	lat := make([]time.Duration, 0, 1000)
	for i := 1000; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	got := percentilesOf(lat)
	want := percentiles{Count: 1000, P50: 501, P90: 901, P99: 991, P999: 1000, Max: 1000}
	if got != want {
		t.Errorf("percentilesOf = %+v, want %+v", got, want)
	}
	if lat[0] != time.Second {
		t.Error("percentilesOf sorted its argument")
	}
}

func TestRecorderCountsPerSecond(t *testing.T) {
	start := time.Now()
	r := newRecorder(start)
	r.count("accepted", start.Add(-time.Second)) // before the start: the first second
	r.count("accepted", start.Add(300*time.Millisecond))
	r.count("accepted", start.Add(2500*time.Millisecond))
	if got := r.series["accepted"]; len(got) != 3 || got[0] != 2 || got[1] != 0 || got[2] != 1 {
		t.Errorf("series = %v, want [2 0 1]", got)
	}
	if got := r.total("accepted"); got != 3 {
		t.Errorf("total = %d, want 3", got)
	}
	if got := r.last("accepted", "none"); !got.Equal(start.Add(2500 * time.Millisecond)) {
		t.Errorf("last = %v", got)
	}
	r.fail("submit", &statusError{status: 503, body: "busy"})
	r.fail("submit", &statusError{status: 503, body: "still busy"})
	r.fail("upload", errors.New("connection reset"))
	if r.errors["submit: HTTP 503"] != 2 || r.errors["upload: connection reset"] != 1 || r.errorCount() != 3 {
		t.Errorf("errors = %v", r.errors)
	}
	if len(r.first) != 3 || r.first[1] != "submit: HTTP 503: still busy" {
		t.Errorf("first errors = %q", r.first)
	}
}

func TestReadProcOfThisProcess(t *testing.T) {
	before, err := readProc(os.Getpid())
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	// Spin until the kernel counted a tick of CPU (10 ms), or give up.
	var after procTimes
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if after, err = readProc(os.Getpid()); err != nil {
			t.Fatal(err)
		}
		if after.cpu > before.cpu {
			break
		}
	}
	if after.cpu <= before.cpu || after.rss <= 0 {
		t.Errorf("CPU %s → %s, RSS %d: want CPU spent and memory resident", before.cpu, after.cpu, after.rss)
	}
	if _, err := readProc(-1); err == nil {
		t.Error("readProc of no process succeeded")
	}
	busy, all, err := machineBusy()
	if err != nil || busy <= 0 || all < busy {
		t.Errorf("machineBusy = %s of %s, %v", busy, all, err)
	}
}

func TestLatencySeriesBySecondBegun(t *testing.T) {
	// Three fast requests in second 0, none in 1, a stall of 800 ms that
	// began in second 2 and ended in 3, and two in second 3.
	lat := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 30 * time.Millisecond, 800 * time.Millisecond, 5 * time.Millisecond, 7 * time.Millisecond}
	sec := []int32{0, 0, 0, 2, 3, 3}
	got := latencySeriesOf(lat, sec)
	want := latencySeries{
		Count: []int{3, 0, 1, 2},
		P50:   []float64{20, 0, 800, 7},
		P99:   []float64{30, 0, 800, 7},
		Max:   []float64{30, 0, 800, 7},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("latencySeriesOf = %+v, want %+v", got, want)
	}

	start := time.Now().Add(-3500 * time.Millisecond)
	r := newRecorder(start)
	r.observe("http PUT submission", 1200*time.Millisecond) // began 2.3 s in
	r.observe("http PUT submission", 4*time.Second)         // began before the start
	if s := r.stages["http PUT submission"]; !reflect.DeepEqual(s.sec, []int32{2, 0}) {
		t.Errorf("seconds begun = %v, want [2 0]", s.sec)
	}
	rep := &report{LatencyOverTime: map[string]latencySeries{"http PUT submission": want, "lifecycle": want}}
	chart := rep.latencyOverTimeChart()
	for _, label := range []string{"PUT submission p99", "PUT submission max", "lifecycle p99"} {
		if !strings.Contains(chart, label) {
			t.Errorf("chart has no line %q", label)
		}
	}
	if strings.Contains(chart, "lifecycle max") {
		t.Error("chart draws the longest latencies of a second stage")
	}
}

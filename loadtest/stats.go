package main

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// recorder collects what a run measured: latencies per stage, counts per
// second, and errors. It is safe for concurrent use.
type recorder struct {
	start time.Time

	mu     sync.Mutex
	stages map[string]*stage
	series map[string][]int // counter → events per second since start
	lastAt map[string]time.Time
	errors map[string]int // "stage: status or error" → count
	first  []string       // the first errors, in full
}

// stage is one step of the lifecycle, or one kind of request.
type stage struct {
	lat []time.Duration
	// sec is the second of the run in which each of lat began.
	sec   []int32
	bytes int64
	// transfers are (bytes, duration) of each request with a body worth
	// timing, for throughput per request.
	transfers []transfer
}

type transfer struct {
	bytes int64
	d     time.Duration
}

func newRecorder(start time.Time) *recorder {
	return &recorder{start: start, stages: map[string]*stage{}, series: map[string][]int{}, lastAt: map[string]time.Time{}, errors: map[string]int{}}
}

func (r *recorder) stage(name string) *stage {
	s := r.stages[name]
	if s == nil {
		s = &stage{}
		r.stages[name] = s
	}
	return s
}

// observe records one latency of stage, ending now.
func (r *recorder) observe(name string, d time.Duration) {
	sec := max(int32((time.Since(r.start)-d)/time.Second), 0)
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stage(name)
	s.lat = append(s.lat, d)
	s.sec = append(s.sec, sec)
}

// transferred records a request of stage that moved n bytes in d.
func (r *recorder) transferred(name string, n int64, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stage(name)
	s.bytes += n
	s.transfers = append(s.transfers, transfer{n, d})
}

// count adds one to counter in the current second.
func (r *recorder) count(counter string, at time.Time) {
	sec := int(at.Sub(r.start) / time.Second)
	if sec < 0 {
		sec = 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.series[counter]
	for len(s) <= sec {
		s = append(s, 0)
	}
	s[sec]++
	r.series[counter] = s
	if at.After(r.lastAt[counter]) {
		r.lastAt[counter] = at
	}
}

// last is the time of the latest event of any of counters.
func (r *recorder) last(counters ...string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var t time.Time
	for _, c := range counters {
		if r.lastAt[c].After(t) {
			t = r.lastAt[c]
		}
	}
	return t
}

// total is counter's sum.
func (r *recorder) total(counter string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, v := range r.series[counter] {
		n += v
	}
	return n
}

// fail records an error of stage.
func (r *recorder) fail(name string, err error) {
	key := name + ": " + errorClass(err)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors[key]++
	if len(r.first) < 10 {
		r.first = append(r.first, name+": "+err.Error())
	}
}

func (r *recorder) errorCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, v := range r.errors {
		n += v
	}
	return n
}

// statusError is an answer the load test did not want.
type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.status, strings.TrimSpace(e.body))
}

// errorClass is a bounded name for err: its HTTP status, or its text.
func errorClass(err error) string {
	if se, ok := err.(*statusError); ok {
		return fmt.Sprintf("HTTP %d", se.status)
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

// percentiles of a stage's latencies.
type percentiles struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50Ms"`
	P90   float64 `json:"p90Ms"`
	P99   float64 `json:"p99Ms"`
	P999  float64 `json:"p999Ms"`
	Max   float64 `json:"maxMs"`
}

// latencySeries are a stage's latencies by the second of the run in
// which they began: where a stall sits in time, which the percentiles
// of the whole run do not show. A second without any has zeros.
type latencySeries struct {
	Count []int     `json:"count"`
	P50   []float64 `json:"p50Ms"`
	P99   []float64 `json:"p99Ms"`
	Max   []float64 `json:"maxMs"`
}

func latencySeriesOf(lat []time.Duration, sec []int32) latencySeries {
	var bySec [][]time.Duration
	for i, d := range lat {
		for int(sec[i]) >= len(bySec) {
			bySec = append(bySec, nil)
		}
		bySec[sec[i]] = append(bySec[sec[i]], d)
	}
	ls := latencySeries{Count: make([]int, len(bySec)), P50: make([]float64, len(bySec)), P99: make([]float64, len(bySec)), Max: make([]float64, len(bySec))}
	for i, l := range bySec {
		p := percentilesOf(l)
		ls.Count[i], ls.P50[i], ls.P99[i], ls.Max[i] = p.Count, p.P50, p.P99, p.Max
	}
	return ls
}

func percentilesOf(lat []time.Duration) percentiles {
	if len(lat) == 0 {
		return percentiles{}
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	ms := func(q float64) float64 {
		i := int(q * float64(len(s)))
		return float64(s[min(i, len(s)-1)]) / float64(time.Millisecond)
	}
	return percentiles{Count: len(s), P50: ms(0.5), P90: ms(0.9), P99: ms(0.99), P999: ms(0.999), Max: float64(s[len(s)-1]) / float64(time.Millisecond)}
}

// timing is an http.RoundTripper that records every request's latency by
// the API operation it is, up to the end of the answer's body, and the
// throughput of attachment transfers.
type timing struct {
	next http.RoundTripper
	rec  *recorder
}

func (t *timing) RoundTrip(req *http.Request) (*http.Response, error) {
	op := operation(req)
	t0 := time.Now()
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		t.rec.fail("http "+op, err)
		return nil, err
	}
	var up int64
	if req.ContentLength > 0 {
		up = req.ContentLength
	}
	resp.Body = &timedBody{ReadCloser: resp.Body, done: func(down int64) {
		d := time.Since(t0)
		t.rec.observe("http "+op, d)
		switch op {
		case "PUT attachment":
			if resp.StatusCode/100 == 2 {
				t.rec.transferred("attachment upload", up, d)
			}
		case "GET attachment":
			if resp.StatusCode == http.StatusOK {
				t.rec.transferred("attachment download", down, d)
			}
		}
	}}
	return resp, nil
}

// operation names the API operation of req, without ids.
func operation(req *http.Request) string {
	p := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	m := req.Method
	switch {
	case len(p) == 1 && p[0] == "token":
		return m + " token"
	case len(p) >= 2 && p[0] == "v1" && p[1] == "routes":
		return m + " routes"
	case len(p) == 2 && p[1] == "submissions":
		return m + " submissions"
	case len(p) == 3 && p[1] == "submissions":
		return m + " submission"
	case len(p) == 5 && p[1] == "submissions" && p[3] == "attachments":
		return m + " attachment"
	case len(p) == 3 && p[1] == "destinations":
		return m + " destination"
	case len(p) == 5 && p[1] == "destinations":
		return m + " key"
	case len(p) == 4 && p[1] == "cases" && p[3] == "events":
		return m + " case events"
	}
	return m + " other"
}

// timedBody calls done once with the bytes read when the body ends or is
// closed.
type timedBody struct {
	io.ReadCloser
	n    int64
	once sync.Once
	done func(int64)
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if err == io.EOF {
		b.once.Do(func() { b.done(b.n) })
	}
	return n, err
}

func (b *timedBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(func() { b.done(b.n) })
	return err
}

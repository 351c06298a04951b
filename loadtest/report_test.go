package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func near(got, want float64) bool { return math.Abs(got-want) <= 1e-9*math.Max(1, math.Abs(want)) }

func TestPrivateOps(t *testing.T) {
	steady, err := loadScenario("steady")
	if err != nil {
		t.Fatal(err)
	}
	one := func(mode string, c payloadClass) scenario {
		c.Weight = 1
		return scenario{Receivers: receivers{Mode: mode}, Payloads: []payloadClass{c}}
	}
	for _, tt := range []struct {
		name string
		sc   scenario
		want float64
	}{
		// 80 % 3+1+2, 15 % 3+1+3, 5 % 3+1+4.
		{"steady's mix", steady, 6.25},
		{"data alone, decrypted", one("sdk", payloadClass{Data: 16384}), 6},
		{"data and two attachments, decrypted", one("sdk", payloadClass{Data: 16384, Attachments: []int64{1, 2}}), 8},
		{"attachments alone, decrypted", one("sdk", payloadClass{Attachments: []int64{1}}), 6},
		{"acknowledged without decrypting", one("ack", payloadClass{Data: 16384, Attachments: []int64{1}}), 4},
		{"nobody picks up", one("none", payloadClass{Data: 16384}), 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := privateOps(tt.sc); !near(got, tt.want) {
				t.Errorf("privateOps = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMixRateIsTheWeightedHarmonicMean(t *testing.T) {
	sc := scenario{Payloads: []payloadClass{{Weight: 3}, {Weight: 1}}}
	p := &pool{variants: map[poolKey][][]*sealed{
		{"d", "s"}: {{{submitBody: make([]byte, 100)}}, {{submitBody: make([]byte, 900)}}},
	}}
	figs := []jsFigure{{Bytes: 900, PublishPerSecond: 250}, {Bytes: 100, PublishPerSecond: 1000}, {Bytes: 5, PublishPerSecond: 1e9}}
	// Four submissions take 3/1000 + 1/250 s.
	if got, want := mixRate(sc, p, figs), 4/(3.0/1000+1.0/250); !near(got, want) {
		t.Errorf("mixRate = %v, want %v", got, want)
	}
	if got := mixRate(sc, p, nil); got != 0 {
		t.Errorf("mixRate without a yardstick = %v, want 0", got)
	}
}

func TestRatesBySizeTakesEachSizesMedian(t *testing.T) {
	got := ratesBySize([]transfer{
		{bytes: 2000, d: time.Second}, {bytes: 1000, d: time.Second}, {bytes: 1000, d: 4 * time.Second},
		{bytes: 1000, d: 2 * time.Second}, {bytes: 1000, d: 0},
	})
	want := []rate{{Bytes: 1000, Count: 3, BytesPerSecond: 500}, {Bytes: 2000, Count: 1, BytesPerSecond: 2000}}
	if len(got) != len(want) {
		t.Fatalf("ratesBySize = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("ratesBySize[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestTransferRatioWeighsSizesByBytes(t *testing.T) {
	rs := []rate{{Bytes: 100, Count: 10, BytesPerSecond: 100}, {Bytes: 1000, Count: 1, BytesPerSecond: 500}, {Bytes: 7, Count: 1, BytesPerSecond: 1}}
	raw := []osFigure{{Bytes: 100, PutBytesPerSecond: 200, GetBytesPerSecond: 400}, {Bytes: 1000, PutBytesPerSecond: 1000, GetBytesPerSecond: 2000}}
	// 1,000 bytes of each size, the one without a yardstick left out.
	got, gotRaw := transferRatio(rs, raw, true)
	if want, wantRaw := 2000/(1000.0/100+1000.0/500), 2000/(1000.0/200+1000.0/1000); !near(got, want) || !near(gotRaw, wantRaw) {
		t.Errorf("upload: %v of %v, want %v of %v", got, gotRaw, want, wantRaw)
	}
	if _, gotRaw := transferRatio(rs, raw, false); !near(gotRaw, 2000/(1000.0/400+1000.0/2000)) {
		t.Errorf("download's raw rate %v, want the get figures'", gotRaw)
	}
	if got, gotRaw := transferRatio(nil, raw, true); got != 0 || gotRaw != 0 {
		t.Errorf("no transfers: %v of %v, want 0 of 0", got, gotRaw)
	}
}

// TestFill checks the ratios against figures worked out by hand.
func TestFill(t *testing.T) {
	r, fill := fillFixture(t)
	fill()
	res := r.Results
	for _, f := range []struct {
		name      string
		got, want float64
	}{
		{"lifecycles per second", res.LifecyclesPerSecond, 100.0 / 9},
		// 110 routed, the last in second 10, over the 60 s of sending.
		{"ingest per second", res.IngestPerSecond, 110.0 / 60},
		{"Amtsbote CPU per lifecycle", res.AmtsboteCPUPerLifecycle, 0.05},
		{"load test CPU per lifecycle", res.LoadtestCPUPerLifecycle, 0.02},
		{"machine busy", res.MachineBusy, 0.8},
		{"signing bound", res.SigningBoundPerSecond, 250 / 6.25},
	} {
		if !near(f.got, f.want) {
			t.Errorf("%s = %v, want %v", f.name, f.got, f.want)
		}
	}
	if res.Started != 120 || res.Submitted != 110 || res.Accepted != 100 || res.Unfinished != 10 {
		t.Errorf("counts: started %d, submitted %d, accepted %d, unfinished %d; want 120, 110, 100, 10", res.Started, res.Submitted, res.Accepted, res.Unfinished)
	}
	if res.PeakRSS["amtsbote dev"] != 300 || res.RSSGrowth["amtsbote dev"] != 200 || res.RSSGrowth["loadtest"] != 10 {
		t.Errorf("RSS: peak %v, growth %v; want dev 300 and 200, loadtest growth 10", res.PeakRSS, res.RSSGrowth)
	}
	want := map[string]float64{
		"lifecycleToSigningBound":       (100.0 / 9) / 40,
		"backboneSigningShare":          3 * 0.007 / 0.05,
		"ingestToRawJetStream":          (110.0 / 60) / 11000,
		"routesToBareHTTP":              0.75,
		"attachmentUploadToObjectStore": 1000.0 / 4000,
	}
	for name, w := range want {
		if got := r.Ratios[name]; got == nil || !near(*got, w) {
			t.Errorf("ratio %s = %v, want %v", name, deref(got), w)
		}
	}
	// Nothing was downloaded: that ratio is unmeasured, not zero.
	if got, ok := r.Ratios["attachmentDownloadToObjectStore"]; !ok || got != nil {
		t.Errorf("attachmentDownloadToObjectStore = %v (present %v), want null", deref(got), ok)
	}
}

// TestFillRoutesAnsweredOtherwise: answers other than 200 from
// /v1/routes (a rate limit) leave routesToBareHTTP unmeasured beyond 1 %.
func TestFillRoutesAnsweredOtherwise(t *testing.T) {
	// 30,000 answers a second for the scenario's 5 s.
	for _, tt := range []struct {
		errors   int64
		measured bool
	}{{0, true}, {1500, true}, {1501, false}} {
		r, fill := fillFixture(t)
		r.Yardsticks.RoutesErrors = tt.errors
		fill()
		if got := r.Ratios["routesToBareHTTP"]; (got != nil) != tt.measured {
			t.Errorf("%d answers not 200: routesToBareHTTP = %v, want it measured: %v", tt.errors, deref(got), tt.measured)
		}
		noted := false
		for _, n := range r.Notes {
			noted = noted || strings.Contains(n, "GET /v1/routes answered")
		}
		if noted != (tt.errors > 0) {
			t.Errorf("%d answers not 200: noted %v", tt.errors, noted)
		}
	}
}

// fillFixture is a run whose figures TestFill works out by hand; fill
// fills the report from it.
func fillFixture(t *testing.T) (*report, func()) {
	t.Helper()
	sc, err := loadScenario("steady")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	rec := newRecorder(start)
	// 100 accepted in the first 10 s, 110 submitted and routed.
	for i := range 110 {
		at := start.Add(time.Duration(i) * 90 * time.Millisecond)
		rec.count("submitted", at)
		rec.count("routed", at)
		if i < 100 {
			rec.count("accepted", at)
		}
	}
	rec.observe("lifecycle", 200*time.Millisecond)
	rec.transferred("attachment upload", 1000, time.Second)
	smp := &sampler{samples: []sample{
		{At: 0, CPU: map[string]float64{"amtsbote dev": 0, "loadtest": 0}, RSS: map[string]int64{"amtsbote dev": 100, "loadtest": 10}, MachineBusy: 0.5},
		{At: 5 * time.Second, CPU: map[string]float64{"amtsbote dev": 2, "loadtest": 1}, RSS: map[string]int64{"amtsbote dev": 300, "loadtest": 20}, MachineBusy: 1},
		{At: 10 * time.Second, CPU: map[string]float64{"amtsbote dev": 5, "loadtest": 2}, RSS: map[string]int64{"amtsbote dev": 250, "loadtest": 15}, MachineBusy: 0.9},
	}}
	tg := &target{kind: "dev", procs: []process{{Name: "amtsbote dev", PID: 1, Amtsbote: true}, {Name: "loadtest", PID: 2}}}
	tr := &traffic{pool: &pool{variants: map[poolKey][][]*sealed{{"d", "s"}: {{{submitBody: make([]byte, 24000)}}}}}}
	tr.started.Store(120)
	r := &report{Scenario: sc, Yardsticks: yardsticks{
		SigningPerSecond: [2]float64{300, 200}, SigningCPUSeconds: 0.007,
		JetStream:       []jsFigure{{Bytes: 24000, PublishPerSecond: 11000}},
		ObjectStore:     []osFigure{{Bytes: 1000, PutBytesPerSecond: 4000, GetBytesPerSecond: 4000}},
		RoutesPerSecond: 30000, BareHTTPPerSecond: 40000,
	}}
	return r, func() { r.fill(tr, rec, smp, tg, start, start.Add(10*time.Second)) }
}

func deref(v *float64) any {
	if v == nil {
		return nil
	}
	return *v
}

func TestLastSecond(t *testing.T) {
	for _, tt := range []struct {
		s    []int
		want float64
	}{{nil, 0}, {[]int{0, 0}, 0}, {[]int{3}, 1}, {[]int{1, 0, 2, 0, 0}, 3}} {
		if got := lastSecond(tt.s); got != tt.want {
			t.Errorf("lastSecond(%v) = %v, want %v", tt.s, got, tt.want)
		}
	}
}

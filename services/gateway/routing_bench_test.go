package gateway_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/leika"
	"github.com/amtsbote/amtsbote/pkg/routesync"
	"github.com/amtsbote/amtsbote/pkg/store"
	"github.com/amtsbote/amtsbote/pkg/store/sqlite"
	"github.com/amtsbote/amtsbote/pkg/store/storetest"
	"github.com/amtsbote/amtsbote/services/gateway"
)

// germany is a gateway over the real directory and catalogue with a
// Germany-scale registry: one destination per Gemeinde serving 100
// services, one per Kreis serving 1,000, one per Land serving the rest of
// the catalogue, and 1,000 Gemeinde routes overriding Kreis routes.
type germany struct {
	srv      *httptest.Server
	services []string
	places   []string // 12-digit ARS drawn by population
	routes   int
}

// germanyOnce builds the fixture once per test binary: the benchmark
// framework calls a benchmark several times, and the build takes seconds.
var (
	germanyOnce  sync.Once
	germanyBuilt *germany
)

func newGermany(b *testing.B) *germany {
	b.Helper()
	storetest.DataFile(b, "GV100AD_30112025.txt")
	storetest.DataFile(b, "leika.csv")
	germanyOnce.Do(func() { germanyBuilt = buildGermany(b) })
	if germanyBuilt == nil {
		b.Fatal("the Germany-scale fixture failed to build")
	}
	return germanyBuilt
}

func buildGermany(b *testing.B) *germany {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "amtsbote-bench-")
	if err != nil {
		b.Fatal(err)
	}
	// The file stays usable while open; nothing is left behind.
	defer os.RemoveAll(tmp)
	db, err := sqlite.Open(ctx, filepath.Join(tmp, "amtsbote.db"))
	if err != nil {
		b.Fatal(err)
	}

	f, err := os.Open(storetest.DataFile(b, "GV100AD_30112025.txt"))
	if err != nil {
		b.Fatal(err)
	}
	dir, err := ars.ParseGV100AD(f)
	f.Close()
	if err != nil {
		b.Fatal(err)
	}
	f, err = os.Open(storetest.DataFile(b, "leika.csv"))
	if err != nil {
		b.Fatal(err)
	}
	cat, err := leika.ParseCatalogue(f)
	f.Close()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := db.ImportAreas(ctx, "bench", dir); err != nil {
		b.Fatal(err)
	}
	if _, err := db.ImportCatalogue(ctx, "bench", cat); err != nil {
		b.Fatal(err)
	}

	g := &germany{}
	for _, s := range cat {
		g.services = append(g.services, string(s.Key))
	}
	schemas := []store.SubmissionSchema{{MimeType: "application/json", SchemaURI: "https://schema.example/s.json"}}
	entry := func(level int, code, name string) *routesync.Entry {
		var n uint64
		fmt.Sscan(code, &n)
		return &routesync.Entry{
			DestinationID: fmt.Sprintf("%08x-0000-4000-8000-%012x", level, n),
			Status:        store.StatusActive, Name: name, UpdatedAt: time.Unix(1, 0),
		}
	}
	serve := func(e *routesync.Entry, key, region string) {
		e.Services = append(e.Services, store.Service{Identifier: leika.URNPrefix + key, Regions: []string{region}, SubmissionSchemas: schemas})
		g.routes++
	}
	var gemeinden []ars.Area
	for _, a := range dir.Areas(ars.Gemeinde) {
		if !a.Gemeindefrei() {
			gemeinden = append(gemeinden, a)
		}
	}
	byGemeinde := map[string]*routesync.Entry{}
	var entries []*routesync.Entry
	for _, a := range gemeinden {
		e := entry(12, a.ARS, a.Name)
		for _, key := range g.services[:100] {
			serve(e, key, "DE"+a.ARS)
		}
		byGemeinde[a.ARS] = e
		entries = append(entries, e)
	}
	for _, k := range dir.Areas(ars.Kreis) {
		e := entry(5, k.ARS[:5], k.Name)
		for _, key := range g.services[100:1100] {
			serve(e, key, "DE"+k.ARS[:5])
		}
		entries = append(entries, e)
	}
	for _, l := range dir.Areas(ars.Land) {
		e := entry(2, l.ARS[:2], l.Name)
		for _, key := range g.services[1100:] {
			serve(e, key, "DE"+l.ARS[:2])
		}
		entries = append(entries, e)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for seen := map[[2]int]bool{}; len(seen) < 1000; {
		k := [2]int{100 + rng.IntN(1000), rng.IntN(len(gemeinden))}
		if seen[k] {
			continue
		}
		seen[k] = true
		a := gemeinden[k[1]]
		serve(byGemeinde[a.ARS], g.services[k[0]], "DE"+a.ARS)
	}
	list := make([]routesync.Entry, len(entries))
	for i, e := range entries {
		list[i] = *e
	}

	reg, err := routesync.New(routesync.Config{Store: db})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := reg.Load(ctx); err != nil {
		b.Fatal(err)
	}
	if err := reg.LoadEntries(ctx, 1, list); err != nil {
		b.Fatal(err)
	}
	b.Logf("registry of %d destinations, %d routes built in %v", len(list), g.routes, time.Since(start).Round(time.Millisecond))

	var h http.Handler
	// The server lives as long as the test binary, like the fixture.
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	gw, err := gateway.New(gateway.Config{
		Store: db, Signer: keyPair(b, signerKey), PublicURL: g.srv.URL, Routes: reg,
		RateLimit: 1e9, RateBurst: 1 << 30,
		Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(),
	})
	if err != nil {
		b.Fatal(err)
	}
	h = gw.Handler()

	// Places drawn by population: requests come from where people live.
	all := dir.Areas(ars.Gemeinde)
	cum := make([]int, len(all))
	total := 0
	for i, a := range all {
		total += a.Population
		cum[i] = total
	}
	for range 1 << 10 {
		g.places = append(g.places, all[sort.SearchInts(cum, rng.IntN(total)+1)].ARS)
	}
	return g
}

// BenchmarkRoutesHTTP measures GET /v1/routes over HTTP (loopback,
// keep-alive, as many clients as GOMAXPROCS) against the Germany-scale
// registry. A pool of 1,024 population-weighted queries is answered once
// before timing, so the figures are for routes whose signature is made:
// a registry signs an entry once, not per request (see
// BenchmarkRouteSignature for that cost).
func BenchmarkRoutesHTTP(b *testing.B) {
	g := newGermany(b)
	rng := rand.New(rand.NewPCG(5, 6))
	paths := make([]string, len(g.places))
	for i, p := range g.places {
		paths[i] = fmt.Sprintf("%s/v1/routes?leikaKey=%s&ars=%s", g.srv.URL, g.services[rng.IntN(len(g.services))], p)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	get := func(path string) {
		resp, err := client.Get(path)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
	}
	for _, p := range paths {
		get(p)
	}
	var next atomic.Uint64
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			get(paths[next.Add(1)%uint64(len(paths))])
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "requests/s")
	b.ReportMetric(float64(g.routes), "routes")
}

// BenchmarkRouteSignature measures GET /v1/routes when every answer needs a
// new destination signature (PS512 with the RSA-4096 key): the first
// request for a destination and service after it changed.
func BenchmarkRouteSignature(b *testing.B) {
	g := newGermany(b)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var next atomic.Uint64
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			// Walk services first, so pairs repeat only after every
			// service was asked for at every place.
			path := fmt.Sprintf("%s/v1/routes?leikaKey=%s&ars=%s", g.srv.URL, g.services[i%uint64(len(g.services))], g.places[(i/uint64(len(g.services)))%uint64(len(g.places))])
			resp, err := client.Get(path)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "requests/s")
}

package routing

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/pkg/ars"
	"github.com/amtsbote/amtsbote/pkg/leika"
)

// benchData is a realistically shaped route set over the real directory and
// catalogue: one destination per Gemeinde for 100 services, per Kreis for
// 1,000 services, per Land for the remaining catalogue keys, and 1,000
// Gemeinde routes overriding Kreis routes.
type benchData struct {
	dir      *ars.Directory
	services []string
	routes   []Route
}

func loadBench(b *testing.B) *benchData {
	b.Helper()
	d := readDirectory(b)
	f, err := os.Open(dataFile(b, "leika.csv"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	svcs, err := leika.ParseCatalogue(f)
	if err != nil {
		b.Fatal(err)
	}
	bd := &benchData{dir: d}
	for _, s := range svcs {
		bd.services = append(bd.services, string(s.Key))
	}
	var gemeinden []ars.Area
	for _, g := range d.Areas(ars.Gemeinde) {
		if !g.Gemeindefrei() {
			gemeinden = append(gemeinden, g)
		}
	}
	kreise, laender := d.Areas(ars.Kreis), d.Areas(ars.Land)
	// Destination ids look like FIT-Connect's UUIDs; one authority per
	// area serves all the services it is responsible for.
	dest := func(level int, ars string) string {
		var n uint64
		fmt.Sscan(ars, &n)
		return fmt.Sprintf("%08x-0000-4000-8000-%012x", level, n)
	}
	for i, key := range bd.services {
		urn := leika.URNPrefix + key
		switch {
		case i < 100:
			for _, g := range gemeinden {
				bd.routes = append(bd.routes, Route{Service: urn, Region: "DE" + g.ARS, DestinationID: dest(12, g.ARS)})
			}
		case i < 1100:
			for _, k := range kreise {
				bd.routes = append(bd.routes, Route{Service: urn, Region: "DE" + k.ARS[:5], DestinationID: dest(5, k.ARS)})
			}
		default:
			for _, l := range laender {
				bd.routes = append(bd.routes, Route{Service: urn, Region: "DE" + l.ARS[:2], DestinationID: dest(2, l.ARS)})
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	seen := map[[2]int]bool{}
	for len(seen) < 1000 {
		k := [2]int{100 + rng.IntN(1000), rng.IntN(len(gemeinden))}
		if seen[k] {
			continue
		}
		seen[k] = true
		g := gemeinden[k[1]]
		bd.routes = append(bd.routes, Route{Service: leika.URNPrefix + bd.services[k[0]], Region: "DE" + g.ARS, DestinationID: dest(12, g.ARS)})
	}
	return bd
}

func BenchmarkBuild(b *testing.B) {
	bd := loadBench(b)
	var tab *Table
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for b.Loop() {
		var err error
		tab, err = NewTable(bd.routes)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	// Live heap of the last table built, the previous ones collected.
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(tab.Len()), "routes")
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(tab.Len()), "bytes/route")
	runtime.KeepAlive(tab)
	runtime.KeepAlive(bd)
}

func BenchmarkResolve(b *testing.B) {
	bd := loadBench(b)
	tab, err := NewTable(bd.routes)
	if err != nil {
		b.Fatal(err)
	}
	// Places drawn by population: a submission comes from where people live.
	gem := bd.dir.Areas(ars.Gemeinde)
	cum := make([]int, len(gem))
	total := 0
	for i, g := range gem {
		total += g.Population
		cum[i] = total
	}
	rng := rand.New(rand.NewPCG(3, 4))
	const n = 1 << 16
	places := make([]ars.ARS, n)
	services := make([]string, n)
	for i := range places {
		j := sort.SearchInts(cum, rng.IntN(total)+1)
		places[i] = gem[j].Key()
		services[i] = bd.services[rng.IntN(len(bd.services))]
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	hits := 0
	b.ResetTimer()
	start := time.Now()
	i := 0
	for b.Loop() {
		if _, _, ok := tab.Resolve(services[i&(n-1)], places[i&(n-1)], at); ok {
			hits++
		}
		i++
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(i)/elapsed.Seconds(), "resolutions/s")
	b.ReportMetric(float64(hits)/float64(i), "hit-ratio")

	// Latency per resolution, each timed on its own (the clock read is
	// part of the figure).
	lat := make([]time.Duration, n)
	for j := range lat {
		t := time.Now()
		tab.Resolve(services[j], places[j], at)
		lat[j] = time.Since(t)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[n*99/100]), "p99-ns")
	b.ReportMetric(float64(lat[n/2]), "p50-ns")
}

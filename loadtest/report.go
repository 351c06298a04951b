package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// backboneSETs are the SETs Amtsbote signs per lifecycle: create-,
// submit- and notify-submission.
const backboneSETs = 3

// report is what a run measured, written as report.json.
type report struct {
	Scenario scenario               `json:"scenario"`
	Started  time.Time              `json:"started"`
	Commit   string                 `json:"commit"`
	Target   string                 `json:"target"`
	BaseURL  string                 `json:"baseUrl"`
	Machine  machine                `json:"machine"`
	Ratios   map[string]*float64    `json:"ratios"`
	Results  results                `json:"results"`
	Stages   map[string]percentiles `json:"stages"`
	// LatencyOverTime has each stage's latencies second by second.
	LatencyOverTime map[string]latencySeries `json:"latencyOverTime"`
	Transfers       map[string][]rate        `json:"transfers"`
	Series          map[string][]int         `json:"series"`
	Processes       []process                `json:"processes"`
	Samples         []sample                 `json:"samples"`
	Yardsticks      yardsticks               `json:"yardsticks"`
	Bounds          []bound                  `json:"bounds"`
	Profiles        []profileTop             `json:"profiles,omitempty"`
	Notes           []string                 `json:"notes"`
	// Interrupted says the sending was ended early by an interrupt; the
	// first note says how.
	Interrupted bool `json:"interrupted,omitempty"`
}

type machine struct {
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"goVersion"`
}

type results struct {
	SendSeconds    float64 `json:"sendSeconds"`
	ElapsedSeconds float64 `json:"elapsedSeconds"`
	Started        int64   `json:"started"`
	Submitted      int     `json:"submitted"`
	Routed         int     `json:"routed"`
	Accepted       int     `json:"accepted"`
	// Unfinished are submissions submitted but not decided when the run
	// ended: the backlog the drain left.
	Unfinished          int            `json:"unfinished"`
	Errors              map[string]int `json:"errors"`
	FirstErrors         []string       `json:"firstErrors"`
	IngestPerSecond     float64        `json:"ingestPerSecond"`
	LifecyclesPerSecond float64        `json:"lifecyclesPerSecond"`
	// AmtsboteCPUPerLifecycle is the CPU seconds all Amtsbote processes
	// spent per accepted submission.
	AmtsboteCPUPerLifecycle float64          `json:"amtsboteCpuSecondsPerLifecycle"`
	LoadtestCPUPerLifecycle float64          `json:"loadtestCpuSecondsPerLifecycle"`
	MachineBusy             float64          `json:"machineBusy"`
	PeakRSS                 map[string]int64 `json:"peakRssBytes"`
	RSSGrowth               map[string]int64 `json:"rssGrowthBytes"`
	// PrivateOpsPerLifecycle are RSA-4096 private-key operations of one
	// lifecycle: the backbone's SETs and the receiver's decryptions and
	// signature.
	PrivateOpsPerLifecycle float64 `json:"privateOpsPerLifecycle"`
	SigningBoundPerSecond  float64 `json:"signingBoundLifecyclesPerSecond"`
	// SigningBacklogPeak is, with receivers "none", the most create- and
	// submit-submission SETs issued but not yet published at once, and
	// SigningDrainSeconds how long after the senders stopped the last was
	// published (-1: not within the drain).
	SigningBacklogPeak  int     `json:"signingBacklogPeak,omitempty"`
	SigningDrainSeconds float64 `json:"signingDrainSeconds,omitempty"`
}

// rate is the throughput of single transfers of one size.
type rate struct {
	Bytes          int64   `json:"bytes"`
	Count          int     `json:"count"`
	BytesPerSecond float64 `json:"bytesPerSecond"` // median of the transfers
}

// bound sets a figure beside the yardstick it is bounded by.
type bound struct {
	Figure string  `json:"figure"`
	Value  float64 `json:"value"`
	Bound  string  `json:"bound"`
	Of     float64 `json:"boundValue"`
	Unit   string  `json:"unit"`
	Target string  `json:"target,omitempty"`
}

type profileTop struct {
	Process string   `json:"process"`
	Profile string   `json:"profile"`
	File    string   `json:"file"`
	Top     []string `json:"top"`
}

func machineInfo() machine {
	return machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
}

func gitCommit(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "git", "-C", moduleRoot(ctx), "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// moduleRoot returns the folder of the module the working directory is
// in, or "." outside any (go env GOMOD says os.DevNull there).
func moduleRoot(ctx context.Context) string {
	root, ok := module(ctx)
	if !ok {
		return "."
	}
	return root
}

func module(ctx context.Context) (string, bool) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", false
	}
	return filepath.Dir(gomod), true
}

func fetchBody(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = &statusError{status: resp.StatusCode, body: string(b)}
	}
	return b, err
}

func ptr(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// fill computes the results, ratios and bounds.
func (r *report) fill(tr *traffic, rec *recorder, smp *sampler, tg *target, start, end time.Time) {
	sc := r.Scenario
	rec.mu.Lock()
	r.Stages = map[string]percentiles{}
	r.LatencyOverTime = map[string]latencySeries{}
	for name, s := range rec.stages {
		if len(s.lat) > 0 {
			r.Stages[name] = percentilesOf(s.lat)
			r.LatencyOverTime[name] = latencySeriesOf(s.lat, s.sec)
		}
	}
	r.Transfers = map[string][]rate{}
	for _, name := range []string{"attachment upload", "attachment download"} {
		if s := rec.stages[name]; s != nil {
			r.Transfers[name] = ratesBySize(s.transfers)
		}
	}
	r.Series = map[string][]int{}
	for k, v := range rec.series {
		r.Series[k] = slices.Clone(v)
	}
	r.Results.Errors = map[string]int{}
	for k, v := range rec.errors {
		r.Results.Errors[k] = v
	}
	r.Results.FirstErrors = slices.Clone(rec.first)
	rec.mu.Unlock()

	res := &r.Results
	res.SendSeconds = time.Duration(sc.Duration).Seconds()
	res.ElapsedSeconds = end.Sub(start).Seconds()
	res.Started = tr.started.Load()
	res.Submitted, res.Routed, res.Accepted = rec.total("submitted"), rec.total("routed"), rec.total("accepted")
	res.Unfinished = res.Submitted - res.Accepted
	if sc.Receivers.Mode == "none" {
		res.Unfinished = res.Submitted - res.Routed
	}
	lastAccept := lastSecond(r.Series["accepted"])
	if res.Accepted > 0 && lastAccept > 0 {
		res.LifecyclesPerSecond = float64(res.Accepted) / lastAccept
	}
	if lastRouted := lastSecond(r.Series["routed"]); lastRouted > 0 {
		res.IngestPerSecond = float64(min(res.Submitted, res.Routed)) / max(res.SendSeconds, lastRouted)
	}
	r.Processes, r.Samples = tg.procs, smp.all()
	window := end.Sub(start)
	amtsbote := 0.0
	res.PeakRSS, res.RSSGrowth = map[string]int64{}, map[string]int64{}
	for _, p := range tg.procs {
		cpu := smp.cpuBetween(p.Name, 0, window)
		if p.Amtsbote {
			amtsbote += cpu
		} else if res.Accepted > 0 {
			res.LoadtestCPUPerLifecycle = cpu / float64(res.Accepted)
		}
		for i, s := range r.Samples {
			res.PeakRSS[p.Name] = max(res.PeakRSS[p.Name], s.RSS[p.Name])
			if i == 0 {
				res.RSSGrowth[p.Name] = -s.RSS[p.Name]
			}
		}
		res.RSSGrowth[p.Name] += res.PeakRSS[p.Name]
	}
	busy := 0.0
	for _, s := range r.Samples {
		busy += s.MachineBusy
	}
	if len(r.Samples) > 0 {
		res.MachineBusy = busy / float64(len(r.Samples))
	}
	if res.Accepted > 0 {
		res.AmtsboteCPUPerLifecycle = amtsbote / float64(res.Accepted)
	}
	res.PrivateOpsPerLifecycle = privateOps(sc)
	ys := r.Yardsticks
	signRate := (ys.SigningPerSecond[0] + ys.SigningPerSecond[1]) / 2
	if ys.SigningPerSecond[1] == 0 {
		// Not measured after a load that was interrupted.
		signRate = ys.SigningPerSecond[0]
	}
	res.SigningBoundPerSecond = signRate / res.PrivateOpsPerLifecycle

	nan := math.NaN()
	ratio := func(a, b float64) float64 {
		if a <= 0 || b <= 0 {
			return nan
		}
		return a / b
	}
	rawJS := mixRate(sc, tr.pool, ys.JetStream)
	up, rawPut := transferRatio(r.Transfers["attachment upload"], ys.ObjectStore, true)
	down, rawGet := transferRatio(r.Transfers["attachment download"], ys.ObjectStore, false)
	share := nan
	if len(tg.procs) > 1 || tg.kind == "dev" {
		share = ratio(backboneSETs*ys.SigningCPUSeconds, res.AmtsboteCPUPerLifecycle)
	}
	routes := ratio(ys.RoutesPerSecond, ys.BareHTTPPerSecond)
	// Answers other than 200 are not the look-ups the ratio compares (a
	// running Amtsbote's rate limit answers 429): with more than 1 % of
	// them it is unmeasured.
	if ys.RoutesErrors > 0 && float64(ys.RoutesErrors) > 0.01*ys.RoutesPerSecond*time.Duration(sc.Routes.For).Seconds() {
		routes = nan
	}
	r.Ratios = map[string]*float64{
		"lifecycleToSigningBound":         ptr(ratio(res.LifecyclesPerSecond, res.SigningBoundPerSecond)),
		"backboneSigningShare":            ptr(share),
		"ingestToRawJetStream":            ptr(ratio(res.IngestPerSecond, rawJS)),
		"routesToBareHTTP":                ptr(routes),
		"attachmentUploadToObjectStore":   ptr(ratio(up, rawPut)),
		"attachmentDownloadToObjectStore": ptr(ratio(down, rawGet)),
	}
	r.Bounds = []bound{
		{Figure: "lifecycles per second", Value: res.LifecyclesPerSecond, Bound: fmt.Sprintf("PS512 signing ÷ %.1f private-key operations", res.PrivateOpsPerLifecycle), Of: res.SigningBoundPerSecond, Unit: "/s", Target: "≥ 0.9"},
		{Figure: "backbone CPU per lifecycle", Value: res.AmtsboteCPUPerLifecycle * 1000, Bound: fmt.Sprintf("%d SET signatures", backboneSETs), Of: backboneSETs * ys.SigningCPUSeconds * 1000, Unit: "ms", Target: "bound ÷ value ≥ 0.8"},
		{Figure: "ingest (create + submit + routed) per second", Value: res.IngestPerSecond, Bound: "raw JetStream async publish, same payloads", Of: rawJS, Unit: "/s", Target: "≥ 0.10"},
		{Figure: "GET /v1/routes per second", Value: ys.RoutesPerSecond, Bound: "bare net/http handler in its own process, same answer, client and concurrency", Of: ys.BareHTTPPerSecond, Unit: "/s", Target: "≥ 0.7"},
		{Figure: "attachment upload", Value: up / (1 << 20), Bound: "raw object-store put", Of: rawPut / (1 << 20), Unit: "MiB/s", Target: "≥ 0.5"},
		{Figure: "attachment download", Value: down / (1 << 20), Bound: "raw object-store get", Of: rawGet / (1 << 20), Unit: "MiB/s", Target: "≥ 0.5"},
	}
	r.Notes = append(r.Notes,
		"Latencies of ingest and lifecycle count from each submission's scheduled start (open loop), so that a slow answer does not hide the wait it causes.",
		"backboneSigningShare assumes the backbone signs three SETs per lifecycle; its CPU per signature is measured by the load test's own signing yardstick.",
		"ingestPerSecond counts submissions submitted and seen routed (in a pickup list, or in an inbox with receivers nats or none), over the sending window or until the last was routed.",
		"Each route is looked up once before the load, untimed: its destinationSignature is made on the first look-up and kept, as a running Amtsbote has it.",
		"The SET signing backlog is not read from the backbone; submitted→listed and the drain show how long routing and signing trailed the load.",
		"dev.cpu.pprof covers the load alone (from the senders' start to the end of the drain), as does the CPU per lifecycle; start-up with the yardsticks that use dev's NATS server is in dev.startup.cpu.pprof, the routes yardstick after the load in dev.after.cpu.pprof. The allocations are those of the load when dev.allocs.start.pprof is there (the top above subtracts it). loadtest.cpu.pprof is the load test's own CPU over the same window. A profiled dev returns its free memory to the system as the load starts, so that its RSS is the load's and not what the yardsticks on its NATS server left.",
		"A ratio is null when the run did not measure one side (no attachments, no accepted lifecycle, no process to sample).",
		"Receivers: "+receiversText(sc.Receivers.Mode)+".",
	)
	if ys.RoutesErrors > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("GET /v1/routes answered %d requests of its yardstick with a status other than 200, a rate limit most likely (serve's --routes-rate and --routes-burst); routesToBareHTTP counts only answers with 200 and is null when more than 1 %% were others.", ys.RoutesErrors))
	}
	if res.MachineBusy > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("The machine's CPUs were %.0f%% busy on average during the run, by every process; figures per lifecycle in CPU seconds are the ones a busy machine does not distort.", 100*res.MachineBusy))
	}
}

// receiversText says in the report's notes who picked the submissions up.
func receiversText(mode string) string {
	switch mode {
	case "sdk":
		return "sdk, HTTP pull with pkg/client, decrypting and checking"
	case "nats":
		return "nats, services/subscriber on the target's INBOX, decrypting and checking through the API, its sink keeping nothing; each decision seen in EVENTS"
	case "ack":
		return "ack, HTTP pull accepting without decrypting"
	}
	return "none, nothing picked up"
}

// privateOps are the RSA-4096 private-key operations of an average
// lifecycle of sc: the backbone's SETs, the receiver's accept, and when it
// decrypts, one content key per JWE.
func privateOps(sc scenario) float64 {
	sum, ops := 0.0, 0.0
	for _, c := range sc.Payloads {
		n := float64(backboneSETs + 1)
		if sc.Receivers.Mode == "sdk" || sc.Receivers.Mode == "nats" {
			n += 1 + float64(len(c.Attachments))
			if c.Data > 0 {
				n++
			}
		}
		sum += c.Weight
		ops += c.Weight * n
	}
	return ops / sum
}

// mixRate is raw JetStream's publish rate for the scenario's mix of
// submit bodies: the weighted harmonic mean over the classes.
func mixRate(sc scenario, p *pool, figs []jsFigure) float64 {
	byClass := map[int]int{}
	for _, classes := range p.variants {
		for c, vs := range classes {
			if len(vs) > 0 && vs[0] != nil {
				byClass[c] = len(vs[0].submitBody)
			}
		}
		break
	}
	sum, t := 0.0, 0.0
	for c, cl := range sc.Payloads {
		for _, f := range figs {
			if f.Bytes == byClass[c] && f.PublishPerSecond > 0 {
				sum += cl.Weight
				t += cl.Weight / f.PublishPerSecond
			}
		}
	}
	if t == 0 {
		return 0
	}
	return sum / t
}

func ratesBySize(ts []transfer) []rate {
	by := map[int64][]float64{}
	for _, t := range ts {
		if t.d > 0 {
			by[t.bytes] = append(by[t.bytes], float64(t.bytes)/t.d.Seconds())
		}
	}
	var out []rate
	for size, v := range by {
		slices.Sort(v)
		out = append(out, rate{Bytes: size, Count: len(v), BytesPerSecond: v[len(v)/2]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Bytes < out[j].Bytes })
	return out
}

// transferRatio weighs the transfers of each size by bytes against the
// raw object store's figure for the same size; it returns the two rates.
func transferRatio(rs []rate, raw []osFigure, put bool) (float64, float64) {
	var bytes, tGot, tRaw float64
	for _, r := range rs {
		for _, f := range raw {
			if f.Bytes != r.Bytes {
				continue
			}
			rawRate := f.GetBytesPerSecond
			if put {
				rawRate = f.PutBytesPerSecond
			}
			b := float64(r.Bytes) * float64(r.Count)
			bytes += b
			tGot += b / r.BytesPerSecond
			tRaw += b / rawRate
		}
	}
	if bytes == 0 {
		return 0, 0
	}
	return bytes / tGot, bytes / tRaw
}

func lastSecond(s []int) float64 {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] > 0 {
			return float64(i + 1)
		}
	}
	return 0
}

// profileTops copies the target's profiles into results and lists the
// top entries of each, and of the load test's own, with go tool pprof.
func profileTops(ctx context.Context, tg *target, results string) []profileTop {
	var out []profileTop
	if tg.profileDir != "" {
		out = devProfileTops(ctx, tg, results)
	}
	if self, err := os.Executable(); err == nil && fileExists(filepath.Join(results, selfProfile)) {
		if lines, err := pprofTop(ctx, self, filepath.Join(results, selfProfile)); err == nil {
			out = append(out, profileTop{Process: "load test", Profile: "cpu", File: selfProfile, Top: lines})
		}
	}
	return out
}

// devProfileTops copies dev's profiles into results and lists their top
// entries.
func devProfileTops(ctx context.Context, tg *target, results string) []profileTop {
	var out []profileTop
	for _, name := range []string{"startup.cpu.pprof", "after.cpu.pprof", "allocs.start.pprof"} {
		if raw, err := os.ReadFile(filepath.Join(tg.profileDir, name)); err == nil {
			_ = os.WriteFile(filepath.Join(results, "dev."+name), raw, 0o644)
		}
	}
	for _, kind := range []struct{ file, index string }{
		{"cpu.pprof", ""}, {"allocs.pprof", "alloc_space"}, {"heap.pprof", "inuse_space"}, {"mutex.pprof", "delay"}, {"block.pprof", "delay"},
	} {
		src := filepath.Join(tg.profileDir, kind.file)
		raw, err := os.ReadFile(src)
		if err != nil {
			continue
		}
		dst := filepath.Join(results, "dev."+kind.file)
		if err := os.WriteFile(dst, raw, 0o644); err != nil {
			continue
		}
		var args []string
		if kind.index != "" {
			args = append(args, "-sample_index="+kind.index)
		}
		// Allocations count from the process's start; those before the
		// load are taken off.
		if base := filepath.Join(tg.profileDir, "allocs.start.pprof"); kind.file == "allocs.pprof" && fileExists(base) {
			args = append(args, "-base", base)
		}
		if lines, err := pprofTop(ctx, tg.bin, src, args...); err == nil {
			out = append(out, profileTop{Process: "amtsbote dev", Profile: strings.TrimSuffix(kind.file, ".pprof"), File: filepath.Base(dst), Top: lines})
		}
	}
	return out
}

// pprofTop lists the top entries of profile file of binary bin.
func pprofTop(ctx context.Context, bin, file string, args ...string) ([]string, error) {
	args = append(append([]string{"tool", "pprof", "-top", "-nodecount=15"}, args...), bin, file)
	top, err := exec.CommandContext(ctx, "go", args...).Output()
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(top)), "\n")
	// The entries follow the header line naming the columns.
	for i, l := range lines {
		if strings.Contains(l, "flat%") {
			return lines[i:], nil
		}
	}
	return lines, nil
}

// write writes report.json, report.html and its throughput and latency
// charts as throughput.svg and latency.svg into dir.
func (r *report) write(dir string) error {
	raw, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"report.json":           append(raw, '\n'),
		"report.html":           r.html(),
		"throughput.svg":        []byte(r.throughputChart()),
		"latency.svg":           []byte(latencyChart(r.Stages)),
		"latency-over-time.svg": []byte(r.latencyOverTimeChart()),
	}
	for _, name := range sortedKeys(files) {
		if err := os.WriteFile(filepath.Join(dir, name), files[name], 0o644); err != nil {
			return err
		}
	}
	return nil
}

// throughputChart draws submissions submitted, routed and accepted per
// second, and SETs signed where the run counted them (receivers "none").
func (r *report) throughputChart() string {
	var tp []line
	for _, k := range []string{"submitted", "routed", "accepted", "signed"} {
		if k == "signed" && len(r.Series[k]) == 0 {
			continue
		}
		var pts []point
		for i, v := range r.Series[k] {
			pts = append(pts, point{float64(i), float64(v)})
		}
		tp = append(tp, line{k, pts})
	}
	return lineChart("per second", "s", tp)
}

func fmtRatio(v *float64) string {
	if v == nil {
		return "–"
	}
	return fmt.Sprintf("%.3f", *v)
}

// summary prints the table the run ends with.
func (r *report) summary(w io.Writer) {
	res := r.Results
	fmt.Fprintf(w, "\nAmtsbote load test: %s, %s on %s/%s, %d CPUs, commit %s, %s\n", r.Scenario.Name, r.Target, r.Machine.OS, r.Machine.Arch, r.Machine.CPUs, r.Commit, r.Started.Format(time.RFC3339))
	fmt.Fprintf(w, "  %d started, %d submitted, %d routed, %d accepted, %d unfinished, %d errors; machine %.0f%% busy\n\n",
		res.Started, res.Submitted, res.Routed, res.Accepted, res.Unfinished, sumErrors(res.Errors), 100*res.MachineBusy)
	if r.Interrupted && len(r.Notes) > 0 {
		fmt.Fprintf(w, "  %s\n\n", r.Notes[0])
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  figure\tvalue\tbound\tvalue of bound\tratio\ttarget")
	names := []string{"lifecycleToSigningBound", "backboneSigningShare", "ingestToRawJetStream", "routesToBareHTTP", "attachmentUploadToObjectStore", "attachmentDownloadToObjectStore"}
	for i, b := range r.Bounds {
		ratio := r.Ratios[names[i]]
		fmt.Fprintf(tw, "  %s\t%.2f %s\t%s\t%.2f %s\t%s\t%s\n", b.Figure, b.Value, b.Unit, b.Bound, b.Of, b.Unit, fmtRatio(ratio), b.Target)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  stage\tcount\tp50 ms\tp90 ms\tp99 ms\tmax ms")
	for _, name := range sortedKeys(r.Stages) {
		p := r.Stages[name]
		fmt.Fprintf(tw, "  %s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\n", name, p.Count, p.P50, p.P90, p.P99, p.Max)
	}
	tw.Flush()
	if r.Scenario.Receivers.Mode == "none" {
		fmt.Fprintf(w, "\n  SET signing backlog: peak %d, %s\n", res.SigningBacklogPeak, drainText(res.SigningDrainSeconds))
	}
	fmt.Fprintf(w, "\n  Amtsbote CPU per lifecycle %.1f ms (3 SETs at %.1f ms each: %.1f ms); load test %.1f ms\n",
		1000*res.AmtsboteCPUPerLifecycle, 1000*r.Yardsticks.SigningCPUSeconds, 3000*r.Yardsticks.SigningCPUSeconds, 1000*res.LoadtestCPUPerLifecycle)
	for name, g := range res.RSSGrowth {
		fmt.Fprintf(w, "  %s: peak RSS %.0f MiB, growth %.0f MiB\n", name, float64(res.PeakRSS[name])/(1<<20), float64(g)/(1<<20))
	}
	for _, e := range res.FirstErrors {
		fmt.Fprintf(w, "  error: %s\n", e)
	}
}

func drainText(seconds float64) string {
	if seconds < 0 {
		return "not drained within the drain time"
	}
	return fmt.Sprintf("drained %.1f s after the senders stopped", seconds)
}

func sumErrors(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// html renders the report as one self-contained page with SVG charts.
func (r *report) html() []byte {
	var b bytes.Buffer
	esc := html.EscapeString
	fmt.Fprintf(&b, `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Amtsbote load test: %s</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:12px}svg{background:#fcfcfc;border:1px solid #ddd;margin:0.5em 0}</style></head><body>`, esc(r.Scenario.Name))
	fmt.Fprintf(&b, "<h1>Amtsbote load test: %s</h1><p>%s</p>", esc(r.Scenario.Name), esc(r.Scenario.Description))
	fmt.Fprintf(&b, "<p>%s, target %s at %s, commit %s, %s/%s, %d CPUs, %s. Started %d, submitted %d, routed %d, accepted %d, unfinished %d, errors %d; machine %.0f%% busy.</p>",
		esc(r.Started.Format(time.RFC3339)), esc(r.Target), esc(r.BaseURL), esc(r.Commit), r.Machine.OS, r.Machine.Arch, r.Machine.CPUs, esc(r.Machine.GoVersion),
		r.Results.Started, r.Results.Submitted, r.Results.Routed, r.Results.Accepted, r.Results.Unfinished, sumErrors(r.Results.Errors), 100*r.Results.MachineBusy)
	b.WriteString("<h2>Each figure beside its bound</h2><table><tr><th>figure</th><th>value</th><th>bound</th><th>value of bound</th><th>ratio</th><th>target</th></tr>")
	names := []string{"lifecycleToSigningBound", "backboneSigningShare", "ingestToRawJetStream", "routesToBareHTTP", "attachmentUploadToObjectStore", "attachmentDownloadToObjectStore"}
	for i, bd := range r.Bounds {
		fmt.Fprintf(&b, "<tr><td>%s</td><td>%.2f %s</td><td>%s</td><td>%.2f %s</td><td>%s (%s)</td><td>%s</td></tr>", esc(bd.Figure), bd.Value, esc(bd.Unit), esc(bd.Bound), bd.Of, esc(bd.Unit), fmtRatio(r.Ratios[names[i]]), names[i], esc(bd.Target))
	}
	b.WriteString("</table>")
	if r.Scenario.Receivers.Mode == "none" {
		fmt.Fprintf(&b, "<p>SET signing backlog: peak %d, %s.</p>", r.Results.SigningBacklogPeak, esc(drainText(r.Results.SigningDrainSeconds)))
	}

	b.WriteString("<h2>Throughput over time</h2>")
	b.WriteString(r.throughputChart())

	b.WriteString("<h2>Latency per stage</h2>")
	b.WriteString(latencyChart(r.Stages))
	b.WriteString("<table><tr><th>stage</th><th>count</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th></tr>")
	for _, name := range sortedKeys(r.Stages) {
		p := r.Stages[name]
		fmt.Fprintf(&b, "<tr><td>%s</td><td>%d</td><td>%.1f</td><td>%.1f</td><td>%.1f</td><td>%.1f</td><td>%.1f</td></tr>", esc(name), p.Count, p.P50, p.P90, p.P99, p.P999, p.Max)
	}
	b.WriteString("</table>")
	b.WriteString("<h2>Latency over time</h2>")
	b.WriteString(r.latencyOverTimeChart())

	b.WriteString("<h2>CPU and memory per process</h2>")
	var cpu, rss []line
	for _, p := range r.Processes {
		var c, m []point
		prev, prevT := 0.0, 0.0
		for _, s := range r.Samples {
			if v, ok := s.CPU[p.Name]; ok && s.T > prevT {
				c = append(c, point{s.T, (v - prev) / (s.T - prevT)})
				prev, prevT = v, s.T
			}
			if v, ok := s.RSS[p.Name]; ok {
				m = append(m, point{s.T, float64(v) / (1 << 20)})
			}
		}
		cpu = append(cpu, line{p.Name, c})
		rss = append(rss, line{p.Name, m})
	}
	var busy []point
	for _, s := range r.Samples {
		busy = append(busy, point{s.T, s.MachineBusy * float64(r.Machine.CPUs)})
	}
	cpu = append(cpu, line{"whole machine", busy})
	b.WriteString(lineChart("CPUs in use", "s", cpu))
	b.WriteString(lineChart("RSS MiB", "s", rss))
	fmt.Fprintf(&b, "<p>Amtsbote CPU per lifecycle %.1f ms; its three SET signatures at the yardstick's %.2f ms each: %.1f ms.</p>",
		1000*r.Results.AmtsboteCPUPerLifecycle, 1000*r.Yardsticks.SigningCPUSeconds, 3000*r.Yardsticks.SigningCPUSeconds)

	b.WriteString("<h2>Yardsticks</h2><table><tr><th>yardstick</th><th>figure</th></tr>")
	ys := r.Yardsticks
	fmt.Fprintf(&b, "<tr><td>PS512 signing, all CPUs, before / after</td><td>%.0f / %.0f per second, %.2f ms CPU each</td></tr>", ys.SigningPerSecond[0], ys.SigningPerSecond[1], 1000*ys.SigningCPUSeconds)
	for _, f := range ys.JetStream {
		fmt.Fprintf(&b, "<tr><td>JetStream (%s), %d bytes</td><td>publish %.0f/s, consume %.0f/s</td></tr>", esc(ys.JetStreamServer), f.Bytes, f.PublishPerSecond, f.ConsumePerSecond)
	}
	for _, f := range ys.ObjectStore {
		fmt.Fprintf(&b, "<tr><td>object store, %d bytes</td><td>put %.1f MiB/s, get %.1f MiB/s</td></tr>", f.Bytes, f.PutBytesPerSecond/(1<<20), f.GetBytesPerSecond/(1<<20))
	}
	fmt.Fprintf(&b, "<tr><td>GET /v1/routes / bare handler in its own process / in the load test's, %d at a time, %d-byte answer</td><td>%.0f/s (%d not 200) / %.0f/s / %.0f/s</td></tr></table>", ys.RoutesConcurrency, ys.RoutesAnswerBytes, ys.RoutesPerSecond, ys.RoutesErrors, ys.BareHTTPPerSecond, ys.BareHTTPInProcessPerSecond)

	if len(r.Results.Errors) > 0 {
		b.WriteString("<h2>Errors</h2><table><tr><th>kind</th><th>count</th></tr>")
		for _, k := range sortedKeys(r.Results.Errors) {
			fmt.Fprintf(&b, "<tr><td>%s</td><td>%d</td></tr>", esc(k), r.Results.Errors[k])
		}
		b.WriteString("</table><pre>")
		for _, e := range r.Results.FirstErrors {
			b.WriteString(esc(e) + "\n")
		}
		b.WriteString("</pre>")
	}
	if len(r.Profiles) > 0 {
		b.WriteString("<h2>Profiles</h2>")
		for _, p := range r.Profiles {
			fmt.Fprintf(&b, "<h3>%s: %s (%s)</h3><pre>%s</pre>", esc(p.Process), esc(p.Profile), esc(p.File), esc(strings.Join(p.Top, "\n")))
		}
	}
	b.WriteString("<h2>Notes</h2><ul>")
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "<li>%s</li>", esc(n))
	}
	b.WriteString("</ul></body></html>\n")
	return b.Bytes()
}

type point struct{ x, y float64 }

type line struct {
	name string
	pts  []point
}

var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"}

// lineChart draws lines in one SVG with axes labelled by their extremes.
func lineChart(ylabel, xlabel string, lines []line) string {
	const w, h, pad = 900.0, 240.0, 40.0
	maxX, maxY := 1.0, 0.0
	for _, l := range lines {
		for _, p := range l.pts {
			maxX, maxY = math.Max(maxX, p.x), math.Max(maxY, p.y)
		}
	}
	if maxY == 0 {
		maxY = 1
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f"><rect width="100%%" height="100%%" fill="#fff"/>`, w, h+20, w, h+20)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#888"/><line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#888"/>`, pad, h-pad, w-pad, h-pad, pad, pad/2, pad, h-pad)
	fmt.Fprintf(&b, `<text x="2" y="%.0f" font-size="11">%.3g</text><text x="2" y="%.0f" font-size="11">0</text><text x="%.0f" y="%.0f" font-size="11">%.0f %s</text><text x="%.0f" y="14" font-size="11">%s</text>`,
		pad/2+4, maxY, h-pad, w-pad-40, h-pad+14, maxX, xlabel, pad+4, html.EscapeString(ylabel))
	for i, l := range lines {
		c := palette[i%len(palette)]
		var pts []string
		for _, p := range l.pts {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", pad+p.x/maxX*(w-2*pad), h-pad-p.y/maxY*(h-1.5*pad)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, c, strings.Join(pts, " "))
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="12" fill="%s">%s</text>`, pad+float64(i)*150, h+12, c, html.EscapeString(l.name))
	}
	b.WriteString("</svg>")
	return b.String()
}

// overTimeStages are the stages the latency-over-time chart draws, where
// the run has them: what a portal waits for, and the whole lifecycle.
var overTimeStages = []string{"http POST submissions", "http PUT submission", "ingest", "lifecycle"}

// latencyOverTimeChart draws the p99 of each second for overTimeStages
// and the longest latency of each second for the first of them there.
func (r *report) latencyOverTimeChart() string {
	var lines []line
	var longest *line
	for _, name := range overTimeStages {
		ls, ok := r.LatencyOverTime[name]
		if !ok {
			continue
		}
		label := strings.TrimPrefix(name, "http ")
		lines = append(lines, line{label + " p99", ls.points(ls.P99)})
		if longest == nil {
			longest = &line{label + " max", ls.points(ls.Max)}
		}
	}
	if longest != nil {
		lines = append(lines, *longest)
	}
	return lineChart("ms, by the second the requests began", "s", lines)
}

// points are the seconds of ls that have latencies, with their values in
// ms, one of ls's series.
func (ls latencySeries) points(ms []float64) []point {
	var pts []point
	for i, n := range ls.Count {
		if n > 0 {
			pts = append(pts, point{float64(i), ms[i]})
		}
	}
	return pts
}

// latencyChart draws p50, p90 and p99 of each stage as bars on a log scale.
func latencyChart(stages map[string]percentiles) string {
	names := sortedKeys(stages)
	const w, row, left = 900.0, 18.0, 220.0
	h := row*float64(len(names)) + 30
	maxMs := 1.0
	for _, n := range names {
		maxMs = math.Max(maxMs, stages[n].P99)
	}
	scale := func(ms float64) float64 { return math.Log10(1+ms) / math.Log10(1+maxMs) * (w - left - 60) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f"><rect width="100%%" height="100%%" fill="#fff"/>`, w, h)
	for i, n := range names {
		p := stages[n]
		y := 20 + float64(i)*row
		fmt.Fprintf(&b, `<text x="4" y="%.0f" font-size="11">%s</text>`, y+11, html.EscapeString(n))
		for j, v := range []float64{p.P99, p.P90, p.P50} {
			fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.1f" height="%.0f" fill="%s"/>`, left, y+2, scale(v), row-4, []string{"#d62728", "#ff7f0e", "#1f77b4"}[j])
		}
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="10">%.0f / %.0f / %.0f ms</text>`, left+scale(p.P99)+4, y+11, p.P50, p.P90, p.P99)
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="12" font-size="11">p50 (blue), p90 (orange), p99 (red), log scale</text></svg>`, left)
	return b.String()
}

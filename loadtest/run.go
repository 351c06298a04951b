package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtsbote/amtsbote/pkg/bus"
	"github.com/amtsbote/amtsbote/pkg/client"
)

// runConfig configures `loadtest run`.
type runConfig struct {
	scenario    string
	duration    time.Duration
	results     string
	baseURL     string
	demoFile    string
	natsURL     string
	pids        string
	bin         string
	databaseURL string
	gv100ad     string
	ack         bool
	receivers   string
	rate        float64
	concurrency int
	progress    bool
	yardsticks  bool
	// destinations overrides the scenario's destination count.
	destinations int
}

func runRun(ctx context.Context, stop *loadStop, args []string, stdout, stderr io.Writer) error {
	var cfg runConfig
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.scenario, "scenario", "steady", "scenario: a name in loadtest/scenarios ("+strings.Join(scenarioNames(), ", ")+") or a JSON file")
	fs.DurationVar(&cfg.duration, "duration", 0, "how long senders start submissions; default the scenario's")
	fs.StringVar(&cfg.results, "results", "", "folder for report.json, report.html and the profiles; default loadtest/results/<time>-<scenario>")
	fs.StringVar(&cfg.baseURL, "base-url", "", "a running Amtsbote's base URL; default: start amtsbote dev as a child process")
	fs.StringVar(&cfg.demoFile, "demo", "", "with -base-url: a file in dev's demo.json form with the sender and receiver clients and the destinations' key files")
	fs.StringVar(&cfg.natsURL, "nats-url", "", "NATS for the JetStream and object-store yardsticks; default the target's (demo.json natsUrl), else an embedded server")
	fs.StringVar(&cfg.pids, "pids", "", "with -base-url: the target's processes on this machine as name=pid,name=pid, whose CPU is sampled")
	fs.StringVar(&cfg.bin, "bin", "", "amtsbote binary for dev; default: build this module's with profiles (loadtest/profiled)")
	fs.StringVar(&cfg.databaseURL, "database-url", "", "PostgreSQL URL for dev; default SQLite in its data dir")
	fs.StringVar(&cfg.gv100ad, "gv100ad", "", "Destatis GV100AD file: applicants' places drawn by population from its Gemeinden; default each region's own area")
	fs.BoolVar(&cfg.ack, "ack", false, "receivers accept without decrypting (the backbone alone); default the scenario's receiver mode")
	fs.StringVar(&cfg.receivers, "receivers", "", "receiver mode instead of the scenario's: sdk (HTTP pull with pkg/client), nats (services/subscriber on the target's INBOX), ack or none")
	fs.Float64Var(&cfg.rate, "rate", 0, "open-loop submissions per second; default the scenario's")
	fs.IntVar(&cfg.concurrency, "concurrency", 0, "closed loop with this many lifecycles under way (each sender waits for its last to be decided) instead of the scenario's arrival")
	fs.BoolVar(&cfg.progress, "progress", true, "draw a progress bar on stderr")
	fs.BoolVar(&cfg.yardsticks, "yardsticks", true, "measure the bounds (signing, raw JetStream and object store, a bare handler) before and after the load; without them the report has no ratios and the run only makes traffic")
	fs.IntVar(&cfg.destinations, "destinations", 0, "destinations the run spreads its traffic over instead of the scenario's; dev is given those it lacks, one per Gemeinde")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	sc, err := loadScenario(cfg.scenario)
	if err != nil {
		return err
	}
	if cfg.duration > 0 {
		sc.Duration = duration(cfg.duration)
	}
	if cfg.receivers != "" {
		sc.Receivers.Mode = cfg.receivers
	}
	if cfg.ack {
		sc.Receivers.Mode = "ack"
	}
	if cfg.rate > 0 {
		sc.Arrival.Mode, sc.Arrival.Rate = "open", cfg.rate
	}
	if cfg.concurrency > 0 {
		sc.Arrival.Mode, sc.Arrival.Concurrency = "closed", cfg.concurrency
	}
	if cfg.destinations > 0 {
		sc.Destinations = cfg.destinations
	}
	if err := sc.check(); err != nil {
		return err
	}
	if cfg.results == "" {
		cfg.results = filepath.Join(moduleRoot(ctx), "loadtest", "results", time.Now().Format("20060102-150405")+"-"+sc.Name)
	}
	if err := os.MkdirAll(cfg.results, 0o755); err != nil {
		return err
	}
	dir, err := readDirectory(cfg.gv100ad)
	if err != nil {
		return err
	}
	dirFile := cfg.gv100ad

	work, err := os.MkdirTemp("", "amtsbote-loadtest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	tg, err := startTarget(ctx, cfg, work, stdout)
	if err != nil {
		return err
	}
	stopped := false
	stopTarget := func() {
		if !stopped {
			stopped = true
			if err := tg.stop(); err != nil {
				fmt.Fprintln(stderr, "stop target:", err)
			}
		}
	}
	defer stopTarget()

	rep := &report{
		Scenario: sc, Started: time.Now().UTC(), Target: tg.kind, BaseURL: tg.baseURL,
		Machine: machineInfo(), Commit: gitCommit(ctx),
	}
	rec := newRecorder(time.Now())
	hc := httpClient(rec, sc.Arrival.MaxInFlight+2*sc.Receivers.Workers+8)
	sid, ssecret, err := tg.demo.credentials("sender")
	if err != nil {
		return err
	}
	rid, rsecret, err := tg.demo.credentials("receiver")
	if err != nil {
		return err
	}
	tokenURL := tg.baseURL + "/token"
	sendTok := &client.ClientCredentials{TokenURL: tokenURL, ClientID: sid, ClientSecret: ssecret, HTTPClient: hc}
	recvTok := &client.ClientCredentials{TokenURL: tokenURL, ClientID: rid, ClientSecret: rsecret, HTTPClient: hc}
	senderClient, err := client.New(tg.baseURL, client.Tokens(sendTok), client.HTTPClient(hc))
	if err != nil {
		return err
	}
	receiverClient, err := client.New(tg.baseURL, client.Tokens(recvTok), client.HTTPClient(hc), client.AttachmentDir(work))
	if err != nil {
		return err
	}
	provisioning := len(tg.dests) < sc.Destinations
	if provisioning && tg.kind != "dev" {
		return fmt.Errorf("scenario %s needs %d destinations; the target offers %d (provision them, then run against it with -base-url and -demo)", sc.Name, sc.Destinations, len(tg.dests))
	}
	// Dev is given the destinations it lacks: one per Gemeinde, found in
	// the GV100AD directory, which also spreads the demand by population.
	if provisioning && dir == nil {
		if dirFile = defaultGV100AD(ctx); !fileExists(dirFile) {
			return fmt.Errorf("scenario %s needs %d destinations, one per Gemeinde of a GV100AD directory; give one with -gv100ad (%s does not exist)", sc.Name, sc.Destinations, dirFile)
		}
		if dir, err = readDirectory(dirFile); err != nil {
			return err
		}
	}
	// Provisioning and the portal's look-ups of thousands of destinations
	// are not the load: they go untimed.
	setup := setupClient()
	var adm *admin
	if tg.kind == "dev" && dir != nil {
		// Portals ask for places all over the directory; dev's own knows
		// only the demo places.
		fmt.Fprintf(stdout, "importing %s into dev…\n", filepath.Base(dirFile))
		t0 := time.Now()
		if adm, err = devAdmin(ctx, tg, cfg.databaseURL, setup); err != nil {
			return err
		}
		if err := adm.importGV100AD(ctx, dirFile); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "imported in %s\n", time.Since(t0).Round(time.Millisecond))
	}
	if provisioning {
		p, err := provision(ctx, tg, adm, dir, sc.Destinations, hc, stdout)
		if err != nil {
			return fmt.Errorf("provision %d destinations: %w", sc.Destinations, err)
		}
		tg.dests = p.dests
		sendTok = &client.ClientCredentials{TokenURL: tokenURL, ClientID: p.senderID, ClientSecret: p.senderKey, HTTPClient: hc}
		setupTok := &client.ClientCredentials{TokenURL: tokenURL, ClientID: p.senderID, ClientSecret: p.senderKey, HTTPClient: setup}
		if senderClient, err = client.New(tg.baseURL, client.Tokens(setupTok), client.HTTPClient(setup)); err != nil {
			return err
		}
	}
	offers, regions, err := tg.offers(ctx, senderClient.Sender())
	if err != nil {
		return err
	}
	ds := demands(offers, regions, dir)
	if len(ds) == 0 {
		return errors.New("no place is served by any destination of the target")
	}
	if sc.RoutesLookup {
		fmt.Fprintf(stdout, "looking up the routes of %d services once, for their signatures…\n", len(offers))
		t0 := time.Now()
		if err := warmRoutes(ctx, setup, tg.baseURL, ds); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "looked up in %s\n", time.Since(t0).Round(time.Millisecond))
	}
	fmt.Fprintf(stdout, "sealing %d variants of %d payload classes for %d services of %d destinations…\n", sc.Pool, len(sc.Payloads), len(offers), len(tg.dests))
	pl, err := buildPool(ctx, offers, sc.Payloads, sc.Pool, work)
	if err != nil {
		return err
	}

	// Yardsticks before the load: signing, raw JetStream, object store.
	ys := &rep.Yardsticks
	if cfg.yardsticks {
		fmt.Fprintf(stdout, "yardsticks: PS512 signing on all CPUs…\n")
		if ys.SigningPerSecond[0], ys.SigningCPUSeconds, err = signingCost(ctx, tg.signing, time.Duration(sc.Yardsticks)); err != nil {
			return err
		}
	}
	nc, jsName, closeNATS, err := natsFor(tg.natsURL, tempDirFor(work))
	if err != nil {
		return fmt.Errorf("yardstick nats: %w", err)
	}
	defer closeNATS()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(256))
	if err != nil {
		return err
	}
	// The same replication as the target's submissions and payloads.
	msgReplicas, objReplicas := replicasOf(ctx, js, bus.StreamIngress), replicasOf(ctx, js, bus.StreamPayloads)
	ys.JetStreamServer = fmt.Sprintf("%s, R%d", jsName, msgReplicas)
	if objReplicas != msgReplicas {
		ys.JetStreamServer += fmt.Sprintf(", objects R%d", objReplicas)
	}
	if cfg.yardsticks {
		for _, size := range submitSizes(pl) {
			fmt.Fprintf(stdout, "yardsticks: raw JetStream publish and consume of %d bytes…\n", size)
			f, err := jetStreamRate(ctx, js, size, msgReplicas, time.Duration(sc.Yardsticks))
			if err != nil {
				return err
			}
			ys.JetStream = append(ys.JetStream, f)
		}
		for _, size := range attachmentSizes(pl) {
			fmt.Fprintf(stdout, "yardsticks: raw object store put and get of %d bytes…\n", size)
			f, err := objectRate(ctx, js, size, objReplicas, time.Duration(sc.Yardsticks))
			if err != nil {
				return err
			}
			ys.ObjectStore = append(ys.ObjectStore, f)
		}
	}

	// The load.
	tr := &traffic{
		sc: sc, base: tg.baseURL, hc: hc, rec: rec, pool: pl, demands: newPicker(ds), class: classPicker(sc.Payloads),
		sendTok: sendTok, recvTok: recvTok, dests: map[string]*destination{}, receive: receiverClient.Receiver(),
		pending: map[string]map[string]*inflight{}, handed: map[string]*inflight{}, byID: map[string]*inflight{},
	}
	for _, d := range tg.dests {
		tr.dests[d.id] = d
	}
	if _, err := sendTok.Token(ctx); err != nil {
		return err
	}
	if _, err := recvTok.Token(ctx); err != nil {
		return err
	}
	var watch *busWatch
	if sc.Receivers.Mode == "none" || sc.Receivers.Mode == "nats" {
		if tg.natsURL == "" {
			return fmt.Errorf("receivers %s: the run follows routing and decisions on the target's NATS; give it with -nats-url", sc.Receivers.Mode)
		}
		if watch, err = watchBus(nc, tr); err != nil {
			return err
		}
		defer watch.stop()
	}
	fmt.Fprintf(stdout, "machine settled after the yardsticks in %.1f s\n", settle(ctx, settleLimit).Seconds())
	tg.markLoad(syscall.SIGUSR1)
	// The load test's own CPU shares the machine with the target's; its
	// profile shows what of it is the generator's.
	stopSelf, err := profileSelf(filepath.Join(cfg.results, selfProfile))
	if err != nil {
		return err
	}
	start := time.Now()
	rec.start = start
	smp := newSampler(tg.procs, start)
	sampleCtx, stopSampling := context.WithCancel(ctx)
	go smp.run(sampleCtx, time.Second)
	fmt.Fprintf(stdout, "running %s for %s (%s)…\n", sc.Name, time.Duration(sc.Duration), arrivalText(sc))
	sendersDone := make(chan struct{})
	// An interrupt ends the sending; what was started is still received
	// and reported.
	sendCtx, endSending := context.WithCancel(ctx)
	defer endSending()
	var interrupted atomic.Bool
	disarm := stop.arm(func() {
		interrupted.Store(true)
		fmt.Fprintln(stderr, "\ninterrupted: no more submissions are started; the report follows once those under way are done (interrupt again to stop at once)")
		endSending()
	})
	defer disarm()
	var sentFor time.Duration
	go func() { tr.send(sendCtx, start); sentFor = time.Since(start); close(sendersDone) }()
	progressDone, received := make(chan struct{}), make(chan struct{})
	if cfg.progress {
		go progressBar(stderr, tr, start, time.Duration(sc.Duration), sendersDone, received, progressDone)
	} else {
		close(progressDone)
	}
	var recvErr error
	loadEnd := sync.OnceFunc(func() { tg.markLoad(syscall.SIGUSR2); stopSelf() })
	switch {
	case sc.Receivers.Mode == "nats":
		recvErr = tr.receiveNATS(ctx, sendersDone, tg.natsURL, receiverClient, nc)
	case watch != nil:
		// Nobody picks up: the load is the sending, and the signing backlog's
		// drain after it lands in the after-load profile.
		go func() { <-sendersDone; loadEnd() }()
		recvErr = watch.await(ctx, sendersDone, time.Duration(sc.Drain))
	default:
		recvErr = tr.receiveAll(ctx, sendersDone)
	}
	<-sendersDone
	close(received)
	<-progressDone
	end := time.Now()
	disarm()
	loadEnd()
	stopSampling()
	if recvErr != nil {
		rec.fail("drain", recvErr)
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	if interrupted.Load() {
		// Ended early: the sending took what it took, and the report
		// comes without the yardsticks after the load.
		rep.Scenario.Duration = duration(sentFor)
		rep.Interrupted = true
		rep.Notes = append(rep.Notes, fmt.Sprintf("Interrupted: submissions were started for %.0f s instead of %s, and the yardsticks after the load (GET /v1/routes beside a bare handler, signing again) were not measured.",
			sentFor.Seconds(), time.Duration(sc.Duration)))
	}
	// Yardsticks after the load: /v1/routes beside a bare handler, signing again.
	if cfg.yardsticks && len(ds) > 0 && !interrupted.Load() {
		d := ds[0]
		q := url.Values{"leikaKey": {strings.TrimPrefix(d.offer.service, "urn:de:fim:leika:leistung:")}, "ars": {d.ars}}
		routesURL := tg.baseURL + "/v1/routes?" + q.Encode()
		body, err := fetchBody(ctx, routesURL)
		if err != nil {
			return fmt.Errorf("routes yardstick: %w", err)
		}
		bare, closeBare, err := bareServer(ctx, work, body)
		if err != nil {
			return err
		}
		inProcess, closeInProcess, err := bareServerInProcess(body)
		if err != nil {
			closeBare()
			return err
		}
		c := sc.Routes.Concurrency
		bc := benchClient(c)
		fmt.Fprintf(stdout, "yardsticks: GET /v1/routes and a bare handler, %d at a time, %s each…\n", c, time.Duration(sc.Routes.For))
		ys.RoutesPerSecond, ys.BareHTTPPerSecond, ys.RoutesErrors = alternateRates(ctx, bc, routesURL, bare, c, time.Duration(sc.Routes.For))
		ys.BareHTTPInProcessPerSecond, _ = requestRate(ctx, bc, inProcess, c, time.Duration(sc.Routes.For))
		ys.RoutesConcurrency, ys.RoutesAnswerBytes = c, len(body)
		closeBare()
		closeInProcess()
	}
	if cfg.yardsticks && !interrupted.Load() {
		fmt.Fprintf(stdout, "yardsticks: PS512 signing again…\n")
		var after float64
		if ys.SigningPerSecond[1], after, err = signingCost(ctx, tg.signing, time.Duration(sc.Yardsticks)); err != nil {
			return err
		}
		// This machine's signing speed drifts during a run; the CPU of a
		// signature is the mean of before and after, as the bound is.
		ys.SigningCPUSeconds = (ys.SigningCPUSeconds + after) / 2
	}

	stopTarget()
	rep.fill(tr, rec, smp, tg, start, end)
	if watch != nil && sc.Receivers.Mode == "none" {
		rep.Results.SigningBacklogPeak, rep.Results.SigningDrainSeconds = watch.figures()
	}
	rep.Profiles = profileTops(ctx, tg, cfg.results)
	if err := rep.write(cfg.results); err != nil {
		return err
	}
	rep.summary(stdout)
	fmt.Fprintf(stdout, "\nreport: %s\n        %s\n", filepath.Join(cfg.results, "report.json"), filepath.Join(cfg.results, "report.html"))
	return nil
}

// selfProfile is the load test's CPU profile of the load in the results.
const selfProfile = "loadtest.cpu.pprof"

// profileSelf records the load test's CPU profile into path until the
// returned function is called.
func profileSelf(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("load test profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func arrivalText(sc scenario) string {
	if sc.Arrival.Mode == "closed" {
		return fmt.Sprintf("closed loop, %d senders", sc.Arrival.Concurrency)
	}
	s := fmt.Sprintf("open loop, %.1f per second", sc.Arrival.Rate)
	if b := sc.Arrival.Burst; b != nil {
		s += fmt.Sprintf(", %.0f× for %s from %.0f%% of the run", b.Factor, time.Duration(b.For), 100*b.At)
	}
	return s + "; receivers " + sc.Receivers.Mode
}

// submitSizes are the distinct sizes of the pool's submit bodies, one per class.
func submitSizes(p *pool) []int {
	seen := map[int]int{}
	for _, classes := range p.variants {
		for c, vs := range classes {
			if _, ok := seen[c]; !ok && len(vs) > 0 && vs[0] != nil {
				seen[c] = len(vs[0].submitBody)
			}
		}
	}
	var out []int
	for _, s := range seen {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// attachmentSizes are the distinct sizes of the pool's attachment JWEs.
func attachmentSizes(p *pool) []int64 {
	var out []int64
	for _, classes := range p.variants {
		for _, vs := range classes {
			if len(vs) == 0 || vs[0] == nil {
				continue
			}
			for _, a := range vs[0].atts {
				if !slices.Contains(out, a.size) {
					out = append(out, a.size)
				}
			}
		}
		break
	}
	slices.Sort(out)
	return out
}

// progressBar redraws one line on w every second until received closes.
func progressBar(w io.Writer, tr *traffic, start time.Time, d time.Duration, sendersDone, received <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	draw := func() {
		el := time.Since(start)
		frac := min(1, float64(el)/float64(d))
		const width = 30
		bar := strings.Repeat("=", int(frac*width)) + strings.Repeat(" ", width-int(frac*width))
		phase := "sending"
		select {
		case <-sendersDone:
			phase = "draining"
		default:
		}
		fmt.Fprintf(w, "\r[%s] %3.0fs/%.0fs %-8s started %d submitted %d accepted %d errors %d in flight %d   ",
			bar, el.Seconds(), d.Seconds(), phase, tr.started.Load(), tr.rec.total("submitted"), tr.done.Load(), tr.rec.errorCount(), tr.active.Load())
	}
	for {
		select {
		case <-tick.C:
			draw()
		case <-received:
			draw()
			fmt.Fprintln(w)
			return
		}
	}
}

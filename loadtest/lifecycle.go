package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/amtsbote/amtsbote/pkg/client"
	"github.com/amtsbote/amtsbote/pkg/jose"
	"github.com/amtsbote/amtsbote/pkg/set"
)

// privateOpsPerLifecycle counts the RSA-4096 private-key operations of one
// lifecycle: Amtsbote signs create-, submit- and notify-submission, the
// receiver decrypts the content keys of metadata and data and signs
// accept-submission. An RSA-OAEP decryption costs what a PS512 signature
// costs.
const privateOpsPerLifecycle = 6

type lifecycleConfig struct {
	bin         string
	databaseURL string
	duration    time.Duration
	drain       time.Duration
	signFor     time.Duration
	senders     int
	receivers   int
	dataSize    int
}

func runLifecycle(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg lifecycleConfig
	fs := flag.NewFlagSet("lifecycle", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.bin, "bin", "", "amtsbote binary to run; default: build this module's")
	fs.StringVar(&cfg.databaseURL, "database-url", "", "PostgreSQL URL for dev (a fresh schema); default SQLite in the temporary data dir")
	fs.DurationVar(&cfg.duration, "duration", 20*time.Second, "how long senders start new lifecycles")
	fs.DurationVar(&cfg.drain, "drain", time.Minute, "how long to wait afterwards for started lifecycles to finish")
	fs.DurationVar(&cfg.signFor, "sign", 3*time.Second, "how long to measure the parallel PS512 signing rate")
	fs.IntVar(&cfg.senders, "senders", runtime.NumCPU(), "concurrent senders, each starting its next lifecycle when its submit is answered")
	fs.IntVar(&cfg.receivers, "receivers", 2*runtime.NumCPU(), "concurrent receivers fed by one pickup list poller")
	fs.IntVar(&cfg.dataSize, "data", 16<<10, "bytes of specialist data per submission")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if cfg.duration <= 0 || cfg.drain <= 0 || cfg.signFor <= 0 || cfg.senders < 1 || cfg.receivers < 1 || cfg.dataSize < 16 {
		fmt.Fprintln(stderr, "lifecycle: durations must be positive, senders and receivers at least 1, data at least 16 bytes")
		return errUsage
	}

	dir, err := os.MkdirTemp("", "amtsbote-loadtest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if cfg.bin == "" {
		fmt.Fprintln(stdout, "building amtsbote…")
		if cfg.bin, err = buildAmtsbote(ctx, dir); err != nil {
			return err
		}
	}
	fmt.Fprintln(stdout, "starting amtsbote dev (first start generates RSA-4096 keys)…")
	d, err := startDev(ctx, cfg.bin, filepath.Join(dir, "data"), cfg.databaseURL, nil, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err := d.stop(); err != nil {
			fmt.Fprintf(stderr, "dev: %v\n%s", err, d.stderr.String())
		}
	}()

	key, err := readKey(filepath.Join(dir, "data", "keys", "amtsbote.signing.jwk.json"))
	if err != nil {
		return err
	}
	// Signing is measured before and after the lifecycles, so that a
	// machine whose load changes meanwhile shows it.
	var signRates [2]float64
	fmt.Fprintf(stdout, "measuring PS512 signing on %d goroutines for %s…\n", runtime.NumCPU(), cfg.signFor)
	if signRates[0], err = signingRate(ctx, key, cfg.signFor); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "running lifecycles: %d senders, %d receivers, %s…\n", cfg.senders, cfg.receivers, cfg.duration)
	before, err := readProc(d.cmd.Process.Pid)
	if err != nil {
		return err
	}
	res, err := lifecycles(ctx, d.demo, cfg)
	if err != nil {
		return err
	}
	after, err := readProc(d.cmd.Process.Pid)
	if err != nil {
		return err
	}
	res.devCPU = after.cpu - before.cpu
	fmt.Fprintf(stdout, "measuring PS512 signing again…\n")
	if signRates[1], err = signingRate(ctx, key, cfg.signFor); err != nil {
		return err
	}
	store := "SQLite"
	if cfg.databaseURL != "" {
		store = "PostgreSQL"
	}
	printLifecycle(stdout, cfg, store, res, signRates)
	return nil
}

// readKey reads Amtsbote's private signing key from dev's data dir.
func readKey(path string) (jose.KeyPair, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return jose.KeyPair{}, fmt.Errorf("read signing key: %w", err)
	}
	kp, err := jose.ParsePrivate(raw)
	if err != nil {
		return jose.KeyPair{}, fmt.Errorf("read signing key %s: %w", path, err)
	}
	// Keys read from a file lack the CRT values Amtsbote computes too.
	kp.Private.Precompute()
	return kp, nil
}

// signingRate signs one SET over and over on runtime.NumCPU() goroutines
// for d and returns signatures per second.
func signingRate(ctx context.Context, key jose.KeyPair, d time.Duration) (float64, error) {
	claims, err := set.New(set.SubmitSubmission, "https://amtsbote.example", uuid.NewString(), uuid.NewString(),
		set.SubmitPayload{AuthenticationTags: set.AuthenticationTags{Metadata: "AAECAwQFBgcICQoLDA0ODw", Data: "EBESExQVFhcYGRobHB0eHw"}}, time.Now())
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		n     atomic.Int64
		wg    sync.WaitGroup
		first atomic.Pointer[error]
	)
	start := time.Now()
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, err := set.Sign(claims, key.Private, key.Public.KeyID); err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	if e := first.Load(); e != nil {
		return 0, fmt.Errorf("sign: %w", *e)
	}
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}

// destination is a demo destination with its receiver's keys.
type destination struct {
	id, service string
	ring        client.KeyRing
	enc         []jose.KeyPair // the keys of ring, for services/subscriber
	signer      jose.KeyPair
	// receive and tok are the back office that picks the destination's
	// submissions up; nil for the run's one receiver.
	receive *client.Receiver
	tok     *client.ClientCredentials
}

// result is what a lifecycle run measured.
type result struct {
	elapsed   time.Duration
	started   int
	completed int
	latencies []time.Duration
	errs      []error // the first few
	failed    int
	devCPU    time.Duration // CPU time dev used while lifecycles ran
}

// runState is the shared state of one lifecycle run.
type runState struct {
	mu        sync.Mutex
	started   map[string]time.Time // submission id → when its sender started
	owner     map[string]*destination
	latencies []time.Duration
	errs      []error
	failed    int
	begun     int
	lastDone  time.Time
}

func (s *runState) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failed++
	if len(s.errs) < 5 {
		s.errs = append(s.errs, err)
	}
}

// lifecycles runs senders for cfg.duration and receivers until every
// started lifecycle finished or cfg.drain passed after that.
func lifecycles(ctx context.Context, demo demoFile, cfg lifecycleConfig) (result, error) {
	dests := make([]*destination, 0, len(demo.Destinations))
	for _, dd := range demo.Destinations {
		enc, err := readKey(dd.EncryptionKeyFile)
		if err != nil {
			return result{}, err
		}
		sig, err := readKey(dd.SigningKeyFile)
		if err != nil {
			return result{}, err
		}
		ring, err := client.NewKeyRing(enc)
		if err != nil {
			return result{}, err
		}
		dests = append(dests, &destination{id: dd.DestinationID, service: dd.Services[0], ring: ring, signer: sig})
	}
	hc := &http.Client{
		Timeout:   time.Minute,
		Transport: &http.Transport{MaxIdleConnsPerHost: cfg.senders + cfg.receivers + 4, IdleConnTimeout: time.Minute},
	}
	newClient := func(role string) (*client.Client, error) {
		id, secret, err := demo.credentials(role)
		if err != nil {
			return nil, err
		}
		return client.New(demo.BaseURL, client.Credentials(id, secret), client.HTTPClient(hc))
	}
	senderClient, err := newClient("sender")
	if err != nil {
		return result{}, err
	}
	receiverClient, err := newClient("receiver")
	if err != nil {
		return result{}, err
	}
	sender, receiver := senderClient.Sender(), receiverClient.Receiver()
	data, err := specialistData(cfg.dataSize)
	if err != nil {
		return result{}, err
	}

	st := &runState{started: map[string]time.Time{}, owner: map[string]*destination{}}
	begin := time.Now()
	sendCtx, stopSending := context.WithTimeout(ctx, cfg.duration)
	defer stopSending()
	var senders sync.WaitGroup
	var next atomic.Int64
	for range cfg.senders {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for sendCtx.Err() == nil {
				dest := dests[int(next.Add(1))%len(dests)]
				t0 := time.Now()
				r, err := sender.Submit(ctx, client.Submission{
					DestinationID: dest.id,
					ServiceType:   client.ServiceType{Identifier: dest.service, Name: "Lasttest"},
					Data:          data,
				})
				if err != nil {
					st.fail(err)
					continue
				}
				st.mu.Lock()
				st.started[r.SubmissionID], st.owner[r.SubmissionID] = t0, dest
				st.begun++
				st.mu.Unlock()
			}
		}()
	}

	// One lister hands submissions to the receivers, as a back office
	// with several workers does; each submission is handed out once.
	work := make(chan string, cfg.receivers)
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	var receivers sync.WaitGroup
	for range cfg.receivers {
		receivers.Add(1)
		go func() {
			defer receivers.Done()
			for sid := range work {
				st.mu.Lock()
				dest := st.owner[sid]
				st.mu.Unlock()
				if err := pickUp(runCtx, receiver, sid, dest); err != nil {
					st.fail(err)
					continue
				}
				now := time.Now()
				st.mu.Lock()
				st.latencies = append(st.latencies, now.Sub(st.started[sid]))
				st.lastDone = now
				st.mu.Unlock()
			}
		}()
	}
	sendersDone := make(chan struct{})
	go func() { senders.Wait(); close(sendersDone) }()
	listErr := list(runCtx, receiver, dests, st, work, sendersDone, cfg.drain)
	close(work)
	receivers.Wait()
	<-sendersDone

	st.mu.Lock()
	defer st.mu.Unlock()
	end := st.lastDone
	if end.IsZero() {
		end = time.Now()
	}
	res := result{
		elapsed: end.Sub(begin), started: st.begun, completed: len(st.latencies),
		latencies: st.latencies, errs: st.errs, failed: st.failed,
	}
	if listErr != nil && !errors.Is(listErr, context.Canceled) {
		res.errs = append(res.errs, listErr)
	}
	return res, ctx.Err()
}

// list polls the pickup lists and hands each new submission of this run to
// work, until the senders are done and every started submission was
// handed out, or drain passed after the senders stopped.
func list(ctx context.Context, r *client.Receiver, dests []*destination, st *runState, work chan<- string, sendersDone <-chan struct{}, drain time.Duration) error {
	handed := map[string]bool{}
	var drainBy <-chan time.Time
	for {
		found := 0
		for _, d := range dests {
			page, err := r.ListSubmissions(ctx, d.id, 500, 0)
			if err != nil {
				return err
			}
			for _, p := range page.Submissions {
				st.mu.Lock()
				_, ours := st.started[p.SubmissionID]
				st.mu.Unlock()
				if !ours || handed[p.SubmissionID] {
					continue
				}
				handed[p.SubmissionID] = true
				found++
				select {
				case work <- p.SubmissionID:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		select {
		case <-sendersDone:
			if drainBy == nil {
				drainBy = time.After(drain)
			}
			st.mu.Lock()
			all := len(handed) >= st.begun
			st.mu.Unlock()
			if all {
				return nil
			}
		default:
		}
		if found > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-drainBy:
			return fmt.Errorf("%d submissions not listed within %s after the senders stopped", countUnhanded(st, handed), drain)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func countUnhanded(st *runState, handed map[string]bool) int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.begun - len(handed)
}

// pickUp fetches, checks and accepts one submission. Amtsbote signs its
// events off the request path, so a fetch may come before the
// submit-submission event is in the case's log; it is repeated for a while.
func pickUp(ctx context.Context, r *client.Receiver, sid string, dest *destination) error {
	giveUp := time.Now().Add(30 * time.Second)
	for {
		rec, err := r.Fetch(ctx, sid, dest.ring)
		if errors.Is(err, client.ErrNoEvents) && time.Now().Before(giveUp) {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		if err != nil {
			return err
		}
		defer rec.Close()
		return r.Accept(ctx, rec, dest.signer)
	}
}

// printLifecycle prints the figures.
func printLifecycle(w io.Writer, cfg lifecycleConfig, store string, res result, signRates [2]float64) {
	signRate := (signRates[0] + signRates[1]) / 2
	rate := 0.0
	if res.elapsed > 0 {
		rate = float64(res.completed) / res.elapsed.Seconds()
	}
	fmt.Fprintf(w, "\nAmtsbote lifecycle load test\n")
	fmt.Fprintf(w, "  system            amtsbote dev on %s, child process; %s/%s, %d CPUs, %s\n", store, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
	fmt.Fprintf(w, "  lifecycle         announce → submit → route → pickup → accept through HTTP (Go SDK); %d bytes data, no attachments\n", cfg.dataSize)
	fmt.Fprintf(w, "  load              %d senders, %d receivers on the same machine, new lifecycles for %s\n", cfg.senders, cfg.receivers, cfg.duration)
	fmt.Fprintf(w, "  lifecycles        %d completed of %d started, %d errors, in %.1fs: %.1f per second\n",
		res.completed, res.started, res.failed, res.elapsed.Seconds(), rate)
	if n := len(res.latencies); n > 0 {
		lat := slices.Clone(res.latencies)
		slices.Sort(lat)
		pct := func(p int) time.Duration { return lat[min(n-1, n*p/100)] }
		fmt.Fprintf(w, "  submit→accepted   p50 %s   p99 %s   max %s   (Sender.Submit's first request to accept-submission answered)\n",
			pct(50).Round(time.Millisecond), pct(99).Round(time.Millisecond), lat[n-1].Round(time.Millisecond))
	}
	if res.completed > 0 {
		fmt.Fprintf(w, "  dev CPU           %.1f ms per lifecycle (%.1fs user+system of the dev process from /proc while lifecycles ran)\n",
			float64(res.devCPU.Microseconds())/1000/float64(res.completed), res.devCPU.Seconds())
	}
	fmt.Fprintf(w, "  PS512 signing     %.0f signatures per second (%.0f before, %.0f after the lifecycles): RSA-4096, pkg/set, %d goroutines, %s each\n",
		signRate, signRates[0], signRates[1], runtime.NumCPU(), cfg.signFor)
	if signRate > 0 {
		bound := signRate / privateOpsPerLifecycle
		fmt.Fprintf(w, "  ratio             %.3f lifecycles per signature; each lifecycle costs %d RSA-4096 private-key operations\n", rate/signRate, privateOpsPerLifecycle)
		fmt.Fprintf(w, "                    (Amtsbote signs 3 SETs, the receiver decrypts 2 content keys and signs 1 SET),\n")
		fmt.Fprintf(w, "                    so this machine's bound is %.1f lifecycles per second: reached %.0f%%\n", bound, 100*rate/bound)
	}
	for _, err := range res.errs {
		fmt.Fprintf(w, "  error             %v\n", err)
	}
}

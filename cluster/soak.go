package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtsbote/amtsbote/internal/cluster"
	"github.com/amtsbote/amtsbote/pkg/bus"
)

// soakConfig configures go run ./cluster soak.
type soakConfig struct {
	duration, every, down, settle time.Duration
	rate                          float64
	scenario                      string
}

// failover is one stream-leader loss of the soak.
type failover struct {
	Stream    string    `json:"stream"`
	Node      string    `json:"node"`
	Killed    time.Time `json:"killed"`
	Elected   time.Time `json:"elected"`   // another node leads the stream
	Restarted time.Time `json:"restarted"` // the killed node runs again
	Current   time.Time `json:"current"`   // every replica of every stream caught up
	NewLeader string    `json:"newLeader"`
}

// soakReport is what the soak prints and writes to soak.json.
type soakReport struct {
	Duration  string     `json:"duration"`
	Rate      float64    `json:"rate"`
	Failovers []failover `json:"failovers"`
	// Submitted is what the API accepted (202 to the submit), by the load
	// test; Accepted what ended accepted by its account.
	Submitted int `json:"submitted"`
	Accepted  int `json:"accepted"`
	LoadErrs  int `json:"loadErrors"`
	// Late is what was still on a pickup list when the load ended, taken
	// by the late back office.
	Late lateTally `json:"late"`
	// Counted in EVENTS, the source of truth, and in the store's projection.
	StreamCases     int     `json:"streamCases"`
	StreamAccepted  int     `json:"streamAccepted"`
	StoreSubmitted  int     `json:"storeSubmitted"`
	StoreAccepted   int     `json:"storeAccepted"`
	Lost            int     `json:"lost"`
	Duplicated      int     `json:"duplicated"`
	DuringFailover  latency `json:"submitToAcceptedDuringFailover"`
	OutsideFailover latency `json:"submitToAcceptedOutside"`
}

type latency struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50Seconds"`
	P99   float64 `json:"p99Seconds"`
	Max   float64 `json:"maxSeconds"`
}

func runSoak(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := commonFlags(fs, getenv, "soak")
	var sc soakConfig
	def := 30 * time.Minute
	if v := getenv("SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("SOAK_DURATION: %w", err)
		}
		def = d
	}
	fs.DurationVar(&sc.duration, "duration", def, "how long the load runs (SOAK_DURATION)")
	fs.DurationVar(&sc.every, "every", 3*time.Minute, "time between stream-leader losses")
	fs.DurationVar(&sc.down, "down", 30*time.Second, "how long a killed node stays down")
	fs.DurationVar(&sc.settle, "settle", 15*time.Second, "after the restart, how long still counts as during the failover")
	fs.Float64Var(&sc.rate, "rate", 4, "submissions per second, each with the scenario's attachments")
	fs.StringVar(&sc.scenario, "scenario", "steady", "load test scenario")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if sc.every < sc.down+sc.settle {
		return fmt.Errorf("-every %s: want at least -down plus -settle, %s", sc.every, sc.down+sc.settle)
	}
	cfg, err := cf.config(ctx, stdout)
	if err != nil {
		return err
	}
	root := moduleRoot()
	loadBin := filepath.Join(root, "bin", "loadtest")
	build := exec.CommandContext(ctx, "go", "build", "-o", loadBin, "./loadtest")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./loadtest: %w\n%s", err, out)
	}
	c, err := cluster.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Stop()
	if err := c.Print(stdout); err != nil {
		return err
	}

	var pids []string
	for name, pid := range c.Processes() {
		if !strings.HasPrefix(name, "amtsbote-") {
			pids = append(pids, name+"="+strconv.Itoa(pid))
		}
	}
	slices.Sort(pids)
	results := filepath.Join(cf.dir, "loadtest")
	load := exec.CommandContext(ctx, loadBin, "run", "-base-url", c.PublicURL, "-demo", c.Demo, "-nats-url", c.NATSURL,
		"-scenario", sc.scenario, "-rate", strconv.FormatFloat(sc.rate, 'g', -1, 64), "-duration", sc.duration.String(),
		"-progress=false", "-results", results, "-pids", strings.Join(pids, ","))
	load.Dir = root
	pr, pw := io.Pipe()
	load.Stdout, load.Stderr = pw, pw
	fmt.Fprintf(stdout, "soak: %s of %s at %g/s, a stream leader killed every %s for %s\n", sc.duration, sc.scenario, sc.rate, sc.every, sc.down)
	if err := load.Start(); err != nil {
		return fmt.Errorf("start load test: %w", err)
	}
	started := make(chan time.Time, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		once := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(stdout, "loadtest:", line)
			if !once && strings.HasPrefix(line, "running ") {
				once = true
				started <- time.Now()
			}
		}
	}()
	loadDone := make(chan error, 1)
	go func() { loadDone <- load.Wait(); pw.Close() }()

	nc, err := nats.Connect(c.NATSURL, nats.Name("amtsbote soak"), nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}

	var (
		fmu       sync.Mutex
		failovers []failover
		loadErr   error
	)
	foCtx, stopFailovers := context.WithCancel(ctx)
	defer stopFailovers()
	var foWG sync.WaitGroup
	select {
	case t := <-started:
		foWG.Add(1)
		go func() {
			defer foWG.Done()
			streams := []string{bus.StreamIngress, bus.StreamInbox, bus.StreamEvents}
			// The last loss ends, node current again, before the load does.
			end := t.Add(sc.duration - sc.down - sc.settle)
			for n := 0; ; n++ {
				next := t.Add(time.Duration(n+1) * sc.every)
				if next.After(end) {
					return
				}
				select {
				case <-foCtx.Done():
					return
				case <-time.After(time.Until(next)):
				}
				f, err := loseLeader(foCtx, c, js, streams[n%len(streams)], sc.down, stdout)
				if err != nil {
					fmt.Fprintf(stdout, "soak: failover %d: %v\n", n+1, err)
					if foCtx.Err() != nil {
						return
					}
					continue
				}
				fmu.Lock()
				failovers = append(failovers, f)
				fmu.Unlock()
			}
		}()
		loadErr = <-loadDone
	case loadErr = <-loadDone:
	case <-ctx.Done():
		return ctx.Err()
	}
	stopFailovers()
	foWG.Wait()
	if loadErr != nil {
		return fmt.Errorf("load test: %w", loadErr)
	}

	fmt.Fprintf(stdout, "soak: load done, %d failovers; the late back office picks up what is left…\n", len(failovers))
	tmp, err := os.MkdirTemp("", "amtsbote-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	late, err := lateBackOffice(ctx, c.Demo, 5, 5*time.Second, tmp, stdout)
	if err != nil {
		return fmt.Errorf("late back office: %w", err)
	}
	fmt.Fprintf(stdout, "soak: counting in EVENTS and the store…\n")
	rep := soakReport{Duration: sc.duration.String(), Rate: sc.rate, Failovers: failovers, Late: late}
	if err := rep.count(ctx, js, cfg.DatabaseURL, filepath.Join(results, "report.json"), sc.settle); err != nil {
		return err
	}
	raw, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cf.dir, "soak.json"), append(raw, '\n'), 0o644); err != nil {
		return err
	}
	rep.print(stdout, filepath.Join(cf.dir, "soak.json"))
	if rep.Lost > 0 || rep.Duplicated > 0 || len(rep.Failovers) == 0 || rep.Submitted == 0 {
		return errors.New("soak failed: see the figures above")
	}
	return nil
}

// loseLeader kills the node leading stream, waits until another node
// leads it, restarts the node after down and waits until every replica of
// every stream is current again.
func loseLeader(ctx context.Context, c *cluster.Cluster, js jetstream.JetStream, stream string, down time.Duration, out io.Writer) (failover, error) {
	f := failover{Stream: stream}
	leader, err := streamLeader(ctx, js, stream)
	if err != nil {
		return f, err
	}
	i, err := cluster.NodeIndex(leader)
	if err != nil {
		return f, err
	}
	f.Node = leader
	f.Killed = time.Now()
	if err := c.KillNode(i); err != nil {
		return f, err
	}
	fmt.Fprintf(out, "soak: %s killed, leader of %s\n", leader, stream)
	err = poll(ctx, 2*time.Minute, func() error {
		l, err := streamLeader(ctx, js, stream)
		if err != nil {
			return err
		}
		if l == "" || l == leader {
			return fmt.Errorf("%s has no new leader", stream)
		}
		f.NewLeader = l
		return nil
	})
	if err != nil {
		return f, err
	}
	f.Elected = time.Now()
	fmt.Fprintf(out, "soak: %s led by %s after %s\n", stream, f.NewLeader, f.Elected.Sub(f.Killed).Round(time.Millisecond))
	select {
	case <-ctx.Done():
	case <-time.After(time.Until(f.Killed.Add(down))):
	}
	// The node comes back even when the soak is ending, so the cluster
	// stops whole.
	if err := c.StartNode(context.WithoutCancel(ctx), i); err != nil {
		return f, err
	}
	f.Restarted = time.Now()
	err = poll(ctx, 3*time.Minute, func() error { return replicasCurrent(ctx, js) })
	f.Current = time.Now()
	fmt.Fprintf(out, "soak: %s back; replicas current after %s\n", leader, f.Current.Sub(f.Restarted).Round(time.Millisecond))
	return f, err
}

func streamLeader(ctx context.Context, js jetstream.JetStream, name string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	st, err := js.Stream(cctx, name)
	if err != nil {
		return "", err
	}
	info := st.CachedInfo()
	if info.Cluster == nil {
		return "", fmt.Errorf("stream %s is not clustered", name)
	}
	return info.Cluster.Leader, nil
}

// replicasCurrent checks that every stream has a leader and every replica
// is current.
func replicasCurrent(ctx context.Context, js jetstream.JetStream) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	names := js.StreamNames(cctx)
	for name := range names.Name() {
		st, err := js.Stream(cctx, name)
		if err != nil {
			return err
		}
		ci := st.CachedInfo().Cluster
		if ci == nil || ci.Leader == "" {
			return fmt.Errorf("%s has no leader", name)
		}
		if len(ci.Replicas)+1 < st.CachedInfo().Config.Replicas {
			return fmt.Errorf("%s: %d of %d replicas", name, len(ci.Replicas)+1, st.CachedInfo().Config.Replicas)
		}
		for _, r := range ci.Replicas {
			if !r.Current || r.Offline {
				return fmt.Errorf("%s: replica %s not current", name, r.Name)
			}
		}
	}
	return names.Err()
}

func poll(ctx context.Context, d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// caseEvents is what EVENTS holds of one case.
type caseEvents struct {
	submits, accepts    int
	submitted, accepted time.Time
}

// count fills the report from the load test's report, EVENTS and the store.
func (r *soakReport) count(ctx context.Context, js jetstream.JetStream, dbURL, loadReport string, settle time.Duration) error {
	raw, err := os.ReadFile(loadReport)
	if err != nil {
		return fmt.Errorf("load test report: %w", err)
	}
	var lr struct {
		Results struct {
			Submitted, Accepted int
			Errors              map[string]int
		}
	}
	if err := json.Unmarshal(raw, &lr); err != nil {
		return fmt.Errorf("load test report: %w", err)
	}
	r.Submitted, r.Accepted = lr.Results.Submitted, lr.Results.Accepted
	for _, n := range lr.Results.Errors {
		r.LoadErrs += n
	}

	// The connection may be moving to another server just then.
	var (
		cases  map[string]*caseEvents
		dupJTI int
	)
	err = poll(ctx, time.Minute, func() error {
		var err error
		cases, dupJTI, err = readEvents(ctx, js)
		return err
	})
	if err != nil {
		return fmt.Errorf("read EVENTS: %w", err)
	}
	r.tally(cases, dupJTI, settle)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("connect store: %w", err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE submitted_at IS NOT NULL), count(*) FILTER (WHERE status = 'accepted') FROM submissions`).
		Scan(&r.StoreSubmitted, &r.StoreAccepted); err != nil {
		return fmt.Errorf("count submissions: %w", err)
	}
	var storeDup int
	if err := conn.QueryRow(ctx, `SELECT coalesce(sum(n - 1), 0) FROM (
		SELECT count(*) AS n FROM events
		WHERE type LIKE '%/submit-submission' OR type LIKE '%/accept-submission'
		GROUP BY case_id, type HAVING count(*) > 1) d`).Scan(&storeDup); err != nil {
		return fmt.Errorf("count duplicate events: %w", err)
	}
	r.Duplicated += storeDup
	// Lost: what the API accepted and did not end accepted, in the
	// stream or in the store, after the late back office's round.
	for _, n := range []int{r.Submitted - r.StreamAccepted, r.Submitted - r.StoreAccepted, r.StoreSubmitted - r.StoreAccepted} {
		r.Lost = max(r.Lost, n)
	}
	return nil
}

// tally counts the cases read from EVENTS: accepted ones, second submits
// and accepts and repeated jti as duplicates, and the time from submit to
// accepted by whether the submit fell into a failover, from the kill until
// settle after the restart. The late back office's cases count as
// accepted but not in the times.
func (r *soakReport) tally(cases map[string]*caseEvents, dupJTI int, settle time.Duration) {
	r.StreamCases = len(cases)
	var during, outside []float64
	late := map[string]bool{}
	for _, id := range r.Late.Cases {
		late[id] = true
	}
	for caseID, ce := range cases {
		if ce.submits > 1 {
			r.Duplicated += ce.submits - 1
		}
		if ce.accepts > 1 {
			r.Duplicated += ce.accepts - 1
		}
		if ce.accepts == 0 || ce.submits == 0 {
			continue
		}
		r.StreamAccepted++
		if late[caseID] {
			continue
		}
		lat := ce.accepted.Sub(ce.submitted).Seconds()
		in := false
		for _, f := range r.Failovers {
			if !ce.submitted.Before(f.Killed) && ce.submitted.Before(f.Restarted.Add(settle)) {
				in = true
			}
		}
		if in {
			during = append(during, lat)
		} else {
			outside = append(outside, lat)
		}
	}
	r.Duplicated += dupJTI
	r.DuringFailover, r.OutsideFailover = latencyOf(during), latencyOf(outside)
}

// readEvents reads EVENTS whole, message by message from the leader, and
// returns each case's submit and accept events with their stream times,
// and how many jti appeared more than once.
func readEvents(ctx context.Context, js jetstream.JetStream) (map[string]*caseEvents, int, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	st, err := js.Stream(cctx, bus.StreamEvents)
	if err != nil {
		return nil, 0, err
	}
	state := st.CachedInfo().State
	cases := map[string]*caseEvents{}
	jtis := map[string]bool{}
	dup := 0
	for seq := state.FirstSeq; seq > 0 && seq <= state.LastSeq; seq++ {
		m, err := st.GetMsg(cctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, 0, fmt.Errorf("event at %d: %w", seq, err)
		}
		jti, types, err := setClaims(string(m.Data))
		if err != nil {
			return nil, 0, fmt.Errorf("event at %d: %w", seq, err)
		}
		if jtis[jti] {
			dup++
		}
		jtis[jti] = true
		caseID := strings.TrimPrefix(m.Subject, bus.PrefixEvents+".")
		ce := cases[caseID]
		if ce == nil {
			ce = &caseEvents{}
			cases[caseID] = ce
		}
		for _, t := range types {
			switch {
			case strings.HasSuffix(t, "/submit-submission"):
				ce.submits++
				ce.submitted = m.Time
			case strings.HasSuffix(t, "/accept-submission"):
				ce.accepts++
				ce.accepted = m.Time
			}
		}
	}
	return cases, dup, nil
}

// setClaims reads jti and the event types of a compact SET without
// verifying it: the soak counts, the ledger verified.
func setClaims(token string) (string, []string, error) {
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 3 {
		return "", nil, errors.New("not a compact JWS")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", nil, err
	}
	var c struct {
		JTI    string                     `json:"jti"`
		Events map[string]json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return "", nil, err
	}
	var types []string
	for t := range c.Events {
		types = append(types, t)
	}
	return c.JTI, types, nil
}

func latencyOf(s []float64) latency {
	if len(s) == 0 {
		return latency{}
	}
	slices.Sort(s)
	q := func(p float64) float64 { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return latency{Count: len(s), P50: q(0.50), P99: q(0.99), Max: s[len(s)-1]}
}

func (r soakReport) print(w io.Writer, file string) {
	fmt.Fprintf(w, "\nsoak: %s at %g/s\n", r.Duration, r.Rate)
	for _, f := range r.Failovers {
		fmt.Fprintf(w, "  %-8s leader %s killed %s: new leader %s after %s, back after %s, current after %s\n",
			f.Stream, f.Node, f.Killed.Format("15:04:05"), f.NewLeader, f.Elected.Sub(f.Killed).Round(time.Millisecond),
			f.Restarted.Sub(f.Killed).Round(time.Second), f.Current.Sub(f.Restarted).Round(time.Millisecond))
	}
	fmt.Fprintf(w, "  submissions    %d accepted by the API, %d ended accepted (load test); %d load test errors\n", r.Submitted, r.Accepted, r.LoadErrs)
	fmt.Fprintf(w, "  late pickups   %d accepted by the late back office, %d unreadable\n", r.Late.Accepted, len(r.Late.Unreadable))
	fmt.Fprintf(w, "  EVENTS         %d cases, %d accepted\n", r.StreamCases, r.StreamAccepted)
	fmt.Fprintf(w, "  store          %d submitted, %d accepted\n", r.StoreSubmitted, r.StoreAccepted)
	fmt.Fprintf(w, "  failovers      %d\n  lost           %d\n  duplicated     %d\n", len(r.Failovers), r.Lost, r.Duplicated)
	fmt.Fprintf(w, "  submit→accepted during failover  n=%d p50 %.2fs p99 %.2fs max %.2fs\n", r.DuringFailover.Count, r.DuringFailover.P50, r.DuringFailover.P99, r.DuringFailover.Max)
	fmt.Fprintf(w, "  submit→accepted outside          n=%d p50 %.2fs p99 %.2fs max %.2fs\n", r.OutsideFailover.Count, r.OutsideFailover.P50, r.OutsideFailover.P99, r.OutsideFailover.Max)
	fmt.Fprintf(w, "  %s\n", file)
}
